"""Login brute-force protection: failures counted per username and per client IP."""

from __future__ import annotations

import math

from services.backends.counters import Counters
from services.errors import RateLimited


class LoginThrottle:
    def __init__(self, counters: Counters, attempts: int, window: float) -> None:
        self._counters = counters
        self._attempts = attempts
        self._window = window

    @staticmethod
    def _keys(username: str, ip: str) -> tuple[str, str]:
        return f"login:user:{username.casefold()}", f"login:ip:{ip}"

    async def check(self, username: str, ip: str) -> None:
        """RateLimited while either key has used up its attempts."""
        for key in self._keys(username, ip):
            count, resets_in = await self._counters.peek(key)
            if count >= self._attempts:
                raise RateLimited("Too many failed logins; try again later.", math.ceil(resets_in))

    async def failed(self, username: str, ip: str) -> None:
        for key in self._keys(username, ip):
            await self._counters.hit(key, self._window)

    async def succeeded(self, username: str) -> None:
        await self._counters.reset(self._keys(username, "")[0])
