"""GET /sse: the live channel's messages as an event stream, with the socket's rules.

Tickets, refusals, the head, live votes, resumption from Last-Event-ID, token expiry
and revocation, the graceful stop, slow consumers, presence and heartbeats, over a
real socket to the real server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.conftest import ServerFactory
from tests.harness.server import ROOT, LiveServer, UserClient, sign_up, sign_up_admin, viewer_token, wait_for
from tests.harness.sse_client import EventStreamClient, StreamRefused, request_head
from tests.harness.strategies import examples, jwt_like
from tests.harness.voting import cast

SHORT = {"auth__access_ttl": 3, "auth__refresh_ahead": 1, "auth__leeway": 0}


def counts(answer: dict[str, object]) -> dict[str, object]:
    """A vote's answer as a `votes` message lists the teacher."""
    return {"no": answer["teacher"], **{k: answer[k] for k in ("good_count", "bad_count", "version")}}


async def vote(user: UserClient, teacher: int, value: str | None) -> dict[str, object]:
    acknowledged, response = await cast(user, teacher, value)
    assert acknowledged, response.body
    return dict(response.json())


async def ticket(server: LiveServer, token: str) -> str:
    response = await server.request("POST", "/api/live/tickets", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 201, response.body
    body = response.json()
    assert body["expires_in"] == 30
    return str(body["ticket"])


async def updated(stream: EventStreamClient, teacher: int) -> dict[str, object]:
    """The first `votes` message that lists `teacher` (coalescing may hold it for the next tick)."""
    while True:
        update = await stream.expect("votes", timeout=5)
        if any(counts["no"] == teacher for counts in update["updates"]):
            return update


async def peers(server: LiveServer, count: int) -> bool:
    """Whether the hub holds `count` live connections (for wait_for)."""
    assert server.services is not None
    return server.services.hub.peer_count == count


async def refused(server: LiveServer, channels: list[str], **options: object) -> StreamRefused:
    with pytest.raises(StreamRefused) as refusal:
        await EventStreamClient.open(server.base_url, channels, **options)  # type: ignore[arg-type]
    assert refusal.value.headers["content-type"] == "application/problem+json"
    return refusal.value


async def test_a_stream_carries_the_sockets_messages_and_live_votes(api: LiveServer) -> None:
    alice = await sign_up(api, "alice")
    once = await ticket(api, alice.access_token)
    stream = await EventStreamClient.open(api.base_url, ["subject:1", "dashboard"], ticket=once)
    try:
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["x-accel-buffering"] == "no" and stream.headers["cache-control"] == "no-store"
        welcome = await stream.expect("welcome")
        assert welcome["user"]["username"] == "alice" and welcome["role"] == "user"
        subject = await stream.expect("snapshot", channel="subject:1")
        board = await stream.expect("snapshot", channel="dashboard")
        first = subject["teachers"][0]
        answer = await vote(alice, first["no"], "good")
        update = await stream.expect("votes", channel="subject:1")
        assert update["updates"] == [counts(answer)]
        totals = await stream.expect("votes", channel="dashboard")
        before = next(s for s in board["subjects"] if s["no"] == 1)
        assert next(s for s in totals["subjects"] if s["no"] == 1)["good_count"] == before["good_count"] + 1
        assert stream.retry == 2000 and stream.last_id is not None
    finally:
        await stream.close()


async def test_a_ticket_opens_one_stream_once_and_nothing_else(api: LiveServer) -> None:
    alice = await sign_up(api, "alice")
    once = await ticket(api, alice.access_token)
    stream = await EventStreamClient.open(api.base_url, ["subject:1"], ticket=once)
    await stream.expect("snapshot")
    await stream.close()
    assert (await refused(api, ["subject:1"], ticket=once)).status == 401, "spent"
    as_token = await api.request("GET", "/api/auth/me", headers={"Authorization": f"Bearer {once}"})
    assert as_token.status == 401, "a ticket is not an access token"
    assert (await refused(api, ["subject:1"], ticket=alice.access_token)).status == 401, "nor a token a ticket"
    assert api.services is not None
    claims = api.services.tokens.verify(alice.access_token)
    leeway = api.services.config.auth.leeway
    stale = api.services.tokens.mint_ticket(claims, now=time.time() - 31 - leeway).token
    assert (await refused(api, ["subject:1"], ticket=stale)).status == 401, "30 seconds (and the leeway) to spend it"
    assert (await refused(api, ["subject:1"])).status == 401


async def test_a_viewer_watches_by_ticket_and_by_header(api: LiveServer) -> None:
    viewer = await viewer_token(api)
    by_ticket = await EventStreamClient.open(api.base_url, ["subject:2"], ticket=await ticket(api, viewer))
    by_header = await EventStreamClient.open(api.base_url, ["subject:2"], token=viewer)
    for stream in (by_ticket, by_header):
        assert (await stream.expect("welcome"))["role"] == "viewer"
        await stream.expect("snapshot", channel="subject:2")
        await stream.close()


@pytest.mark.parametrize(
    ("channels", "status"),
    [([], 400), (["subject:x"], 400), (["subject:01"], 400), ([f"teacher:{n}" for n in range(1, 34)], 400)],
)
async def test_bad_channel_lists_are_refused_before_the_stream(
    api: LiveServer, channels: list[str], status: int
) -> None:
    refusal = await refused(api, channels, token=await viewer_token(api))
    assert refusal.status == status and b"hannel" in refusal.body


async def test_a_foreign_origin_and_the_caps_are_refused_as_on_the_socket(start_server: ServerFactory) -> None:
    server = await start_server(ws__max_sockets_per_token=2)
    viewer = await viewer_token(server)
    foreign = await refused(server, ["subject:1"], token=viewer, headers={"Origin": "https://evil.example"})
    assert foreign.status == 403
    held = [await EventStreamClient.open(server.base_url, ["subject:1"], token=viewer) for _ in range(2)]
    over = await refused(server, ["subject:1"], token=viewer)
    assert over.status == 429 and over.headers["retry-after"] == "10"
    await held[0].close()
    await wait_for(lambda: peers(server, 1), timeout=5)
    again = await EventStreamClient.open(server.base_url, ["subject:1"], token=viewer)
    for stream in (again, held[1]):
        await stream.close()


CHANNELS = st.sampled_from(["subject:1", "subject:2", "teacher:3", "dashboard", "subject:999", "teacher:999"])
NEAR_CHANNELS = st.sampled_from(["teacher:0", "subject:01", "subject:+1", "Dashboard", "subject:", ":", "",
                                 "subject:1:2", "subject:" + "9" * 30, "subject:１"]) | st.text(max_size=30)


@examples(1.5)
@given(
    channels=st.one_of(st.lists(CHANNELS, min_size=1, max_size=6), st.lists(CHANNELS | NEAR_CHANNELS, max_size=40)),
    ticket=st.none() | st.text(max_size=60) | jwt_like(st.integers() | st.text(max_size=20), "livevote-ticket+jwt"),
    last_event_id=st.none() | st.text(max_size=40) | st.from_regex(r"[0-9a-f]{8}-[0-9]{1,20}", fullmatch=True),
    bearer=st.sampled_from([True, True, True, False]),
)
async def test_any_request_gets_a_stream_or_a_clear_refusal(
    api: LiveServer, channels: list[str], ticket: str | None, last_event_id: str | None, bearer: bool
) -> None:
    """Never a 5xx or a stream that says nothing: 200 with every named channel's first state (or
    its error), or 400 / 401 problem+json."""
    query = {} if last_event_id is None else {"last_event_id": last_event_id}
    token = await viewer_token(api) if bearer else None
    try:
        stream = await EventStreamClient.open(api.base_url, channels, token=token, ticket=ticket, query=query)
    except StreamRefused as refusal:
        event(f"refused {refusal.status}")
        assert refusal.status in (400, 401), refusal
        assert refusal.headers["content-type"] == "application/problem+json"
        return
    event("streamed")
    try:
        assert token is not None
        await stream.expect("welcome")
        for name in dict.fromkeys(channels):
            first = await stream.take(lambda message, name=name: message.get("channel") == name)  # type: ignore[misc]
            assert first["type"] in ("snapshot", "error"), first
    finally:
        await stream.close()


async def test_unknown_channels_are_an_error_event_and_the_rest_still_flow(api: LiveServer) -> None:
    stream = await EventStreamClient.open(api.base_url, ["subject:999", "subject:1"], token=await viewer_token(api))
    error = await stream.expect("error", channel="subject:999")
    assert error["code"] == "not_found"
    await stream.expect("snapshot", channel="subject:1")
    await stream.close()


async def test_no_log_line_holds_a_ticket(api: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    viewer = await viewer_token(api)
    caplog.set_level(logging.INFO)
    unspent, spent = await ticket(api, viewer), await ticket(api, viewer)
    await refused(api, ["nonsense"], ticket=unspent)  # refused before it could be spent
    stream = await EventStreamClient.open(api.base_url, ["subject:1"], ticket=spent)
    await stream.expect("snapshot")
    await stream.close()
    async def logged() -> bool:
        return sum("GET /sse" in record.getMessage() for record in caplog.records) >= 2

    await wait_for(logged, timeout=5)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "ticket=-" in logged
    assert unspent not in logged and spent not in logged and unspent[:40] not in logged


async def test_a_stream_coming_back_gets_only_what_changed(api: LiveServer) -> None:
    """Another stream keeps the channel open meanwhile, so the hub can tell what changed."""
    alice = await sign_up(api, "alice")
    viewer = await viewer_token(api)
    keeper = await EventStreamClient.open(api.base_url, ["subject:1"], token=viewer)
    stream = await EventStreamClient.open(api.base_url, ["subject:1"], token=viewer)
    snapshot = await stream.expect("snapshot")
    first, second = (teacher["no"] for teacher in snapshot["teachers"][:2])
    await vote(alice, first, "good")
    await stream.expect("votes")
    mark = stream.last_id
    await stream.close()
    changed = await vote(alice, second, "bad")
    await updated(keeper, second)
    back = await EventStreamClient.open(api.base_url, ["subject:1"], token=viewer, last_event_id=mark)
    try:
        update = await back.expect("votes")
        assert update["updates"] == [counts(changed)]
        await back.expect("watching")
        assert not [message for message in back.messages if message["type"] == "snapshot"]
        await vote(alice, first, None)
        await updated(back, first)  # and it stays live
    finally:
        for client in (back, keeper):
            await client.close()


async def test_a_mark_never_covers_news_still_waiting_for_its_tick(start_server: ServerFactory) -> None:
    """A vote of subject 2 waits for its channel's coalescing tick while teacher 1's channel sends
    at once: the mark on that event must not claim the waiting vote, or a stream that drops then
    and comes back after the tick would never get it."""
    server = await start_server(ws__coalesce_ms=300)
    alice = await sign_up(server, "alice")
    viewer = await viewer_token(server)
    channels = ["subject:2", "teacher:1"]
    keeper = await EventStreamClient.open(server.base_url, channels, token=viewer)
    stream = await EventStreamClient.open(server.base_url, channels, token=viewer)
    await stream.expect("snapshot", channel="teacher:1")
    await vote(alice, 4, "good")  # sent at once; subject 2's channel then waits 300 ms
    waiting = await vote(alice, 5, "good")
    await vote(alice, 1, "good")  # teacher 1's channel is not waiting: sent at once, with a mark
    await updated(stream, 1)
    mark = stream.last_id
    await stream.close()
    await updated(keeper, 5)  # the tick has passed: only a resumption can bring it now
    back = await EventStreamClient.open(server.base_url, channels, token=viewer, last_event_id=mark)
    assert counts(waiting) in (await updated(back, 5))["updates"]
    for client in (back, keeper):
        await client.close()


@pytest.mark.parametrize("mark", ["nonsense", "00000000-1", "abcdefgh-99999999999999999999"])
async def test_a_mark_the_process_cannot_tell_gets_a_snapshot(api: LiveServer, mark: str) -> None:
    viewer = await viewer_token(api)
    stream = await EventStreamClient.open(api.base_url, ["subject:1"], token=viewer, last_event_id=mark)
    await stream.expect("snapshot")
    await stream.close()


async def test_a_catalog_change_since_the_mark_means_a_snapshot(api: LiveServer, admin: UserClient) -> None:
    viewer = await viewer_token(api)
    keeper = await EventStreamClient.open(api.base_url, ["subject:1"], token=viewer)
    await keeper.expect("snapshot")
    mark = keeper.last_id
    assert mark is not None
    renamed = await admin.request("PATCH", "/api/subjects/1", json_body={"name": "Renamed"})
    assert renamed.status == 200, renamed.body
    await keeper.expect("catalog")
    back = await EventStreamClient.open(
        api.base_url, ["subject:1"], token=viewer, query={"last_event_id": mark}
    )
    assert (await back.expect("snapshot"))["subject"]["name"] == "Renamed"
    for client in (back, keeper):
        await client.close()


async def test_a_stream_lives_on_pushed_tokens_and_ends_4001_without_them(start_server: ServerFactory) -> None:
    pushed = await start_server(**SHORT)
    alice = await sign_up(pushed, "alice")
    once = await ticket(pushed, alice.access_token)
    stream = await EventStreamClient.open(pushed.base_url, ["subject:1"], ticket=once)
    token = await stream.expect("token", timeout=5)
    fresh = UserClient(pushed, "alice", "", {**alice.pair, "access_token": token["access_token"]})
    assert (await fresh.get("/api/auth/me")).status == 200
    await stream.expect("token", timeout=5)
    assert not stream.closed, "past the first token's expiry"
    await stream.close()
    unpushed = await start_server(**SHORT, auth__push_tokens=False)
    bob = await sign_up(unpushed, "bob")
    ending = await EventStreamClient.open(unpushed.base_url, ["subject:1"], token=bob.access_token)
    assert (await ending.expect("close", timeout=6))["code"] == 4001
    await ending.wait_closed()


async def test_a_revoked_session_ends_its_streams(api: LiveServer) -> None:
    alice = await sign_up(api, "alice")
    stream = await EventStreamClient.open(api.base_url, ["subject:1"], token=alice.access_token)
    await stream.expect("snapshot")
    await api.request("POST", "/api/auth/logout", json_body={"refresh_token": alice.refresh_token})
    await stream.expect("revoked", timeout=2)
    assert (await stream.expect("close", timeout=2))["code"] == 4003
    await stream.wait_closed()


async def test_the_graceful_stop_tells_streams_to_go_elsewhere(start_server: ServerFactory) -> None:
    server = await start_server()
    stream = await EventStreamClient.open(server.base_url, ["dashboard"], token=await viewer_token(server))
    await stream.expect("snapshot")
    await server.stop()
    assert (await stream.expect("close", timeout=5))["code"] == 1001
    await stream.wait_closed()


async def test_a_stream_that_never_reads_is_closed_as_too_slow(start_server: ServerFactory) -> None:
    """Renames with a 6 KB intro, each sent to the subject's streams, outgrow what the kernel
    holds: the stuck stream falls behind and is closed after ws.stall_timeout; the other reads on."""
    server = await start_server(ws__max_pending=4096, ws__stall_timeout=1)
    root = await sign_up_admin(server)
    viewer = await viewer_token(server)
    stuck = socket.socket()  # reads nothing, into a small window
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", server.port))
    stuck.sendall(request_head([("channel", "subject:1")], {"Host": "x", "Authorization": f"Bearer {viewer}"}))
    reading = await EventStreamClient.open(server.base_url, ["subject:1"], token=viewer)
    await reading.expect("snapshot")

    async def rename_until_one_is_left() -> int:
        renames = 0
        while not await peers(server, 1):
            intro = "票" * 1999 + str(renames % 10)
            assert (await root.request("PATCH", "/api/subjects/1", json_body={"intro": intro})).status == 200
            renames += 1
        return renames

    renames = await asyncio.wait_for(rename_until_one_is_left(), 60)
    print(f"\nthe stuck stream was closed after {renames} renames")
    await reading.expect("catalog")
    assert not reading.closed
    await reading.close()
    stuck.close()


async def test_streams_count_as_watchers_and_get_heartbeats(start_server: ServerFactory) -> None:
    server = await start_server(ws__watching_interval=0.2, ws__ping_interval=0.4)
    alice = await sign_up(server, "alice")
    viewer = await viewer_token(server)
    streams = [
        await EventStreamClient.open(server.base_url, ["subject:1"], token=token)
        for token in (alice.access_token, viewer, viewer)
    ]
    await streams[0].expect("watching", channel="subject:1", watching=2, timeout=5)
    stats = (await server.get("/api/stats")).json()
    assert stats["sockets"] == 3
    async def beating() -> bool:
        return streams[0].heartbeats >= 2

    await wait_for(beating, timeout=5)
    for stream in streams:
        await stream.close()


async def test_the_documented_curl_example_prints_live_counts(api: LiveServer) -> None:
    """docs/protocol.md's "Watching from a terminal", run by bash with the real curl."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    match = re.search(r"^### Watching from a terminal\n.*?^```sh\n(.*?)^```$", text, re.S | re.M)
    assert match, "docs/protocol.md lost its curl example"
    script = match.group(1).replace("http://127.0.0.1:8000", api.base_url)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", "set -euo pipefail\n" + script, env={**os.environ, "PATH": path},
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
    )
    assert process.stdout is not None
    alice = await sign_up(api, "alice")

    async def printed(kind: str) -> dict[str, object]:
        while True:
            line = (await process.stdout.readline()).decode()  # type: ignore[union-attr]
            assert line, "curl ended"
            if line.startswith("data: ") and json.loads(line[6:])["type"] == kind:
                return dict(json.loads(line[6:]))

    try:
        teachers = (await asyncio.wait_for(printed("snapshot"), 10))["teachers"]
        answer = await vote(alice, teachers[0]["no"], "bad")  # type: ignore[index]
        update = await asyncio.wait_for(printed("votes"), 10)
        assert update["updates"] == [counts(answer)]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        await process.wait()
