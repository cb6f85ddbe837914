"""Password hashing with argon2id (argon2-cffi), off the event loop.

The defaults (config auth.argon2_*) are argon2-cffi's, RFC 9106's low-memory
profile: time_cost 3, memory 64 MiB, parallelism 4. Hashing runs in a thread
(cffi releases the GIL), so a login never stalls other requests.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self._dummy_hash = self._hasher.hash("livevote timing equaliser")

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Checks against a dummy hash when there is no user, so both failures take as long."""
        return await asyncio.get_running_loop().run_in_executor(
            None, self._verify, password_hash or self._dummy_hash, password, password_hash is not None
        )

    def _verify(self, password_hash: str, password: str, real: bool) -> bool:
        try:
            return self._hasher.verify(password_hash, password) and real
        except (VerificationError, InvalidHashError):
            return False
