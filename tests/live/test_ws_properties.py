"""Property-based and concurrency suite for the /ws protocol v1 (docs/protocol.md).

Generated frames go to the real server over real sockets. The property: a socket is
closed only where the protocol says so (1009 for a frame over ws.max_message_size,
4029 after the rate limit); any other frame gets exactly one reply, of the kind and
code the contract names, and the socket stays usable (a ping after it gets its pong).

How it runs: Hypothesis drives plain (sync) tests, and every example is a coroutine
submitted to one event loop in a thread of its own, where a module-wide server lives
(rate limits raised so that only the limits under test can close a socket). One
probe socket is reused across examples; a new one is opened only after a close.
Replies are delimited without sleeping: the frame under test is followed by a ping
with a sentinel id, and the server handles a socket's frames in order, so everything
before that pong is the reply to the frame.

Budget: each test scales the loaded profile's max_examples (`ci`: 40, `long`: 1000). With
`ci` a run generates 1,820 inputs (240 JSON values, 80 unknown op names, 80 non-string
ops, 400 known ops with generated fields, 400 channel names, 80 + 40 duplicate-key
objects, 240 mangled texts, 160 binary frames, 40 frame sizes, 20 floods, 40 parallel
`auth` plans), plus 9 explicit examples, 24 fixed channel cases and 3 session-switch
tests; about 20-25 s when the server keeps the contract (shrinking failures adds more).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClosedError, websocket_connect

from tests.harness.server import LiveServer, UserClient, log_in, make_config
from tests.harness.strategies import jwt_like
from tests.harness.ws_client import FrameReader

T = TypeVar("T")

MAX_ID = 2**63 - 1
MAX_MESSAGE = 16 * 1024
"""The server's ws.max_message_size (the shipped default, set explicitly below)."""
RATE_BURST = 10
RATE_LIMIT = 1.0
"""The rate-limited server: ten frames at once, then one a second."""
OP_NAMES = ("subscribe", "unsubscribe", "vote", "refresh", "auth", "ping")
TOKEN_MAX = 4096
UNSOLICITED = {"votes", "token"}
"""Messages the server may push at any time; never a reply to a frame."""
ALL_CODES = frozenset({"bad_json", "unknown_op", "invalid", "not_found", "bad_channel", "unauthorized"})


def budget(factor: float) -> int:
    """This test's examples: a multiple of the profile's budget (ci 40, long 1000)."""
    return max(1, int(settings().max_examples * factor))


def scaled(factor: float) -> settings:
    """No explain phase: against a live server it costs seconds and adds nothing the shrunk
    frame does not already show."""
    return settings(max_examples=budget(factor), suppress_health_check=list(HealthCheck),
                    phases=[phase for phase in Phase if phase is not Phase.explain])


# -- the event loop thread, the server, and a probe socket -----------------------------


class LoopThread:
    """One asyncio loop in a thread; tests hand it coroutines and wait with a timeout."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ws-properties-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"the example did not finish within {timeout} s") from None

    def close(self) -> None:
        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        self.run(cancel_rest(), 30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


class ErrorLog(logging.Handler):
    """ERROR records the server logs in the loop thread (an uncaught exception in a handler)."""

    def __init__(self, thread_name: str) -> None:
        super().__init__(logging.ERROR)
        self.thread_name = thread_name
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName == self.thread_name:
            self.records.append(record)

    def since(self, mark: int) -> list[str]:
        return [f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else f"{r.name}: {r.getMessage()}"
                for r in self.records[mark:]]


def short(value: str | bytes, limit: int = 240) -> str:
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit // 2]!r} ... {value[-limit // 4:]!r} ({len(value)} in all)"


class Text(str):
    """A generated frame whose repr stays short (Hypothesis warns about reprs over ~40 kB)."""

    def __repr__(self) -> str:
        return short(str(self))


class Blob(bytes):
    def __repr__(self) -> str:
        return short(bytes(self))


def decode(raw: str | bytes) -> dict[str, Any]:
    """A server message: a text frame holding one JSON object with a string `type`."""
    assert isinstance(raw, str), f"the server sent a binary frame: {raw!r}"
    message = json.loads(raw)
    assert isinstance(message, dict) and isinstance(message.get("type"), str), f"not a typed object: {raw!r}"
    return message


@dataclass
class Outcome:
    replies: list[dict[str, Any]]
    closed: bool
    close_code: int | None


class ProbeSocket(FrameReader):
    """A raw client: keeps every frame the server sends, in order, undecoded."""

    _probes = itertools.count()

    @classmethod
    async def open(cls, base_url: str, token: str) -> ProbeSocket:
        request = HTTPRequest(base_url.replace("http", "ws", 1) + "/ws", request_timeout=10)
        connection = await websocket_connect(request, subprotocols=["livevote.v1", f"bearer.{token}"])
        sock = cls(connection)
        assert await sock.until(lambda: len(sock.messages) >= 1, 10), f"no welcome (closed {sock.close_code})"
        sock.welcome = decode(sock.messages.pop(0))
        assert sock.welcome["type"] == "welcome", sock.welcome
        return sock

    def write(self, payload: str | bytes, binary: bool = False) -> None:
        try:
            written = self.connection.write_message(payload, binary=binary)
        except WebSocketClosedError:
            return
        written.add_done_callback(lambda f: f.cancelled() or f.exception())

    def send(self, **op: Any) -> None:
        self.write(json.dumps(op))

    async def until(self, check: Callable[[], T], timeout: float) -> T | None:
        """`check()` once it is neither None nor False (0 counts: an index); None if the socket
        closed or time ran out first."""

        def done(found: T | None) -> bool:
            return found is not None and found is not False

        async def wait() -> T | None:
            async with self._arrived:
                while not done(found := check()):
                    if self.closed:
                        return found if done(found := check()) else None
                    await self._arrived.wait()
                return found

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            return None

    def decoded(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        return [decode(raw) for raw in self.messages[start:stop]]

    def find(self, start: int, **match: Any) -> int | None:
        for index in range(start, len(self.messages)):
            raw = self.messages[index]
            if isinstance(raw, str):
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(message, dict) and all(message.get(k) == v for k, v in match.items()):
                    return index
        return None

    async def exchange(self, payload: str | bytes, binary: bool = False, timeout: float = 10.0) -> Outcome:
        """Send a frame, then a sentinel ping; the replies are what came before its pong."""
        start = len(self.messages)
        probe = f"\x00probe-{next(self._probes)}"
        self.write(payload, binary)
        self.send(op="ping", id=probe)
        found = await self.until(lambda: self.find(start, type="pong", id=probe), timeout)
        if found is None:
            if not self.closed:
                raise AssertionError(f"no pong within {timeout} s and the socket is still open: {self.messages[start:]}")
            return Outcome(self._solicited(start, None), True, self.close_code)
        return Outcome(self._solicited(start, found), False, None)

    def _solicited(self, start: int, stop: int | None) -> list[dict[str, Any]]:
        return [m for m in self.decoded(start, stop) if m["type"] not in UNSOLICITED]

    async def request(self, timeout: float = 10.0, **op: Any) -> dict[str, Any]:
        """Send an op with a fresh id and return the reply carrying that id."""
        op_id = f"r-{next(self._probes)}"
        start = len(self.messages)
        self.send(id=op_id, **op)
        found = await self.until(lambda: self.find(start, id=op_id), timeout)
        assert found is not None, f"no reply to {op} (closed: {self.closed}, code {self.close_code})"
        return decode(self.messages[found])



PASSWORD = "plum tractor quietly 9431"


async def new_user(server: LiveServer, username: str) -> UserClient:
    """Registered through the service (as sign_up_admin does: no per-IP registration budget
    to run out of over hundreds of examples), then logged in over HTTP."""
    assert server.services is not None
    await server.services.accounts.register({"username": username, "password": PASSWORD})
    return await log_in(server, username, PASSWORD)


@dataclass
class Env:
    runner: LoopThread
    server: LiveServer
    user: UserClient
    stranger: UserClient
    teachers_of: dict[int, list[int]]
    errors: ErrorLog
    data_dir: Path
    _probe: ProbeSocket | None = None
    _limited: LiveServer | None = None
    _users: Iterator[int] = field(default_factory=itertools.count)

    @property
    def teachers(self) -> set[int]:
        return {no for nos in self.teachers_of.values() for no in nos}

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run one example; fails it on any error the server logged meanwhile."""
        mark = len(self.errors.records)
        try:
            result = self.runner.run(coro, timeout)
        except BaseException:
            self.runner.run(self.drop_probe(), 30)
            raise
        logged = self.errors.since(mark)
        assert not logged, f"the server logged errors: {logged}"
        return result

    async def probe(self) -> ProbeSocket:
        """The shared socket, reopened after it closed."""
        if self._probe is None or self._probe.closed:
            self._probe = await ProbeSocket.open(self.server.base_url, self.user.access_token)
        return self._probe

    async def drop_probe(self) -> None:
        if self._probe is not None:
            await self._probe.close()
            self._probe = None

    async def limited(self) -> LiveServer:
        """A second server with a low rate limit, for the flood tests."""
        if self._limited is None:
            config = make_config(self.data_dir / "limited", ws__rate_limit=RATE_LIMIT, ws__rate_burst=RATE_BURST)
            self._limited = await LiveServer(config).start()
        return self._limited

    def username(self, prefix: str) -> str:
        return f"{prefix}{next(self._users)}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    runner = LoopThread()
    errors = ErrorLog(runner.thread.name)
    logging.getLogger().addHandler(errors)
    data_dir = tmp_path_factory.mktemp("ws-properties")

    async def start() -> Env:
        config = make_config(data_dir / "main", ws__rate_limit=10000, ws__rate_burst=10000,
                             ws__max_message_size=MAX_MESSAGE, auth__viewer_attempts=1_000_000)
        server = await LiveServer(config).start()
        user = await new_user(server, "prober")
        stranger = await new_user(server, "stranger")
        subjects = (await server.get("/api/subjects/")).json()
        teachers_of = {}
        for subject in subjects:
            teachers_of[subject["no"]] = [t["no"] for t in (await server.get(f"/api/subjects/{subject['no']}/teachers/")).json()]
        return Env(runner, server, user, stranger, teachers_of, errors, data_dir)

    try:
        environment = runner.run(start())
    except BaseException:
        logging.getLogger().removeHandler(errors)
        runner.close()
        raise

    async def stop() -> None:
        await environment.drop_probe()
        for server in (environment._limited, environment.server):
            if server is not None:
                await server.stop()

    try:
        yield environment
    finally:
        try:
            runner.run(stop())
        finally:
            logging.getLogger().removeHandler(errors)
            runner.close()


# -- the oracle: which replies the contract allows for a frame ---------------------------

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
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
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


# -- strategies ------------------------------------------------------------------------------

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

DIGIT_LOOKALIKES = ["²", "¹", "³", "١", "٣", "۱", "०", "১", "๑", "０", "１", "𝟏", "𝟙", "Ⅻ", "①", "⑴", "⒈", "〡", "𑁧", "٠"]
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
    st.sampled_from(["01", "+1", "-1", " 1", "1 ", "1\n", "1_000", "0x1", "1e3", "1.0", "", "0", "00", "9" * 19, "9" * 20]),
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
    st.text(max_size=40), jwt_like(json_values), st.sampled_from(["", "x", "x.y.z", "..", "a" * TOKEN_MAX, "a" * (TOKEN_MAX + 1)]),
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
def op_docs(draw: st.DrawFn, ops: st.SearchStrategy[str] = st.sampled_from(OP_NAMES)) -> dict[str, Any]:
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
    edit = draw(st.sampled_from(["cut", "insert", "space", "odd_space", "double", "trail", "wrap", "deep", "deep_field"]))
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


# -- properties: frames that must be answered -------------------------------------------------


@scaled(6)
@given(value=json_values | wild_values, ascii_only=st.booleans())
@example(value={"op": "ping", "id": float("nan")}, ascii_only=True)
@example(value={"op": "ping", "id": 10**30}, ascii_only=True)
def test_any_json_value_gets_one_reply_and_the_socket_stays(env: Env, value: Any, ascii_only: bool) -> None:
    text = dumps(value, ascii_only)
    expected = bad_json() if has_nonfinite(value) else expect_text(text, env)
    env.run(check_frame(env, text, expected))


@scaled(2)
@given(op=op_names, extra=st.dictionaries(st.sampled_from(["id", "channel", "teacher", "value"]), json_values, max_size=2))
def test_unknown_op_names_get_unknown_op(env: Env, op: str, extra: dict[str, Any]) -> None:
    doc = {"op": op, **extra}
    env.run(check_frame(env, json.dumps(doc), expect(doc, env)))


@scaled(2)
@given(op=json_values.filter(lambda v: type(v) is not str), doc=op_docs())
@example(op=[], doc={"op": "ping"})
@example(op={}, doc={"op": "ping", "id": 1})
def test_op_of_any_json_type_gets_an_error(env: Env, op: Any, doc: dict[str, Any]) -> None:
    doc = {**doc, "op": op}
    env.run(check_frame(env, json.dumps(doc), expect(doc, env)))


@scaled(10)
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


@scaled(2)
@given(doc=op_docs(st.sampled_from(["vote", "auth", "refresh"])))
@example(doc={"op": "vote", "teacher": 1, "value": "good"})
def test_a_viewer_socket_never_votes_or_authenticates_whatever_it_sends(env: Env, doc: dict[str, Any]) -> None:
    env.run(check_viewer_op(env, doc))


@scaled(10)
@given(op=st.sampled_from(["subscribe", "unsubscribe"]), channel=channel_names, op_id=st.text(max_size=4) | st.integers())
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


@scaled(2)
@given(text=duplicate_key_objects(nested=False))
@example(text='{"op":"ping","op":"ping","id":"dup"}')
@example(text='{"op":"vote","teacher":1,"value":"good","\\u0076alue":"bad","id":"dup"}')
def test_duplicate_keys_are_bad_json(env: Env, text: str) -> None:
    env.run(check_frame(env, text, bad_json()))


@scaled(1)
@given(text=duplicate_key_objects(nested=True))
@example(text='{"op":"ping","id":"dup","x":{"a":1,"a":1}}')
def test_duplicate_keys_in_nested_objects_are_bad_json(env: Env, text: str) -> None:
    env.run(check_frame(env, text, bad_json()))


@scaled(6)
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


@scaled(4)
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


# -- properties: frames that must close -------------------------------------------------------


def sized_frame(size: int, style: str) -> str | bytes:
    """A frame of exactly `size` bytes on the wire: JSON with multi-byte padding, raw text, or bytes."""
    if style == "binary":
        return (b'{"op":"ping","pad":"' + b"x" * size)[:size]
    head, tail = '{"op":"ping","id":"big","pad":"', '"}'
    room = size - len(head) - len(tail)
    wide = {"ascii": "x", "cjk": "票", "emoji": "🗳", "mixed": "é"}[style]
    count, rest = divmod(room, len(wide.encode()))
    frame = head + wide * count + "x" * rest + tail
    assert len(frame.encode()) == size
    return frame


@scaled(1)
@given(
    size=st.one_of(st.integers(MAX_MESSAGE - 8, MAX_MESSAGE + 8), st.integers(64, 4 * MAX_MESSAGE)),
    style=st.sampled_from(["ascii", "cjk", "emoji", "mixed", "binary"]),
)
def test_frames_over_the_size_limit_close_1009_and_others_do_not(env: Env, size: int, style: str) -> None:
    """Bytes on the wire count, not characters: 6,000 CJK characters are 18,000 bytes."""
    frame = sized_frame(size, style)

    async def example() -> None:
        if size <= MAX_MESSAGE:
            if isinstance(frame, bytes):
                await check_frame(env, frame, bad_json(), binary=True)
            else:
                await check_frame(env, frame, Expect(frozenset({"error:invalid"}), "big"))
            return
        sock = await env.probe()
        start = len(sock.messages)
        sock.write(frame, binary=isinstance(frame, bytes))
        sock.send(op="ping", id="after")
        code = await sock.wait_closed(10)
        assert code == 1009, f"a {size}-byte frame closed with {code}, not 1009; got {sock.messages[start:]}"
        replies = [m for m in sock.decoded(start) if m["type"] not in UNSOLICITED]
        assert replies == [], f"an oversized frame was answered: {replies}"

    env.run(example())


CHEAP_FRAMES = st.sampled_from([
    '{"op":"ping"}', "{not json", '{"op":"dance"}', '{"op":"vote"}', "[1,2]", '{"op":"ping","id":1}',
    '{"op":"subscribe","channel":"subject:x"}', '{"op":"refresh","refresh_token":"x"}',
])


@scaled(0.5)
@given(count=st.integers(1, RATE_BURST - 1) | st.integers(RATE_BURST + 2, 5 * RATE_BURST),
       frames=st.lists(CHEAP_FRAMES, min_size=5 * RATE_BURST, max_size=5 * RATE_BURST))
def test_rate_limit_tells_then_closes_4029_and_only_past_the_burst(env: Env, count: int, frames: list[str]) -> None:
    """rate_burst frames at once are fine; a flood past it gets one rate_limited error, then 4029."""

    async def example() -> None:
        server = await env.limited()
        user = await new_user(server, env.username("flood"))
        sock = await ProbeSocket.open(server.base_url, user.access_token)
        started = time.monotonic()
        for frame in frames[:count]:
            sock.write(frame)
        if count < RATE_BURST:
            sock.send(op="ping", id="last")
            assert await sock.until(lambda: sock.find(0, type="pong", id="last") is not None, 10), (
                f"{count + 1} frames (burst {RATE_BURST}) closed the socket {sock.close_code}: {sock.messages}")
            replies = sock.decoded()
            assert len(replies) == count + 1 and not [m for m in replies if m.get("code") == "rate_limited"], replies
            await sock.close()
            return
        code = await sock.wait_closed(10)
        elapsed = time.monotonic() - started
        replies = sock.decoded()
        limited = [i for i, m in enumerate(replies) if m.get("code") == "rate_limited"]
        assert code == 4029, f"a flood of {count} closed with {code}"
        assert len(limited) == 1 and limited[0] == len(replies) - 1, f"rate_limited must be told once, last: {replies}"
        assert replies[-1]["type"] == "error" and "id" in replies[-1]
        answered = len(replies) - 1
        assert RATE_BURST <= answered <= RATE_BURST + math.floor(elapsed * RATE_LIMIT) + 1, (
            f"{answered} frames answered before the limit (burst {RATE_BURST}, {elapsed:.2f} s)")

    env.run(example())


# -- auth, refresh and the socket's session --------------------------------------------------------


async def logout(server: LiveServer, refresh_token: str) -> None:
    response = await server.request("POST", "/api/auth/logout", json_body={"refresh_token": refresh_token})
    assert response.status == 204, response.body


async def revoked_within(sock: ProbeSocket, started: float, limit: float = 1.0) -> None:
    """The socket gets `revoked`, then close 4003, within `limit` seconds of `started`."""
    left = max(0.0, started + limit - time.monotonic())
    got = await sock.until(lambda: sock.find(0, type="revoked") is not None, left)
    assert got, f"no `revoked` within {limit} s (closed: {sock.closed}, code {sock.close_code})"
    try:
        code = await sock.wait_closed(max(0.0, started + limit - time.monotonic()))
    except TimeoutError:
        raise AssertionError(f"`revoked` arrived but the socket was still open {limit} s after the logout") from None
    assert code == 4003, f"closed with {code}, not 4003"


def test_auth_op_moves_the_socket_to_the_new_session(env: Env) -> None:
    """Socket on session 1, `auth` with session 2's token, log out session 2: revoked and 4003 within 1 s."""

    async def example() -> None:
        name = env.username("switch")
        first = await new_user(env.server, name)
        second = await log_in(env.server, name, PASSWORD)
        sock = await ProbeSocket.open(env.server.base_url, first.access_token)
        reply = await sock.request(op="auth", access_token=second.access_token)
        assert reply["type"] == "ack", reply
        started = time.monotonic()
        await logout(env.server, second.refresh_token)
        await revoked_within(sock, started)

    env.run(example())


def test_refresh_op_moves_the_socket_to_the_refreshed_session(env: Env) -> None:
    """Socket on session 1, `refresh` with session 2's refresh token, log out session 2
    (with the rotated refresh token): revoked and 4003 within 1 s."""

    async def example() -> None:
        name = env.username("rotate")
        first = await new_user(env.server, name)
        second = await log_in(env.server, name, PASSWORD)
        sock = await ProbeSocket.open(env.server.base_url, first.access_token)
        reply = await sock.request(op="refresh", refresh_token=second.refresh_token)
        assert reply["type"] == "tokens" and reply["refresh_token"], reply
        started = time.monotonic()
        await logout(env.server, reply["refresh_token"])
        await revoked_within(sock, started)

    env.run(example())


def test_after_auth_the_old_session_no_longer_owns_the_socket(env: Env) -> None:
    """Socket moved from session 1 to 2 by `auth`: logging out session 1 closes session 1's
    other sockets (the witness, waited for), and leaves this one answering."""

    async def example() -> None:
        name = env.username("leave")
        first = await new_user(env.server, name)
        second = await log_in(env.server, name, PASSWORD)
        sock = await ProbeSocket.open(env.server.base_url, first.access_token)
        witness = await ProbeSocket.open(env.server.base_url, first.access_token)
        assert (await sock.request(op="auth", access_token=second.access_token))["type"] == "ack"
        started = time.monotonic()
        await logout(env.server, first.refresh_token)
        await revoked_within(witness, started)
        assert not sock.closed, f"closed {sock.close_code} by the logout of the session it left"
        assert (await sock.request(op="ping"))["type"] == "pong"
        await sock.close()

    env.run(example())


@dataclass
class AuthPlan:
    sessions: int
    sockets: list[tuple[int, list[int | str]]]
    """Per socket: the session it opens on, then the tokens it sends in `auth` ops:
    a session index, "stranger" (another user's token) or "garbage"."""
    revoke_order: list[int]
    revoke_during: int | None
    """If set, the first session of revoke_order is logged out while the `auth` ops are still
    being sent: just before round `revoke_during` goes out (after the last, if past it)."""


@st.composite
def auth_plans(draw: st.DrawFn) -> AuthPlan:
    sessions = draw(st.integers(2, 4))
    choice = st.one_of(st.integers(0, sessions - 1), st.sampled_from(["stranger", "garbage"]))
    sockets = draw(st.lists(st.tuples(st.integers(0, sessions - 1), st.lists(choice, min_size=1, max_size=6)),
                            min_size=2, max_size=6))
    rounds = max(len(ops) for _, ops in sockets)
    return AuthPlan(sessions, sockets, draw(st.permutations(range(sessions))),
                    draw(st.none() | st.integers(0, rounds)))


@scaled(1)
@given(plan=auth_plans())
def test_parallel_auth_ops_leave_each_socket_on_its_newest_accepted_session(env: Env, plan: AuthPlan) -> None:
    """One user, several sessions, sockets sending `auth` with each other's tokens all at once
    (and maybe a logout in the middle of it): every reply is an ack or an error (never an ack
    of another user's token or of garbage); a socket closes only if a session it was on ended;
    and revoking a session closes (revoked, 4003, within 1 s) every socket whose newest accepted
    token is of that session, plus a witness socket per session, and no other socket."""

    async def example() -> None:
        name = env.username("para")
        logins = [await new_user(env.server, name)]
        for _ in range(plan.sessions - 1):
            logins.append(await log_in(env.server, name, PASSWORD))

        def token(choice: int | str) -> str:
            if choice == "garbage":
                return "x.y.z"
            if choice == "stranger":
                return env.stranger.access_token
            return logins[int(choice)].access_token

        sockets = list(await asyncio.gather(
            *(ProbeSocket.open(env.server.base_url, logins[first].access_token) for first, _ in plan.sockets)))
        witnesses = await asyncio.gather(
            *(ProbeSocket.open(env.server.base_url, login.access_token) for login in logins))
        early = plan.revoke_order[0] if plan.revoke_during is not None else None
        logging_out: asyncio.Future[None] | None = None
        rounds = max(len(ops) for _, ops in plan.sockets)
        for round_ in range(rounds + 1):
            if round_ == plan.revoke_during:
                assert early is not None
                logging_out = asyncio.ensure_future(logout(env.server, logins[early].refresh_token))
            for sock, (_, ops) in zip(sockets, plan.sockets):
                if round_ < len(ops):
                    sock.send(op="auth", id=f"a{round_}", access_token=token(ops[round_]))
        revoked_at = 0.0
        if logging_out is not None:
            await logging_out
            revoked_at = time.monotonic()

        histories: list[list[int]] = []
        """Per socket: the session it opened on, then that of every accepted token, in reply order."""
        for index, (sock, (first, ops)) in enumerate(zip(sockets, plan.sockets)):
            wanted = {f"a{i}" for i in range(len(ops))}

            def all_answered(sock: ProbeSocket = sock, wanted: set[str] = wanted) -> bool:
                return {m.get("id") for m in sock.decoded()} >= wanted

            answered = await sock.until(all_answered, 10)
            assert answered or sock.closed, f"socket {index} left auth ops unanswered: {sock.messages}"
            history = [first]
            for message in sock.decoded():
                if message.get("id") not in wanted:
                    continue
                choice = ops[int(message["id"][1:])]
                assert message["type"] in ("ack", "error"), f"socket {index}: {message}"
                if message["type"] == "error":
                    assert message["code"] in ALL_CODES and message["message"], f"socket {index}: {message}"
                    continue
                assert choice not in ("stranger", "garbage"), f"socket {index}: a {choice} token was accepted: {message}"
                history.append(int(choice))
            histories.append(history)

        def describe(index: int) -> str:
            return f"socket {index} (sessions it was on: {histories[index]}, plan {plan.sockets[index]})"

        open_sockets = dict(enumerate(sockets))
        if early is not None:
            await revoked_within(witnesses[early], revoked_at)
            for index in list(open_sockets):
                sock = open_sockets[index]
                if histories[index][-1] == early:
                    try:
                        await revoked_within(open_sockets.pop(index), revoked_at)
                    except AssertionError as exc:
                        raise AssertionError(f"{describe(index)}, session {early} logged out mid-way: {exc}") from None
                elif sock.closed:
                    assert early in histories[index] and sock.close_code == 4003, (
                        f"{describe(index)} closed {sock.close_code} when session {early} was logged out")
                    del open_sockets[index]

        for revoked in plan.revoke_order[1:] if early is not None else plan.revoke_order:
            for index, sock in open_sockets.items():
                assert not sock.closed, f"{describe(index)} closed {sock.close_code} before its session ended"
                assert (await sock.request(op="ping"))["type"] == "pong"
            started = time.monotonic()
            await logout(env.server, logins[revoked].refresh_token)
            await revoked_within(witnesses[revoked], started)
            for index in [i for i in open_sockets if histories[i][-1] == revoked]:
                try:
                    await revoked_within(open_sockets.pop(index), started)
                except AssertionError as exc:
                    raise AssertionError(f"{describe(index)}, session {revoked} logged out: {exc}") from None
        for sock in sockets:
            await sock.close()

    env.run(example(), timeout=120)
