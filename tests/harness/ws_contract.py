"""The /ws protocol v1 contract as an oracle: which replies a frame may get (docs/protocol.md).

check_frame sends a frame on the probe socket and asserts that the reply it got is one of them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from tests.harness.ws_probe import MAX_MESSAGE, Env, short

MAX_ID = 2**63 - 1
OP_NAMES = ("subscribe", "unsubscribe", "vote", "refresh", "auth", "ping")
TOKEN_MAX = 4096
ALL_CODES = frozenset({"bad_json", "unknown_op", "invalid", "not_found", "bad_channel", "unauthorized"})
MISSING = object()
CANONICAL_CHANNEL = re.compile(r"(subject|teacher):([1-9][0-9]*)", re.ASCII)
FIELDS = {
    "subscribe": {"channel"}, "unsubscribe": {"channel"}, "vote": {"teacher", "value"},
    "refresh": {"refresh_token"}, "auth": {"access_token"}, "ping": set(),
}


@dataclass(frozen=True)
class Expect:
    outcomes: frozenset[str]
    """"error:<code>", "pong", "ack", "vote" (an ack of a vote), "subscribed" (ack, then snapshot)."""
    sent_id: Any = None
    clean_id: bool = True
    """The id is a string or an int (absent = null): then every reply must echo it exactly."""
    doc: Any = MISSING

    def widen(self, *outcomes: str) -> Expect:
        return Expect(self.outcomes | set(outcomes), self.sent_id, self.clean_id, self.doc)


def is_clean_id(value: Any) -> bool:
    """What a reply can echo exactly: a string, or an int a 64-bit JSON parser keeps as an int."""
    return value is None or type(value) is str or (type(value) is int and -(2**63) <= value < 2**64)


def channel_kind(name: str) -> tuple[str, int | None]:
    """("dashboard"|"subject"|"teacher", no), ("too_big", None) or ("bad", None)."""
    if name == "dashboard":
        return "dashboard", None
    matched = CANONICAL_CHANNEL.fullmatch(name)
    if matched is None:
        return "bad", None
    number = int(matched[2])
    return (matched[1], number) if number <= MAX_ID else ("too_big", None)


def op_outcomes(op: str, doc: dict[str, Any], env: Env) -> set[str]:
    extra = set(doc) - {"op", "id"} - FIELDS[op]
    if op in ("subscribe", "unsubscribe"):
        channel = doc.get("channel", MISSING)
        if extra or type(channel) is not str:
            bad = type(channel) is str and channel_kind(channel)[0] == "bad"
            return {"error:invalid"} | ({"error:bad_channel"} if bad else set())
        kind, number = channel_kind(channel)
        if kind == "bad":
            return {"error:bad_channel"}
        if kind == "too_big":
            return {"error:bad_channel", "error:not_found"} | ({"ack"} if op == "unsubscribe" else set())
        exists = kind == "dashboard" or number in (env.teachers_of if kind == "subject" else env.teachers)
        if op == "subscribe":
            return {"subscribed"} if exists else {"error:not_found"}
        return {"ack"} if exists else {"ack", "error:not_found"}
    if op == "vote":
        teacher, value = doc.get("teacher", MISSING), doc.get("value", MISSING)
        good_teacher = type(teacher) is int and 1 <= teacher <= MAX_ID
        good_value = value is None or (type(value) is str and value in ("good", "bad"))
        if extra or not good_teacher or not good_value:
            return {"error:invalid"}
        return {"vote"} if teacher in env.teachers else {"error:not_found"}
    if op in ("refresh", "auth"):
        token = doc.get("refresh_token" if op == "refresh" else "access_token", MISSING)
        if extra or type(token) is not str or not 1 <= len(token) <= TOKEN_MAX:
            return {"error:invalid"}
        return {"error:unauthorized"}
    return {"error:invalid"} if extra else {"pong"}


def expect(doc: Any, env: Env) -> Expect:
    """What the contract allows for a frame holding this (parsed) JSON value."""
    if not isinstance(doc, dict):
        return Expect(frozenset({"error:unknown_op", "error:bad_json", "error:invalid"}), None, True, doc)
    sent_id = doc.get("id")
    clean = is_clean_id(sent_id)
    op = doc.get("op", MISSING)
    if type(op) is not str:
        outcomes = {"error:unknown_op", "error:invalid"}
    elif op not in OP_NAMES:
        outcomes = {"error:unknown_op"}
    else:
        outcomes = op_outcomes(op, doc, env)
    if not clean:
        outcomes.add("error:invalid")
    return Expect(frozenset(outcomes), sent_id, clean, doc)


def bad_json(sent_id: Any = None) -> Expect:
    return Expect(frozenset({"error:bad_json"}), sent_id, False)


class NotJson(ValueError):
    pass


def strict_json(text: str) -> Any:
    """RFC 8259 JSON and nothing else: no NaN/Infinity, no duplicate keys, no overflow to infinity."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys):
            raise NotJson("duplicate key")
        return dict(items)

    def constant(name: str) -> Any:
        raise NotJson(name)

    def finite(text: str) -> float:
        number = float(text)
        if not math.isfinite(number):
            raise NotJson(text)
        return number

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant, parse_float=finite)
    except (ValueError, RecursionError) as exc:
        raise NotJson(str(exc)) from None


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, list):
        return any(has_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    return False


def has_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(has_nonfinite(item) for item in value)
    if isinstance(value, dict):
        return any(has_nonfinite(v) for v in value.values())
    return False


def expect_text(text: str, env: Env) -> Expect:
    """The expectation for a text frame, from a strict parse of its text."""
    try:
        doc = strict_json(text)
    except NotJson:
        return bad_json()
    expected = expect(doc, env)
    return expected.widen("error:bad_json") if has_surrogate(doc) else expected


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values of the same kind (true is not 1, "1" is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def echoes(reply_id: Any, expected: Expect, outcome: str) -> bool:
    if expected.clean_id and outcome != "error:bad_json":
        return same(reply_id, expected.sent_id)
    if reply_id is None or same(reply_id, expected.sent_id):
        return True
    sent = expected.sent_id
    return isinstance(sent, float) and sent.is_integer() and type(reply_id) is int and reply_id == sent


def classify(replies: list[dict[str, Any]], frame: str) -> str:
    kinds = [m["type"] for m in replies]
    if kinds == ["ack", "snapshot"]:
        return "subscribed"
    assert len(replies) == 1, f"{frame}: expected exactly one reply, got {replies}"
    reply = replies[0]
    if reply["type"] == "error":
        return f"error:{reply.get('code')}"
    if reply["type"] == "ack" and "teacher" in reply:
        return "vote"
    return str(reply["type"])


async def check_frame(env: Env, payload: str | bytes, expected: Expect, binary: bool = False) -> str:
    """Send one frame on the shared socket; assert the contract; return the outcome seen."""
    sock = await env.probe()
    frame = f"{'binary' if binary else 'text'} frame {short(payload)}"
    result = await sock.exchange(payload, binary)
    if len(payload if isinstance(payload, bytes) else payload.encode()) > MAX_MESSAGE:
        assert result.closed and result.close_code == 1009 and not result.replies, (
            f"{frame}: over ws.max_message_size, yet closed {result.closed} ({result.close_code}): {result.replies}")
        return "closed:1009"
    assert not result.closed, (
        f"{frame}: the socket closed (code {result.close_code}) on a frame the protocol answers; "
        f"replies: {result.replies}")
    outcome = classify(result.replies, frame)
    allowed = expected.outcomes
    if binary:
        assert outcome.startswith("error:") or outcome in allowed, f"{frame}: got {result.replies}"
    else:
        assert outcome in allowed, f"{frame}: got {result.replies}, the contract allows {sorted(allowed)}"
    first = result.replies[0]
    if outcome.startswith("error:"):
        assert set(first) >= {"type", "id", "code", "message"}, f"{frame}: {first}"
        assert isinstance(first["message"], str) and first["message"], f"{frame}: {first}"
        assert first["code"] in ALL_CODES, f"{frame}: undocumented error code in {first}"
    if not binary or not outcome.startswith("error:"):
        assert "id" in first and echoes(first["id"], expected, outcome), (
            f"{frame}: reply id {first.get('id')!r} for sent id {expected.sent_id!r}: {first}")
    doc = expected.doc
    if outcome == "subscribed":
        ack, snapshot = result.replies
        channel = doc["channel"]
        assert ack["channel"] == channel and snapshot["channel"] == channel, (
            f"{frame}: ack/snapshot name {ack['channel']!r}/{snapshot['channel']!r}, subscribed as {channel!r}")
        kind, number = channel_kind(channel)
        if kind == "dashboard":
            assert isinstance(snapshot["subjects"], list) and isinstance(snapshot["votes_total"], int), snapshot
        else:
            wanted = [number] if kind == "teacher" else sorted(env.teachers_of[number or 0])
            assert sorted(t["no"] for t in snapshot["teachers"]) == wanted, f"{frame}: {snapshot}"
        cleanup = await sock.request(op="unsubscribe", channel=channel)
        assert (cleanup["type"], cleanup.get("channel")) == ("ack", channel), cleanup
    elif outcome == "ack":
        assert first.get("channel") == doc["channel"], f"{frame}: {first}"
    elif outcome == "vote":
        assert (first["teacher"], first["value"]) == (doc["teacher"], doc["value"]), f"{frame}: {first}"
    return outcome
