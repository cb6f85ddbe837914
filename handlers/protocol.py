"""WebSocket protocol v1 (docs/protocol.md): the client ops a socket may send, and its replies.

Server messages, their frames and the close codes are services/live/messages.py's: the hub
broadcasts them, and a reply is framed the same way.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints, TypeAdapter

from services.errors import DomainError, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, VotingClosed
from services.live.messages import BadChannel, frame
from services.schemas import MAX_ID

SUBPROTOCOL = "livevote.v1"
BEARER_PREFIX = "bearer."

Token = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=4096)]
MessageId = StrictStr | StrictInt | None
"""Echoed as sent: strict, so that `true` is refused rather than echoed back as 1."""


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: MessageId = None


class Subscribe(_Op):
    op: Literal["subscribe"]
    channel: str


class Unsubscribe(_Op):
    op: Literal["unsubscribe"]
    channel: str


class Vote(_Op):
    op: Literal["vote"]
    teacher: Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
    value: Literal["good", "bad"] | None


class Refresh(_Op):
    op: Literal["refresh"]
    refresh_token: Token


class Auth(_Op):
    op: Literal["auth"]
    access_token: Token


class Ping(_Op):
    op: Literal["ping"]


Op = Annotated[Subscribe | Unsubscribe | Vote | Refresh | Auth | Ping, Field(discriminator="op")]
OPS = TypeAdapter(Op)
OP_NAMES = frozenset({"subscribe", "unsubscribe", "vote", "refresh", "auth", "ping"})


def error(code: str, text: str, op_id: MessageId = None) -> bytes:
    return frame("error", id=op_id, code=code, message=text)


ERROR_CODES: list[tuple[type[DomainError], str]] = [
    (BadChannel, "bad_channel"),
    (VotingClosed, VotingClosed.code),
    (Forbidden, "forbidden"),
    (Invalid, "invalid"),
    (NotFound, "not_found"),
    (Unauthorized, "unauthorized"),
    (Unavailable, "unavailable"),
]


def error_code(exc: DomainError) -> str:
    return next((code for kind, code in ERROR_CODES if isinstance(exc, kind)), "failed")
