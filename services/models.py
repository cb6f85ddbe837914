"""Domain records as the services hand them out, and the JSON bodies built from them. A leaf module.

A body type is a TypedDict named for its schema in /api/openapi.json plus `Json` (VoteResultJson is
the schema VoteResult), so that mypy checks the code that builds it and the document shows the same
type (handlers/openapi.py). A record inside a body stays a dataclass: orjson writes its fields, and
its schema is the dataclass's own. TypedDict comes from typing_extensions because pydantic reads no
other on Python 3.11.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, Literal, TypeVar

from typing_extensions import TypedDict

Item = TypeVar("Item")
VoteValue = Literal["good", "bad"]
VotingState = Literal["open", "closed"]
Visibility = Literal["always", "after_vote", "after_close", "hidden"]
"""Who sees a subject's counts: everyone; a user once they voted in it; everyone once it
closed; admins only. Admins always see them."""


def voting_state(opens_at: datetime | None, closes_at: datetime | None, now: datetime) -> VotingState:
    """Open from `opens_at` (none: since ever) until `closes_at` (none: for ever). The state is
    derived from the time, so a scheduled change needs no timer that a restart could lose."""
    opened = opens_at is None or opens_at <= now
    return "open" if opened and (closes_at is None or now < closes_at) else "closed"


def utc_now() -> datetime:
    return datetime.now(UTC)


def moment(text: str | None) -> datetime | None:
    """A timestamp as livevote writes it (iso_utc), read back."""
    return None if text is None else datetime.fromisoformat(text)


def state_of(record: Mapping[str, Any], now: datetime | None = None) -> VotingState:
    """A subject's voting state now, from its JSON record (SubjectJson)."""
    return voting_state(moment(record.get("opens_at")), moment(record.get("closes_at")), now or utc_now())


def public(visibility: str, state: VotingState) -> bool:
    """Whether everyone may see a subject's counts: `always`, or `after_close` once closed
    (services/visibility.py has the whole rule)."""
    return visibility == "always" or (visibility == "after_close" and state == "closed")


def is_public(record: Mapping[str, Any]) -> bool:
    """`public`, now, from a subject's JSON record."""
    return public(record.get("visibility", "always"), state_of(record))


def iso_utc(moment: datetime, timespec: str = "auto") -> str:
    """2026-12-06T20:15:00Z: UTC, with Z, as every timestamp livevote writes (the audit log's to
    the millisecond)."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Subject:
    no: int
    name: str
    intro: str
    is_hot: bool
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    visibility: Visibility = "always"

    def state(self, now: datetime | None = None) -> VotingState:
        return voting_state(self.opens_at, self.closes_at, now or utc_now())

    def to_json(self) -> SubjectJson:
        return {
            "no": self.no, "name": self.name, "intro": self.intro, "is_hot": self.is_hot,
            "opens_at": None if self.opens_at is None else iso_utc(self.opens_at),
            "closes_at": None if self.closes_at is None else iso_utc(self.closes_at),
            "visibility": self.visibility, "state": self.state(),
        }


class SubjectJson(TypedDict):
    """A subject. `state` is the voting state when it was written: `opens_at` and `closes_at`
    (UTC; null: no bound) tell when it changes. `visibility` says who sees its counts."""

    no: int
    name: str
    intro: str
    is_hot: bool
    opens_at: str | None
    closes_at: str | None
    visibility: Visibility
    state: VotingState


@dataclass(frozen=True, slots=True)
class Teacher:
    no: int
    name: str
    sex: bool
    birth: date
    photo: str
    intro: str
    subject: int
    good_count: int
    bad_count: int
    version: int

    def to_json(self) -> TeacherJson:
        return {
            "no": self.no, "name": self.name, "sex": self.sex, "birth": self.birth.isoformat(),
            "photo": self.photo, "intro": self.intro, "subject": self.subject,
            "good_count": self.good_count, "bad_count": self.bad_count, "version": self.version,
        }


class TeacherJson(TypedDict):
    """A teacher and its counts; the counts are null where the subject's visibility withholds them
    from the reader (`version` still moves with every change)."""

    no: int
    name: str
    sex: bool
    birth: str
    photo: str
    intro: str
    subject: int
    good_count: int | None
    bad_count: int | None
    version: int


@dataclass(frozen=True, slots=True)
class Page:
    """One slice of a list and the size of the whole list."""

    items: list[Any]
    total: int


class PageJson(TypedDict, Generic[Item]):
    """A list asked for by ?page= / ?page_size=, DRF style; `next` and `previous` are URLs."""

    count: int
    next: str | None
    previous: str | None
    results: list[Item]


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Credentials:
    user: User
    password_hash: str


@dataclass(frozen=True, slots=True)
class Counts:
    """A teacher's live state, as the WebSocket channel pushes it."""

    no: int
    subject: int
    good_count: int
    bad_count: int
    version: int


@dataclass(frozen=True, slots=True)
class SubjectTotals:
    no: int
    name: str
    good_count: int
    bad_count: int


@dataclass(frozen=True, slots=True)
class VoteResult:
    """One user's vote on one teacher after a cast or a withdrawal, and the rules of the teacher's
    subject as the vote found them (so that its answer needs no second read)."""

    value: VoteValue | None
    counts: Counts
    changed: bool
    visibility: Visibility = "always"
    state: VotingState = "open"

    def to_json(self, shown: bool = True) -> VoteResultJson:
        """`shown`: False where the subject's visibility withholds the counts from the voter."""
        return {
            "teacher": self.counts.no,
            "value": self.value,
            "good_count": self.counts.good_count if shown else None,
            "bad_count": self.counts.bad_count if shown else None,
            "version": self.counts.version,
        }


class VoteResultJson(TypedDict):
    """Your vote on a teacher (null: none) and the teacher's counts (null: withheld)."""

    teacher: int
    value: VoteValue | None
    good_count: int | None
    bad_count: int | None
    version: int


AuditKind = Literal["subject", "teacher", "user"]
AuditAction = Literal[
    "subject.create", "subject.update", "subject.delete",
    "teacher.create", "teacher.update", "teacher.delete",
    "user.role",
]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One administrator's change, as the audit log keeps it.

    `user_id` and `username` are who made it, both null for the command line (`via` "cli");
    `kind` and `no` name the record (a user's `no` is its id); `before` and `after` are the record's
    JSON, null before a create and after a delete. `at` is UTC, ISO 8601 with a Z; `id` grows with
    every entry, so the newest has the highest."""

    id: int
    at: str
    user_id: int | None
    username: str | None
    via: Literal["api", "cli"]
    action: AuditAction
    kind: AuditKind
    no: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HistoryBucket:
    """One stretch of a vote history: the counts at its end and how many votes changed within it.
    `minute` is its start, in whole minutes since 1970-01-01 UTC."""

    minute: int
    good_count: int
    bad_count: int
    votes: int


@dataclass(frozen=True, slots=True)
class HistoryMinute:
    """One minute of one teacher's history in which its counts changed (an export's row)."""

    teacher: int
    minute: int
    good_count: int
    bad_count: int
    votes: int
