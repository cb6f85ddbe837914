"""The audit log: every administrator's change, with who made it, when, and the record before and
after, so that a school can tell who opened a vote, renamed a teacher or made someone an admin.

The catalog and the role change call `record` once their store write has committed: the entry
is a second write, not part of the change's transaction, which keeps the store's methods as they
are on all three stores. Two things follow. `before` is the record as read just before the
change, so two administrators changing the same record at the same instant may each log a
`before` the other had already replaced. And a change that committed stays the client's
success even if its entry cannot be stored: the entry is then logged in full (logger
livevote.audit, ERROR) so that an operator can put it back, and the client is not told.

What did not change is not logged: a PATCH or PUT that leaves the record as it was, or a role
given again, writes no entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast

import orjson

from services.backends.store import Store
from services.models import AuditAction, AuditEntry, AuditKind, Page, User, iso_utc

log = logging.getLogger("livevote.audit")

KINDS: tuple[AuditKind, ...] = ("subject", "teacher", "user")


class Record(Protocol):
    def to_json(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: an administrator through the API, or the operator on the command line
    (`python server.py set-role`), who has no account: no id, no name, `via` "cli"."""

    user_id: int | None
    username: str | None
    via: Literal["api", "cli"]

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(user.id, user.username, "api")


COMMAND_LINE = Actor(None, None, "cli")


class AuditService:
    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self, actor: Actor, action: AuditAction, no: int, before: Record | None, after: Record | None
    ) -> None:
        """Log a change that has committed; never raises for the log's own failure (see above)."""
        old = None if before is None else dict(before.to_json())
        new = None if after is None else dict(after.to_json())
        if old == new:
            return
        kind = cast(AuditKind, action.partition(".")[0])
        at = iso_utc(self._clock(), "milliseconds")
        entry = AuditEntry(0, at, actor.user_id, actor.username, actor.via, action, kind, no, old, new)
        try:
            await self._store.record_audit(entry)
        except Exception as exc:
            log.error("an audit entry was not stored (%r); the change itself stands: %s",
                      exc, orjson.dumps(entry.to_json()).decode())

    async def entries(
        self, offset: int = 0, limit: int | None = None, kind: AuditKind | None = None, no: int | None = None
    ) -> Page:
        """Newest first."""
        return await self._store.list_audit(offset, limit, kind, no)
