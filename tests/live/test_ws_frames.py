"""Generated frames on /ws (protocol v1, docs/protocol.md) that the server must answer: to the
real server over a real socket, any frame under ws.max_message_size and inside the rate limit
gets exactly one reply, of the kind and code the contract names (tests/harness/ws_contract.py),
and the socket stays usable (a ping after it gets its pong).

How it runs (tests/harness/ws_probe.py): Hypothesis drives plain (sync) tests, and every example
is a coroutine submitted to one event loop in a thread of its own, where a module-wide server
lives. One probe socket is reused across examples; a new one is opened only after a close.
Replies are delimited without sleeping: the frame under test is followed by a ping with a
sentinel id, and the server handles a socket's frames in order, so everything before that pong
is the reply to the frame.

Budget: each test scales the loaded profile's max_examples (`ci`: 40, `long`: 1000). With `ci`
a run generates 1,800 inputs (240 JSON values, 80 unknown op names, 80 non-string ops, 400
known ops with generated fields, 80 viewer ops, 400 channel names, 80 + 40 duplicate-key
objects, 240 mangled texts, 160 binary frames), plus explicit examples and 24 fixed channel cases.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.harness.strategies import jwt_like
from tests.harness.ws_contract import (
    FIELDS,
    MAX_ID,
    OP_NAMES,
    TOKEN_MAX,
    Expect,
    bad_json,
    check_frame,
    expect,
    expect_text,
    has_nonfinite,
    has_surrogate,
)
from tests.harness.ws_probe import Blob, Env, ProbeSocket, Text, ws_examples

BIG_INTS = [0, -1, MAX_ID, MAX_ID + 1, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(BIG_INTS),
    st.floats(allow_nan=False, allow_infinity=False), st.text(),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)
"""Finite JSON: what a well-behaved encoder can produce."""
wild_values = st.recursive(
    st.one_of(scalars, st.floats(), st.text(st.characters(codec=None, categories=["Cs"]), min_size=1, max_size=3)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
"""Also NaN/Infinity (written as bare tokens: not JSON) and lone surrogates (written as escapes)."""

near_op_names = st.sampled_from([
    "Ping", "PING", "ping ", " ping", "ping\n", "ping\x00", "pіng", "ｐｉｎｇ", "pİng", "sub", "subscribed",
    "Subscribe", "vote ", "AUTH", "refresh_token", "pong", "ack", "error", "welcome", "", "op", "unsubscribe\u200b",
])
op_names = st.one_of(st.text(max_size=12), near_op_names).filter(lambda name: name not in OP_NAMES)
known_op_names = st.sampled_from(OP_NAMES)

DIGIT_LOOKALIKES = [
    "²", "¹", "³", "١", "٣", "۱", "०", "১", "๑", "０", "１", "𝟏", "𝟙", "Ⅻ", "①", "⑴", "⒈", "〡", "𑁧", "٠",
]
digit_chars = st.one_of(
    st.sampled_from("0123456789"),
    st.characters(categories=["Nd"]),
    st.characters(categories=["No", "Nl"]),
    st.sampled_from(DIGIT_LOOKALIKES),
)
numbers = st.one_of(
    st.integers(0, 40).map(str),
    st.integers(0, 2**64).map(str),
    st.text(digit_chars, min_size=1, max_size=4),
    st.builds(
        lambda sign, zeros, digits, tail: sign + zeros + digits + tail,
        st.sampled_from(["", "", "+", "-", " ", "\t", "\u00a0", "\u3000", "\u2212", "\ufeff"]),
        st.sampled_from(["", "", "0", "00", "٠"]),
        st.text(digit_chars, min_size=1, max_size=3),
        st.sampled_from(["", "", " ", "\n", "\x00", "_0", ".0", "e0", "\u200b"]),
    ),
    st.sampled_from(
        ["01", "+1", "-1", " 1", "1 ", "1\n", "1_000", "0x1", "1e3", "1.0", "", "0", "00", "9" * 19, "9" * 20]
    ),
    st.text(max_size=4),
)
prefixes = st.sampled_from([
    "subject:", "teacher:", "subject:", "teacher:", "subject", "teacher", "subjects:", "Subject:", "TEACHER:",
    "subject：", "subject::", ":", "dashboard:", "ｓｕｂｊｅｃｔ:", " subject:", "teacher:subject:", "subject:\u200b",
])
channel_names = st.one_of(
    st.text(),
    st.builds(str.__add__, prefixes, numbers),
    st.sampled_from([
        "dashboard", "Dashboard", "DASHBOARD", "dashboard ", " dashboard", "dashboard\n", "dashboard:", "dashboard:1",
        "ｄａｓｈｂｏａｒｄ", "dashboard\x00", "dashboarḋ",
    ]),
    st.builds("{}:{}".format, st.sampled_from(["subject", "teacher"]), st.integers(1, 20)),
)


tokens = st.one_of(
    st.text(max_size=40),
    jwt_like(json_values),
    st.sampled_from(["", "x", "x.y.z", "..", "a" * TOKEN_MAX, "a" * (TOKEN_MAX + 1)]),
    json_values,
)
teacher_values = st.one_of(st.integers(-3, 20), st.sampled_from(BIG_INTS), json_values)
vote_values = st.one_of(
    st.sampled_from(["good", "bad", None, "Good", "GOOD", "good ", "great", "", "ｇｏｏｄ", "bad\x00"]), json_values)
id_values = st.one_of(
    st.text(max_size=10), st.integers(), st.none(),
    st.sampled_from([True, False, 1.0, 1.5, -0.0, 0, -1, "", *BIG_INTS]), json_values,
)
FIELD_VALUES = {"channel": channel_names, "teacher": teacher_values, "value": vote_values,
                "refresh_token": tokens, "access_token": tokens}


@st.composite
def op_docs(draw: st.DrawFn, ops: st.SearchStrategy[str] = known_op_names) -> dict[str, Any]:
    """A known op with its fields (each usually present), maybe an id, sometimes stray keys."""
    op = draw(ops)
    doc: dict[str, Any] = {"op": op}
    for name in sorted(FIELDS[op]):
        if draw(st.integers(0, 9)) < 9:
            doc[name] = draw(FIELD_VALUES[name])
    if draw(st.booleans()):
        doc["id"] = draw(id_values)
    if draw(st.integers(0, 4)) == 0:
        stray = draw(st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=2))
        doc.update({k: v for k, v in stray.items() if k not in doc})
    return dict(draw(st.permutations(list(doc.items()))))


def dumps(doc: Any, ascii_only: bool) -> str:
    return json.dumps(doc, ensure_ascii=ascii_only or has_surrogate(doc), allow_nan=True)


def escaped(key: str) -> str:
    """A JSON string literal with every character written as a \\u escape."""
    units = key.encode("utf-16-be")
    return '"' + "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)) + '"'


@st.composite
def duplicate_key_objects(draw: st.DrawFn, nested: bool) -> str:
    """An object (top level, or inside a field) with a key written twice, maybe spelt differently."""
    base = draw(op_docs()) if draw(st.booleans()) else {"op": "ping", "id": "dup"}
    if nested:
        inner = draw(st.dictionaries(st.text(max_size=5), json_values, min_size=1, max_size=3))
        members = list(inner.items())
        target = "x" if draw(st.booleans()) else draw(st.sampled_from(sorted(base)))
    else:
        members = list(base.items())
    key, _ = draw(st.sampled_from(members))
    value = draw(st.one_of(st.just(dict(members)[key]), json_values))
    spell = escaped if draw(st.booleans()) else json.dumps
    position = draw(st.integers(0, len(members)))
    rendered = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in members]
    rendered.insert(position, f"{spell(key)}:{json.dumps(value)}")
    text = "{" + ",".join(rendered) + "}"
    if nested:
        outer = {k: v for k, v in base.items() if k != target}
        body = json.dumps(outer)
        text = body[:-1] + ("," if outer else "") + f"{json.dumps(target)}:{text}" + "}"
    return text


JSON_SPACE = st.text(" \t\n\r", max_size=3)
OTHER_SPACE = st.sampled_from(["\u00a0", "\x0b", "\x0c", "\u2028", "\ufeff", "\x00", "\u3000"])


def mangled_frames() -> st.SearchStrategy[tuple[Text, bool]]:
    return _mangled_frames().map(lambda frame: (Text(frame[0]), frame[1]))


@st.composite
def _mangled_frames(draw: st.DrawFn) -> tuple[str, bool]:
    """A serialized op, then edited: cut, spliced, padded, doubled, wrapped, deeply nested."""
    text = dumps(draw(op_docs()), draw(st.booleans()))
    edit = draw(
        st.sampled_from(["cut", "insert", "space", "odd_space", "double", "trail", "wrap", "deep", "deep_field"])
    )
    if edit == "cut":
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, len(text)))
        return text[:i] + text[j:], False
    if edit == "insert":
        i = draw(st.integers(0, len(text)))
        return text[:i] + draw(st.text(min_size=1, max_size=3) | st.sampled_from(list('{}[]":,\\'))) + text[i:], False
    if edit == "space":
        return draw(JSON_SPACE) + text + draw(JSON_SPACE), False
    if edit == "odd_space":
        return (draw(OTHER_SPACE) + text if draw(st.booleans()) else text + draw(OTHER_SPACE)), False
    if edit == "double":
        return text + draw(JSON_SPACE) + text, False
    if edit == "trail":
        return text + draw(st.sampled_from(["x", ",", "}", "]", "0", "null", "//", "/* */"])), False
    if edit == "wrap":
        return draw(st.sampled_from(["[{}]", '{{"op":"ping","x":{}}}', '"{}"'])).format(text), False
    depth = draw(st.integers(1, 2600) | st.sampled_from([255, 256, 500, 512, 1000, 1023, 1024, 1025, 2000, 2600]))
    """Up to 2,600 levels: six bytes each at most, so the frame stays under ws.max_message_size."""
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    nest = opening * depth + "1" + closing * depth
    return (nest if edit == "deep" else '{"op":"ping","id":"deep","x":' + nest + "}"), True


# -- frames that must be answered ------------------------------------------------------------


@ws_examples(6)
@given(value=json_values | wild_values, ascii_only=st.booleans())
@example(value={"op": "ping", "id": float("nan")}, ascii_only=True)
@example(value={"op": "ping", "id": 10**30}, ascii_only=True)
def test_any_json_value_gets_one_reply_and_the_socket_stays(env: Env, value: Any, ascii_only: bool) -> None:
    text = dumps(value, ascii_only)
    expected = bad_json() if has_nonfinite(value) else expect_text(text, env)
    env.run(check_frame(env, text, expected))


@ws_examples(2)
@given(
    op=op_names, extra=st.dictionaries(st.sampled_from(["id", "channel", "teacher", "value"]), json_values, max_size=2)
)
def test_unknown_op_names_get_unknown_op(env: Env, op: str, extra: dict[str, Any]) -> None:
    doc = {"op": op, **extra}
    env.run(check_frame(env, json.dumps(doc), expect(doc, env)))


@ws_examples(2)
@given(op=json_values.filter(lambda v: type(v) is not str), doc=op_docs())
@example(op=[], doc={"op": "ping"})
@example(op={}, doc={"op": "ping", "id": 1})
def test_op_of_any_json_type_gets_an_error(env: Env, op: Any, doc: dict[str, Any]) -> None:
    doc = {**doc, "op": op}
    env.run(check_frame(env, json.dumps(doc), expect(doc, env)))


@ws_examples(10)
@given(doc=op_docs(), ascii_only=st.booleans())
@example(doc={"op": "ping", "id": True}, ascii_only=True)
def test_known_ops_with_generated_fields_follow_the_contract(env: Env, doc: dict[str, Any], ascii_only: bool) -> None:
    text = dumps(doc, ascii_only)
    env.run(check_frame(env, text, expect_text(text, env)))


async def check_viewer_op(env: Env, doc: dict[str, Any]) -> None:
    """A viewer socket sends an op it may not use: an error, never an ack, no vote stored, and
    the socket stays open."""
    votes_before = (await env.server.get("/api/stats")).json()["votes_total"]
    token = (await env.server.request("POST", "/api/auth/viewer")).json()["access_token"]
    sock = await ProbeSocket.open(env.server.base_url, token)
    try:
        reply = await sock.request(**{key: value for key, value in doc.items() if key != "id"})
        assert reply["type"] == "error" and reply["code"] in ("forbidden", "invalid"), reply
        assert (await sock.request(op="ping"))["type"] == "pong" and not sock.closed
    finally:
        await sock.close()
    assert (await env.server.get("/api/stats")).json()["votes_total"] == votes_before


@ws_examples(2)
@given(doc=op_docs(st.sampled_from(["vote", "auth", "refresh"])))
@example(doc={"op": "vote", "teacher": 1, "value": "good"})
def test_a_viewer_socket_never_votes_or_authenticates_whatever_it_sends(env: Env, doc: dict[str, Any]) -> None:
    env.run(check_viewer_op(env, doc))


@ws_examples(10)
@given(
    op=st.sampled_from(["subscribe", "unsubscribe"]), channel=channel_names, op_id=st.text(max_size=4) | st.integers()
)
def test_channel_names_from_every_script(env: Env, op: str, channel: str, op_id: str | int) -> None:
    """Only canonical ASCII numbers name a channel; a valid subscribe is acked with the name
    exactly as sent, then snapshotted; anything else is bad_channel and the socket lives on."""
    doc = {"op": op, "channel": channel, "id": op_id}
    env.run(check_frame(env, json.dumps(doc, ensure_ascii=False), expect(doc, env)))


@pytest.mark.parametrize("channel", [
    "subject:01", "subject:²", "teacher:١", "subject:+1", "subject: 1", "teacher:０", "subject:1\n", "subject:1_0",
    "teacher:𝟏", "subject:-1", "subject:0", "subject:1١",
])
@pytest.mark.parametrize("op", ["subscribe", "unsubscribe"])
def test_non_canonical_channel_numbers_are_bad_channel(env: Env, op: str, channel: str) -> None:
    doc = {"op": op, "channel": channel, "id": 7}
    env.run(check_frame(env, json.dumps(doc, ensure_ascii=False), expect(doc, env)))


@ws_examples(2)
@given(text=duplicate_key_objects(nested=False))
@example(text='{"op":"ping","op":"ping","id":"dup"}')
@example(text='{"op":"vote","teacher":1,"value":"good","\\u0076alue":"bad","id":"dup"}')
def test_duplicate_keys_are_bad_json(env: Env, text: str) -> None:
    env.run(check_frame(env, text, bad_json()))


@ws_examples(1)
@given(text=duplicate_key_objects(nested=True))
@example(text='{"op":"ping","id":"dup","x":{"a":1,"a":1}}')
def test_duplicate_keys_in_nested_objects_are_bad_json(env: Env, text: str) -> None:
    env.run(check_frame(env, text, bad_json()))


@ws_examples(6)
@given(frame=mangled_frames())
def test_mangled_text_frames(env: Env, frame: tuple[str, bool]) -> None:
    """Edited, padded, doubled or deeply nested text: judged by a strict JSON parse of it.
    Nesting may hit a parser's depth limit: then bad_json is as good as the structural error."""
    text, deep = Text(frame[0]), frame[1]
    if deep:
        sent_id = "deep" if text.startswith('{"op"') else None
        expected = Expect(frozenset({"error:bad_json", "error:invalid", "error:unknown_op"}), sent_id)
    else:
        expected = expect_text(text, env)
    env.run(check_frame(env, text, expected))


@ws_examples(4)
@given(payload=st.one_of(
    st.binary(max_size=64),
    st.builds(lambda doc, enc: json.dumps(doc).encode(enc), op_docs(), st.sampled_from(["utf-8", "utf-16", "utf-32"])),
    st.builds(lambda doc: b"\xef\xbb\xbf" + json.dumps(doc).encode(), op_docs()),
).map(Blob))
def test_binary_frames_are_answered_like_text(env: Env, payload: bytes) -> None:
    try:
        expected = expect_text(payload.decode("utf-8"), env)
    except UnicodeDecodeError:
        expected = bad_json()
    env.run(check_frame(env, payload, expected, binary=True))
