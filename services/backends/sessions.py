"""The SessionStore port: refresh-token sessions, with rotation and reuse detection.

Implementations (SQLite for embedded mode, Redis for scaled mode) must pass
tests/backends/test_session_store_contract.py. Tokens are never stored: only their
SHA-256 hex digests. `rotate` must be atomic: of two concurrent calls with the
same token, exactly one sees ROTATED.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class SessionRecord:
    sid: str
    user_id: int
    created_at: float
    expires_at: float
    """Sliding expiry, renewed on each rotation, never past max_expires_at."""
    max_expires_at: float
    revoked: bool

    def active(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


class Outcome(Enum):
    ROTATED = "rotated"
    """The token was the session's current one: it is now replaced by the new one."""
    GRACE = "grace"
    """The token was the one replaced last, less than `grace` seconds ago (strictly): nothing changes."""
    REUSED = "reused"
    """An older token came back: the session is now revoked."""
    INVALID = "invalid"
    """Unknown token (session None), or its session is expired or revoked (session given)."""


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: Outcome
    session: SessionRecord | None


class SessionStore(ABC):
    """Times are unix seconds from the caller, near the real clock (Redis expires keys by its own)."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None:
        """Release what the store itself opened; a client or database it was given stays open."""

    @abstractmethod
    async def ping(self) -> None: ...

    @abstractmethod
    async def create(
        self, sid: str, user_id: int, token_hash: str, now: float, expires_at: float, max_expires_at: float
    ) -> SessionRecord: ...

    @abstractmethod
    async def rotate(self, token_hash: str, new_hash: str, now: float, refresh_ttl: float, grace: float) -> Rotation:
        """Atomically apply the rotation rules described under Outcome."""

    @abstractmethod
    async def find(self, token_hash: str) -> SessionRecord | None:
        """The session any of whose tokens (current or older) has this hash."""

    @abstractmethod
    async def get(self, sid: str) -> SessionRecord | None: ...

    @abstractmethod
    async def revoke(self, sid: str) -> bool:
        """True when the session existed and was not revoked yet."""

    @abstractmethod
    async def revoke_user(self, user_id: int) -> list[str]:
        """Revoke every session of the user; returns the sids that were not revoked yet."""

    @abstractmethod
    async def spend(self, key_hash: str, now: float, until: float) -> bool:
        """Spend a single-use key (a live ticket's id, hashed), remembered until `until`: True
        the first time, False ever after. Atomic: of two concurrent calls, one sees True."""
