"""WebSocket protocol v1 (docs/protocol.md): client ops, server messages, frames, codes."""

from __future__ import annotations

import struct
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints, TypeAdapter

from services.schemas import MAX_ID

SUBPROTOCOL = "livevote.v1"
BEARER_PREFIX = "bearer."

CLOSE_TOKEN_EXPIRED = 4001
CLOSE_RATE_LIMITED = 4029

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


def text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final text frame: the same bytes suit every socket."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


def message(kind: str, **fields: Any) -> bytes:
    return text_frame(orjson.dumps({"type": kind, **fields}))


def error(code: str, text: str, op_id: MessageId = None) -> bytes:
    return message("error", id=op_id, code=code, message=text)
