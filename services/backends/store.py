"""The Store port: where subjects, teachers (and later accounts and votes) live.

Every implementation passes tests/backends/test_store_contract.py. Methods raise the
domain errors of services.errors (NotFound, Conflict, Invalid); anything else
is a fault of the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from services.models import (
    AuditEntry,
    AuditKind,
    Counts,
    Credentials,
    HistoryBucket,
    HistoryMinute,
    Page,
    Subject,
    SubjectTotals,
    Teacher,
    User,
    VoteResult,
    VoteValue,
)


class Store(ABC):
    @abstractmethod
    async def open(self) -> bool:
        """Connect and bring the schema up to date; True when the store was just created."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot serve requests right now."""

    @abstractmethod
    async def list_subjects(self, offset: int = 0, limit: int | None = None) -> Page: ...

    @abstractmethod
    async def get_subject(self, no: int) -> Subject: ...

    @abstractmethod
    async def create_subject(self, fields: dict[str, Any]) -> Subject: ...

    @abstractmethod
    async def update_subject(self, no: int, fields: dict[str, Any]) -> Subject:
        """Change the given fields only; an empty dict returns the subject unchanged."""

    @abstractmethod
    async def delete_subject(self, no: int) -> None:
        """Conflict while the subject still has teachers."""

    @abstractmethod
    async def list_teachers(
        self, subject: int | None = None, offset: int = 0, limit: int | None = None
    ) -> Page: ...

    @abstractmethod
    async def get_teacher(self, no: int) -> Teacher: ...

    @abstractmethod
    async def create_teacher(self, fields: dict[str, Any]) -> Teacher:
        """Invalid when `subject` names no subject."""

    @abstractmethod
    async def update_teacher(self, no: int, fields: dict[str, Any]) -> Teacher:
        """Change the given fields and bump the version, so that live pages order a move or a
        rename among the teacher's votes; an empty dict returns the teacher unchanged."""

    @abstractmethod
    async def delete_teacher(self, no: int) -> None: ...

    # -- accounts ------------------------------------------------------------

    @abstractmethod
    async def create_user(self, username: str, password_hash: str, role: str) -> User:
        """Conflict when the name is taken, compared case-insensitively."""

    @abstractmethod
    async def find_credentials(self, username: str) -> Credentials | None:
        """Look a user up by name, case-insensitively."""

    @abstractmethod
    async def get_user(self, user_id: int) -> User: ...

    @abstractmethod
    async def set_user_role(self, user_id: int, role: str) -> User:
        """The user with this role from now on; NotFound for an unknown user."""

    # -- votes ---------------------------------------------------------------

    @abstractmethod
    async def set_vote(self, user_id: int, teacher: int, value: VoteValue | None) -> VoteResult:
        """Cast ("good"/"bad") or withdraw (None) in one atomic step with the counts.

        The same value again changes nothing and bumps nothing; any change bumps
        the teacher's version by one. NotFound for an unknown teacher, and for a vote cast by
        an unknown user (say one deleted while their access token still runs).
        """

    @abstractmethod
    async def get_vote(self, user_id: int, teacher: int) -> VoteResult:
        """The user's vote on the teacher (value None: no vote); NotFound for an unknown teacher."""

    @abstractmethod
    async def voted_subjects(self, user_id: int) -> set[int]:
        """The subjects in which the user has a vote now (who may see `after_vote` counts)."""

    @abstractmethod
    async def voters(self, subject: int) -> set[int]:
        """The users who have a vote in the subject now."""

    @abstractmethod
    async def counts(self, subject: int | None = None) -> list[Counts]:
        """Live state of every teacher (of one subject), ordered by teacher no."""

    @abstractmethod
    async def subject_totals(self) -> list[SubjectTotals]:
        """Votes per subject, every subject included, ordered by subject no."""

    @abstractmethod
    async def tally_votes(self, teacher: int) -> tuple[int, int]:
        """(good, bad) counted from the vote records themselves, not the counters."""

    @abstractmethod
    async def reconcile(self) -> int:
        """Recount every teacher's good/bad counts from the vote records.

        Each teacher whose counts were wrong gets the recounted ones and its
        version bumped by one; returns how many were corrected (0: all agreed).
        """

    # -- audit log -----------------------------------------------------------

    @abstractmethod
    async def record_audit(self, entry: AuditEntry) -> AuditEntry:
        """Keep the entry; returned with the id the store gave it (entry.id is ignored)."""

    @abstractmethod
    async def list_audit(
        self, offset: int = 0, limit: int | None = None, kind: AuditKind | None = None, no: int | None = None
    ) -> Page:
        """Entries newest first (highest id first), of one kind of record and one number if given."""
    # -- vote history (services/backends/history_sums.py) --------------------

    @abstractmethod
    async def history(self, teachers: Sequence[int], since: int, until: int, step: int) -> list[HistoryBucket]:
        """The teachers' votes summed, in buckets of `step` minutes from minute `since` to `until`
        (minutes since 1970 UTC; until - since a multiple of step): every bucket, with the counts
        at its end and the number of vote changes within it. Unknown teachers count nothing."""

    @abstractmethod
    async def history_minutes(
        self, teachers: Sequence[int], since: int, until: int, after: HistoryMinute | None, limit: int
    ) -> list[HistoryMinute]:
        """Each teacher's minutes with a change from `since` to `until`, in (teacher, minute) order:
        at most `limit` of them, those after `after` (the last of the previous page), so that a long
        history is read page by page."""
