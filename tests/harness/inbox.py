"""Inbox: the messages a live client received, in order, and a way to wait for one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Inbox:
    """Whatever reads the connection appends to `messages` under `_arrived` and notifies; `closed`
    says when nothing more will come."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._arrived = asyncio.Condition()

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    @property
    def close_code(self) -> int | None:
        raise NotImplementedError

    async def expect(self, kind: str, /, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The first message of this type (and these field values) not yet taken."""
        return await self.take(
            lambda message: message.get("type") == kind and all(message.get(k) == v for k, v in match.items()),
            timeout, f"{kind} {match}",
        )

    async def take(
        self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 5.0, what: str = "a message"
    ) -> dict[str, Any]:
        """The first message not yet taken that is `wanted`."""

        def find() -> dict[str, Any] | None:
            for index, message in enumerate(self.messages):
                if wanted(message):
                    return self.messages.pop(index)
            return None

        async def wait() -> dict[str, Any]:
            async with self._arrived:
                while (found := find()) is None:
                    if self.closed:
                        raise AssertionError(f"closed ({self.close_code}) before {what}: {self.messages}")
                    await self._arrived.wait()
                return found

        return await asyncio.wait_for(wait(), timeout)
