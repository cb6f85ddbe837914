"""Domain records as the services hand them out. A leaf module."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any


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

    value: str | None
    counts: Counts
    changed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "teacher": self.counts.no,
            "value": self.value,
            "good_count": self.counts.good_count,
            "bad_count": self.counts.bad_count,
            "version": self.counts.version,
        }
