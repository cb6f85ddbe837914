"""Domain records as the services hand them out, and the JSON bodies built from them. A leaf module.

A body type is a TypedDict named for its schema in /api/openapi.json plus `Json` (VoteResultJson is
the schema VoteResult), so that mypy checks the code that builds it and the document shows the same
type (handlers/openapi.py). A record inside a body stays a dataclass: orjson writes its fields, and
its schema is the dataclass's own. TypedDict comes from typing_extensions because pydantic reads no
other on Python 3.11.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Generic, Literal, TypeVar

from typing_extensions import TypedDict

Item = TypeVar("Item")
VoteValue = Literal["good", "bad"]


@dataclass(frozen=True, slots=True)
class Subject:
    no: int
    name: str
    intro: str
    is_hot: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["birth"] = self.birth.isoformat()
        return data


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
    """One user's vote on one teacher after a cast or a withdrawal."""

    value: VoteValue | None
    counts: Counts
    changed: bool

    def to_json(self) -> VoteResultJson:
        return {
            "teacher": self.counts.no,
            "value": self.value,
            "good_count": self.counts.good_count,
            "bad_count": self.counts.bad_count,
            "version": self.counts.version,
        }


class VoteResultJson(TypedDict):
    """Your vote on a teacher (null: none) and the teacher's counts."""

    teacher: int
    value: VoteValue | None
    good_count: int
    bad_count: int
    version: int


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
