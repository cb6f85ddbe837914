"""Validation of client input with pydantic.

pydantic because its models give both strict validation (unknown fields,
lengths, enums, ISO dates) and the JSON Schema that /api/openapi.json
publishes, from one definition. Types are strict: "1" is not an int and
"true" is not a bool.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from services.errors import FieldError, Invalid

MAX_ID = 2**63 - 1

_CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,18}", re.ASCII)


def canonical_int(text: str, low: int = 1, high: int = MAX_ID) -> int | None:
    """The number a client wrote, or None unless it is canonical ASCII decimal in [low, high].

    str.isdigit() and int() also take "²", "١" and " 7", and "01" is the same
    int as "1" while naming another channel; one spelling per number keeps
    every lookup and route unambiguous.
    """
    if not _CANONICAL_INT.fullmatch(text):
        return None
    number = int(text)
    return number if low <= number <= high else None


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: 3 and 3.0, but not "3" or true."""
    if isinstance(value, (bool, str)):
        raise ValueError("must be an integer")
    return value


def _iso_date_only(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO date string such as 1980-05-17")
    return value


Name = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=50, pattern=r"\S")]
Intro = Annotated[str, StringConstraints(strict=True, max_length=2000)]
PhotoName = Annotated[
    str, StringConstraints(strict=True, max_length=100, pattern=r"^([A-Za-z0-9_-][A-Za-z0-9_.-]*)?$")
]
IsoDate = Annotated[
    date, BeforeValidator(_iso_date_only), WithJsonSchema({"type": "string", "format": "date"})
]
Id = Annotated[int, BeforeValidator(_json_integer), Field(ge=1, le=MAX_ID)]


_ABSENT: Any = Field(default=None)
"""Default of PATCH fields: absent is allowed, an explicit null is not."""


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectCreate(InputModel):
    name: Name
    intro: Intro = ""
    is_hot: StrictBool = False


class SubjectReplace(InputModel):
    name: Name
    intro: Intro
    is_hot: StrictBool


class SubjectPatch(InputModel):
    name: Name = _ABSENT
    intro: Intro = _ABSENT
    is_hot: StrictBool = _ABSENT


class TeacherCreate(InputModel):
    name: Name
    sex: StrictBool
    birth: IsoDate
    photo: PhotoName = ""
    intro: Intro = ""
    subject: Id


class TeacherReplace(InputModel):
    name: Name
    sex: StrictBool
    birth: IsoDate
    photo: PhotoName
    intro: Intro
    subject: Id


class TeacherPatch(InputModel):
    name: Name = _ABSENT
    sex: StrictBool = _ABSENT
    birth: IsoDate = _ABSENT
    photo: PhotoName = _ABSENT
    intro: Intro = _ABSENT
    subject: Id = _ABSENT


Username = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_.-]{3,32}$")]


class Registration(InputModel):
    username: Username
    password: Annotated[str, StringConstraints(strict=True, min_length=8, max_length=256)]


class Login(InputModel):
    username: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]


class RefreshRequest(InputModel):
    refresh_token: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)] | None = None


class VoteRequest(InputModel):
    value: Literal["good", "bad"]


Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], data: Any) -> Model:
    """Validate `data` into `model`, raising Invalid with one entry per bad field."""
    if not isinstance(data, dict):
        raise Invalid("The body must be a JSON object.", [FieldError("body", "must be an object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid("The request body is not valid.", field_errors(exc)) from None


def field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(part) for part in error["loc"]) or "body", error["msg"])
        for error in exc.errors()
    ]


def changes(model: BaseModel) -> dict[str, Any]:
    """The fields a client actually sent."""
    return model.model_dump(exclude_unset=True)
