"""Validation of client input with pydantic.

pydantic because its models give both strict validation (unknown fields,
lengths, enums, ISO dates) and the JSON Schema that /api/openapi.json
publishes, from one definition. Types are strict: "1" is not an int and
"true" is not a bool.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.errors import FieldError, Invalid
from services.models import Visibility

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
        raise PydanticCustomError("integer_type", "must be an integer")
    return value


def _iso_date_only(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("date_type", "must be an ISO date string such as 1980-05-17")
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


def _iso_datetime_only(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "must be an ISO 8601 date and time such as 2026-12-06T09:00:00Z")
    return value


UtcDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_datetime_only),
    AfterValidator(lambda moment: moment.astimezone(UTC)),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A moment with its time zone (Z or an offset), kept as UTC."""


_ABSENT: Any = Field(default=None)
"""Default of PATCH fields: absent is allowed, an explicit null is not."""


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(InputModel):
    """A voting window: it must close after it opens."""

    @model_validator(mode="after")
    def _closes_after_opens(self) -> Window:
        opens_at, closes_at = getattr(self, "opens_at", None), getattr(self, "closes_at", None)
        if opens_at is not None and closes_at is not None and closes_at <= opens_at:
            raise PydanticCustomError("closes_before_opens", "closes_at must be later than opens_at")
        return self


class SubjectCreate(Window):
    name: Name
    intro: Intro = ""
    is_hot: StrictBool = False
    opens_at: UtcDatetime | None = None
    closes_at: UtcDatetime | None = None
    visibility: Visibility = "always"


class SubjectReplace(Window):
    """Every field; a window left out is no window (open), and visibility `always`, as in a create."""

    name: Name
    intro: Intro
    is_hot: StrictBool
    opens_at: UtcDatetime | None = None
    closes_at: UtcDatetime | None = None
    visibility: Visibility = "always"


class SubjectPatch(Window):
    """`state` opens or closes voting now (the server's clock sets opens_at / closes_at); it
    cannot come with either of them."""

    name: Name = _ABSENT
    intro: Intro = _ABSENT
    is_hot: StrictBool = _ABSENT
    opens_at: UtcDatetime | None = None
    closes_at: UtcDatetime | None = None
    visibility: Visibility = _ABSENT
    state: Literal["open", "closed"] = _ABSENT

    @model_validator(mode="after")
    def _state_alone(self) -> SubjectPatch:
        if "state" in self.model_fields_set and self.model_fields_set & {"opens_at", "closes_at"}:
            raise PydanticCustomError("state_with_schedule", "state cannot come with opens_at or closes_at")
        return self


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


USERNAME_RULE = re.compile(r"[a-z0-9_.-]{3,32}")
USERNAME_RULE_TEXT = "must be 3 to 32 letters, digits, '_', '.' or '-'"
USERNAME_INPUT_MAX = 64
"""Characters a client may send as a username, before normalization (NFKC can lengthen text)."""


def fold(text: str) -> str:
    """NFKC, then casefold: the comparable form of text (Unicode's identifier caseless matching)."""
    return unicodedata.normalize("NFKC", text).casefold()


def username_key(text: str) -> str | None:
    """The one key of a username, or None when no account can have that name.

    Registration, login, throttling and the stores' lookups all use this, so a
    name can only ever reach the account it named at registration. Look-alikes
    that NFKC and casefold map into the rule are that same name: with the Kelvin
    sign (U+212A) or the long s (U+017F), fullwidth letters or ligatures (U+FB00
    is "ff"), "kate", "stella" and "ff" are meant. What stays outside the rule is
    refused everywhere: U+0130 (dotted capital I) folds to "i" plus a combining
    dot, U+0131 (dotless i) stays itself. A key is ASCII, so it is its own key.
    """
    key = fold(text)
    return key if USERNAME_RULE.fullmatch(key) else None


def account_key(username: str) -> str:
    """username_key() of a name an account is being made with: Invalid on `username` when it has none."""
    key = username_key(username)
    if key is None:
        raise Invalid("The username is not valid.", [FieldError("username", "username_rule", USERNAME_RULE_TEXT)])
    return key


def _account_name(text: str) -> str:
    """The name a new account is shown by: as typed when plain ASCII, else its key,
    so that no account is ever displayed in look-alike letters."""
    key = username_key(text)
    if key is None:
        raise PydanticCustomError("username_rule", USERNAME_RULE_TEXT)
    return text if text.isascii() else key


AccountName = Annotated[
    str,
    StringConstraints(strict=True, max_length=USERNAME_INPUT_MAX),
    AfterValidator(_account_name),
    WithJsonSchema({
        "type": "string", "pattern": "^[A-Za-z0-9_.-]{3,32}$",
        "description": "Compared after NFKC and case folding: a look-alike spelling (fullwidth letters,"
                       " the Kelvin sign) is the same name as its plain one.",
    }),
]


class Registration(InputModel):
    """A new account. The password needs 8 characters or more, must not be easy to guess
    (zxcvbn score 2 or more) and must not contain the username."""

    username: AccountName
    password: Annotated[str, StringConstraints(strict=True, min_length=8, max_length=256)]


class Login(InputModel):
    username: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=USERNAME_INPUT_MAX)]
    password: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]


class RefreshRequest(InputModel):
    refresh_token: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)] | None = None


class VoteRequest(InputModel):
    value: Literal["good", "bad"]


Role = Literal["user", "admin"]
ROLES: tuple[str, ...] = get_args(Role)


class RoleChange(InputModel):
    """An account's new role (an administrator's change)."""

    role: Role


Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], data: Any) -> Model:
    """Validate `data` into `model`, raising Invalid with one entry per bad field."""
    if not isinstance(data, dict):
        raise Invalid("The body must be a JSON object.", [FieldError("body", "object_type", "must be an object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid("The request body is not valid.", field_errors(exc)) from None


def field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(part) for part in error["loc"]) or "body", error["type"], error["msg"])
        for error in exc.errors()
    ]


def changes(model: BaseModel) -> dict[str, Any]:
    """The fields a client actually sent."""
    return model.model_dump(exclude_unset=True)
