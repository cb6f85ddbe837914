"""Attempt budgets on the accounts path: logins per account and per client IP, registrations per IP.

What OWASP's Authentication Cheat Sheet asks for, and the numbers chosen here:
- Per account: `auth.login_attempts` (10) failed logins per `auth.login_window`
  (15 min), then 429 until the window ends. This is what stops guessing one
  account's password; it holds however the guesses arrive (concurrently, from
  many processes or from many addresses).
- Per client IP: `auth.login_ip_attempts` (100) in the same window, ten times
  the account budget, so that one address spraying guesses over many accounts
  is slowed, while an attack on one account never locks other accounts out of
  that address (a school or office behind one NAT).
- A fixed window with a Retry-After rather than a growing lock-out: a lock-out
  that someone else can trigger is a denial of service on the account's owner.
- Budgets are reserved before the password is checked, in one atomic step of
  the Counters backend; a wrong password keeps its reservation, anything else
  (a correct password, a backend failure) gives it back, so legitimate logins
  never use up the address's budget.
- Registrations: `auth.register_attempts` (100) per `auth.register_window`
  (1 h) per client IP, counted before the password is scored or hashed.
- Viewer tokens: `auth.viewer_attempts` (600) per `auth.viewer_window` (1 min)
  per client IP: a class behind one address opening the page at once, not a
  script minting tokens by the thousand. A socket renews its own viewer token.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from services.backends.counters import Counters
from services.config import AuthConfig
from services.errors import RateLimited, Unauthorized


class LoginThrottle:
    def __init__(self, counters: Counters, auth: AuthConfig) -> None:
        self._counters = counters
        self._attempts = auth.login_attempts
        self._window = auth.login_window
        self._ip_attempts = auth.login_ip_attempts
        self._register_attempts = auth.register_attempts
        self._register_window = auth.register_window
        self._viewer_attempts = auth.viewer_attempts
        self._viewer_window = auth.viewer_window

    @asynccontextmanager
    async def login(self, username_key: str | None, ip: str) -> AsyncIterator[None]:
        """Hold one login attempt of the account (a name that can be no account has no
        budget of its own) and of the IP; Unauthorized inside keeps it, as a failure."""
        limits = [(f"login:ip:{ip}", self._ip_attempts)]
        if username_key is not None:
            limits.append((f"login:user:{username_key}", self._attempts))
        await self._reserve(limits, self._window, "Too many failed logins; try again later.")
        failed = False
        try:
            yield
        except Unauthorized:
            failed = True
            raise
        finally:
            if not failed:
                await self._counters.release([key for key, _ in limits])

    async def register(self, ip: str) -> None:
        """Count one registration of this client IP, or RateLimited."""
        await self._reserve(
            [(f"register:ip:{ip}", self._register_attempts)], self._register_window,
            "Too many registrations from this address; try again later.",
        )

    async def viewer(self, ip: str) -> None:
        """Count one viewer token issued to this client IP, or RateLimited."""
        await self._reserve(
            [(f"viewer:ip:{ip}", self._viewer_attempts)], self._viewer_window,
            "Too many viewer tokens for this address; try again shortly.",
        )

    async def _reserve(self, limits: Sequence[tuple[str, int]], window: float, detail: str) -> None:
        wait = await self._counters.reserve(limits, window)
        if wait is not None:
            raise RateLimited(detail, math.ceil(wait))
