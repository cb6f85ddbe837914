"""The Presence port: how many sockets are open, across every process.

LocalPresence (embedded mode) just asks this process's hub. RedisPresence
keeps an entry per process with its count and a short deadline, refreshed by
a heartbeat, so a process that dies stops being counted within seconds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

SocketCount = Callable[[], int]


class Presence(ABC):
    @abstractmethod
    async def start(self, count: SocketCount) -> None:
        """`count` tells this process's open sockets whenever asked."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def total(self) -> int:
        """Open sockets of every process."""


class LocalPresence(Presence):
    def __init__(self) -> None:
        self._count: SocketCount = lambda: 0

    async def start(self, count: SocketCount) -> None:
        self._count = count

    async def close(self) -> None:
        return None

    async def total(self) -> int:
        return self._count()
