"""Password hashing with argon2id (argon2-cffi), off the event loop, and the password rule.

The defaults (config auth.argon2_*) are argon2-cffi's, RFC 9106's low-memory
profile: time_cost 3, memory 64 MiB, parallelism 4. Hashing runs in a thread
(cffi releases the GIL), so a login never stalls other requests.

A flood must queue, not starve logins: at most one hash per core runs at a
time, and new accounts' hashes take at most half of those slots (at least one)
on threads of the lowest CPU priority, so logins always find a slot of their
own and win the CPU from registrations. A freed slot goes to waiting logins
before the next registration, which queues behind them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from services.errors import FieldError, Invalid
from services.schemas import fold

MIN_SCORE = 2
"""zxcvbn's scores estimate guesses: 0 < 10^3, 1 < 10^6, 2 < 10^8, 3 < 10^10. Score 2 refuses
the common passwords, keyboard walks, repeats and dates (NIST SP 800-63B's block list), and
10^6 guesses are far out of reach online at auth.login_attempts per 15 minutes, while argon2id
makes an offline attack on a leaked hash slow; 3 would also refuse many memorable passphrases."""
SCORED_CHARS = 64
"""zxcvbn's time grows steeply with length (measured here, random printable text: 64 characters
~40 ms median, ~180 ms worst; 100 characters ~310 ms median, ~850 ms worst), and a password of
64 characters that scores 2 is no weaker for what follows; so only the start is scored."""


def available_cores() -> int:
    """Cores this process may run on (its affinity, as under taskset), else all of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _lowest_cpu_priority() -> None:
    """Linux gives every thread a nice value of its own; elsewhere threads keep the process's."""
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


CORES = available_cores()
REGISTRATION_SLOTS = max(1, CORES // 2)

_scoring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zxcvbn")
"""zxcvbn keeps the user inputs of a call in a module-global dictionary, so calls must not
overlap: one thread scores for the whole process."""
_registration_hashing = ThreadPoolExecutor(
    max_workers=REGISTRATION_SLOTS, thread_name_prefix="argon2-new", initializer=_lowest_cpu_priority
)


class Passwords:
    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self._dummy_hash = _registration_hashing.submit(self._hasher.hash, "livevote timing equaliser")
        """Hashed off the event loop, at low priority: on the loop it held back the first connection
        of a restarted server by ~115 ms (docs/performance.md, "Start-up")."""
        self._slots = asyncio.Semaphore(CORES)
        self._registration_slots = asyncio.Semaphore(REGISTRATION_SLOTS)

    async def check(self, password: str, username: str) -> None:
        """Invalid on `password` when it contains the username or is easy to guess.

        Scoring is pure Python that can take a good part of a second, so it runs on
        its own thread; the event loop only shares the GIL with it meanwhile."""
        if fold(username) in fold(password):
            error = FieldError("password", "password_has_username", "must not contain the username")
            raise Invalid("The password is too weak.", [error])
        result = await asyncio.get_running_loop().run_in_executor(_scoring, _score, password, username)
        if result["score"] < MIN_SCORE:
            hint = result["feedback"]["warning"] or "add more words or characters that are hard to guess"
            error = FieldError("password", "password_too_weak", f"is too easy to guess: {hint}")
            raise Invalid("The password is too weak.", [error])

    async def hash(self, password: str) -> str:
        """For a new account: a registration slot, then a hashing slot, on a low-priority thread."""
        async with self._registration_slots, self._slots:
            return await asyncio.get_running_loop().run_in_executor(_registration_hashing, self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Checks against a dummy hash when there is no user, so both failures take as long."""
        checked: str = password_hash if password_hash is not None else await asyncio.wrap_future(self._dummy_hash)
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(
                None, self._verify, checked, password, password_hash is not None
            )

    def _verify(self, password_hash: str, password: str, real: bool) -> bool:
        try:
            return self._hasher.verify(password_hash, password) and real
        except (VerificationError, InvalidHashError):
            return False


def _score(password: str, username: str) -> dict[str, Any]:
    score: dict[str, Any] = zxcvbn(password[:SCORED_CHARS], user_inputs=[username], max_length=SCORED_CHARS)
    return score
