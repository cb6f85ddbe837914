"""The Presence port: how many sockets are open, and how many people watch each subject, across every process.

LocalPresence (embedded mode) has only this process to count. RedisPresence
keeps an entry per process with its count and a short deadline, refreshed on
every report, so a process that dies stops being counted within seconds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PresenceCount:
    """Open sockets, and per subject the people subscribed to its channel (subject:N): each user,
    and each viewer token, once per process."""

    sockets: int = 0
    by_subject: Mapping[int, int] = field(default_factory=dict)


class Presence(ABC):
    @abstractmethod
    async def report(self, local: PresenceCount) -> PresenceCount:
        """Record this process's count; every process's, summed."""

    @abstractmethod
    async def leave(self) -> None:
        """Stop counting this process (it is shutting down)."""


class LocalPresence(Presence):
    async def report(self, local: PresenceCount) -> PresenceCount:
        return local

    async def leave(self) -> None:
        return None
