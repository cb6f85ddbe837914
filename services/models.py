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
