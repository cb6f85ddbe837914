"""Slow consumers in scaled mode: sockets that stop reading while a flood of votes goes out (a real
`python server.py`, real sockets whose kernel buffers fill up). The server's memory stays bounded by
ws.max_pending per socket, a socket that falls behind catches up with snapshots and converges, and
one stuck past ws.stall_timeout is closed 4008.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.harness.live_views import (
    CHANNEL,
    TEACHERS,
    Counts,
    View,
    close_all,
    store_counts,
    store_totals,
    subscribe,
    votes_messages,
    wait_converged,
)
from tests.harness.procfs import rss_kib, send_queue
from tests.harness.raw_socket import RawSocket
from tests.harness.redis_server import RedisServer
from tests.harness.server import UserClient, sign_up
from tests.harness.server_process import ServerProcess, start_process, stop_process
from tests.harness.ws_client import LiveClient, welcomed

MAX_PENDING = 16384
SLOW_CONFIG = {"ws.coalesce_ms": 0, "ws.max_pending": MAX_PENDING, "ws.rate_limit": 100000, "ws.rate_burst": 100000}
SLOW_CHANNELS = (CHANNEL, "teacher:1", "teacher:2", "teacher:3", "dashboard")
"""Every vote on teachers 1-3 is three frames for a socket on these channels (subject, teacher, dashboard)."""
PER_SOCKET_SLACK = 4096
"""Beyond max_pending a socket may hold one more broadcast (the one that crossed the limit, about
150 bytes here) and, once it fell behind, the catch-up snapshots of its 5 channels (under 1 KiB)."""
RSS_MARGIN_KIB = 8 * 1024
"""Noise that is not socket output: allocator arenas kept after a burst, Python objects of 10,000
votes in flight, SQLite and Redis client buffers. A warm-up flood runs first so that caches are at
their steady size; calibration runs on this machine grew 0.2-1.9 MiB with max_pending 16 KiB, while
the same flood with max_pending 100 MB (no bound) grew 82 MiB for 20 slow sockets."""


class Flood:
    """Vote changes through the socket vote op, pipelined: each voter alternates good and bad
    on each of teachers 1-3, so that every op after a voter's first three is a switch."""

    def __init__(self, voters: list[LiveClient]) -> None:
        self.voters = voters
        self.sent: collections.Counter[tuple[int, int]] = collections.Counter()

    async def __call__(self, count: int) -> int:
        per_voter = count // len(self.voters)

        async def run(index: int, client: LiveClient) -> None:
            last = ""
            for i in range(per_voter):
                teacher = TEACHERS[i % 3]
                last = client.send("vote", teacher=teacher, value=("good", "bad")[self.sent[index, teacher] % 2])
                self.sent[index, teacher] += 1
            await client.expect("ack", timeout=120, id=last)
            errors = [m for m in client.messages if m.get("type") == "error"]
            assert not errors, errors[:3]
            client.messages.clear()

        await asyncio.gather(*(run(index, client) for index, client in enumerate(self.voters)))
        return per_voter * len(self.voters)


async def voting_crowd(
    server: ServerProcess, clients: list[LiveClient], size: int = 20
) -> tuple[list[UserClient], Flood]:
    """`size` users, each voting from a socket of its own (added to `clients`, to be closed)."""
    users = [await sign_up(server, f"voter{i}") for i in range(size)]
    voters = [await welcomed(server, user.access_token) for user in users]
    clients.extend(voters)
    return users, Flood(voters)


async def open_slow(server: ServerProcess, users: Sequence[UserClient], slow: list[RawSocket]) -> None:
    """A raw socket per user, on every channel of SLOW_CHANNELS (added to `slow`, to be closed);
    not read again until the test says so."""
    for user in users:
        raw = await RawSocket.connect(server.port, user.access_token)
        slow.append(raw)
        for channel in SLOW_CHANNELS:
            await raw.subscribe(channel)


def rss_bound_kib(slow_sockets: int) -> int:
    """How much the server's RSS may grow with this many slow sockets."""
    return (slow_sockets * (MAX_PENDING + PER_SOCKET_SLACK)) // 1024 + RSS_MARGIN_KIB




def differences(view: View, store: dict[int, Counts], totals: Any) -> dict[str, tuple[Any, Any]]:
    """Per channel of SLOW_CHANNELS that a slow socket shows wrongly: (what it shows, what the store has)."""
    shown_expected = {
        "dashboard": ((view.subjects, view.votes_total), totals),
        CHANNEL: (view.teachers.get(CHANNEL), store),
        **{f"teacher:{no}": (view.teachers.get(f"teacher:{no}"), {no: store[no]}) for no in TEACHERS},
    }
    return {name: pair for name, pair in shown_expected.items() if pair[0] != pair[1]}


def converged(view: View, store: dict[int, Counts], totals: Any) -> bool:
    """The slow socket shows the store's state on every channel it holds."""
    return not differences(view, store, totals)


def stale(view: View, store: dict[int, Counts], totals: Any) -> str:
    return "; ".join(f"{name} shows {shown}, the store has {expected}"
                     for name, (shown, expected) in differences(view, store, totals).items())


async def test_slow_consumer_memory_stays_bounded_and_it_converges(tmp_path: Path, redis_server: RedisServer) -> None:
    """The slow sockets must outlast the flood however slow a loaded machine makes it: closing
    them for stalling is the next test's subject."""
    server = await start_process(tmp_path / "host", redis_server.url, **SLOW_CONFIG, **{"ws.stall_timeout": 600})
    assert server.process is not None
    pid = server.process.pid
    clients: list[LiveClient] = []
    slow: list[RawSocket] = []
    try:
        users, flood = await voting_crowd(server, clients)
        await flood(2000)  # warm-up: caches and allocator at their steady size

        reader = await welcomed(server, users[0].access_token)
        clients.append(reader)
        await subscribe(reader, CHANNEL)
        await open_slow(server, users[:12], slow)
        # From here on the slow sockets are not read until the flood is over.

        before = rss_kib(pid)
        loop = asyncio.get_running_loop()
        started = loop.time()
        published = await flood(10_000)
        # The kernel holds a few MB per socket; make sure the server had to hold or skip output
        # for every slow socket: its send queue stands still through a whole batch of votes.
        kernel_queues = [send_queue(server.port, raw.port) for raw in slow]
        while True:
            published += await flood(400)
            now = [send_queue(server.port, raw.port) for raw in slow]
            if now == kernel_queues:
                break
            assert published < 30_000, "the slow sockets never stalled"
            kernel_queues = now
        seconds = loop.time() - started
        after = rss_kib(pid)
        bound = rss_bound_kib(len(slow))
        print(f"\nFIGURES slow consumer: {published} votes in {seconds:.1f} s ({published / seconds:.0f}/s);"
              f" server RSS {before} KiB -> {after} KiB (+{after - before} KiB, bound +{bound} KiB);"
              f" kernel send queue per slow socket ~{max(q or 0 for q in kernel_queues)} bytes")
        assert after - before <= bound, f"RSS grew {after - before} KiB, past the bound of {bound} KiB"

        store = await store_counts(server)
        totals = await store_totals(server)
        for raw in slow:
            subscribed = len(raw.messages)
            try:
                drained = await raw.read_until(lambda raw=raw: converged(raw.view, store, totals), timeout=60)
            except TimeoutError:
                raise AssertionError(f"not converged 60 s after the flood: {stale(raw.view, store, totals)}") from None
            assert drained, (f"closed {raw.close_code} while draining, {len(raw.messages) - subscribed} messages"
                             f" read, {raw.pings} pings: {stale(raw.view, store, totals)}")
            later = raw.messages[subscribed:]
            got_votes = sum(1 for m in later if m["type"] == "votes")
            got_snapshots = sum(1 for m in later if m["type"] == "snapshot")
            assert got_snapshots >= 1 and got_votes < 3 * published, (
                "the socket never fell behind: the test did not exercise max_pending"
                f" ({got_votes} votes messages, {got_snapshots} snapshots)"
            )
        print(f"FIGURES slow consumer: each slow socket got {got_votes} of {3 * published} votes frames,"
              f" then {got_snapshots} catch-up snapshots, and converged")
        await wait_converged([(reader, CHANNEL)], server, timeout=10)
        print(f"FIGURES slow consumer: the reading socket got {votes_messages(reader.messages, CHANNEL)}"
              f" votes messages for {published} changes")
    finally:
        await asyncio.gather(*(raw.close() for raw in slow))
        await close_all(clients)
        await stop_process(server)


async def test_slow_consumer_stuck_past_stall_timeout_is_closed_4008(tmp_path: Path, redis_server: RedisServer) -> None:
    stall_timeout = 0.2
    server = await start_process(
        tmp_path / "host", redis_server.url, **SLOW_CONFIG, **{"ws.stall_timeout": stall_timeout}
    )
    assert server.process is not None
    pid = server.process.pid
    clients: list[LiveClient] = []
    slow: list[RawSocket] = []
    try:
        users, flood = await voting_crowd(server, clients)
        await flood(1000)
        await open_slow(server, users[:4], slow)

        before = rss_kib(pid)
        loop = asyncio.get_running_loop()
        published = 0
        queues = [send_queue(server.port, raw.port) for raw in slow]
        stalled_at = None
        # Flood until the kernel takes nothing more for any slow socket (its send queue stood
        # still through a whole batch: from then on the server holds or skips its output),
        # then for a few stall timeouts more, so that a broadcast finds each one stuck too long.
        while stalled_at is None or loop.time() - stalled_at < 3 * stall_timeout:
            assert published < 30_000, "the slow sockets never stalled"
            published += await flood(400)
            now = [send_queue(server.port, raw.port) for raw in slow]
            if stalled_at is None and now == queues:
                stalled_at = loop.time()
            queues = now
        after = rss_kib(pid)
        bound = rss_bound_kib(len(slow))
        print(f"\nFIGURES stalled consumer: {published} votes; server RSS {before} KiB -> {after} KiB"
              f" (+{after - before} KiB, bound +{bound} KiB); kernel send queues {queues}")
        assert after - before <= bound

        # Drained all at once: the server waits only so long for a closing handshake before it
        # drops the connection, and the close frame queued behind the backlog with it.
        still_open = await asyncio.gather(*(raw.read_until(lambda: False, timeout=10) for raw in slow))
        assert not any(still_open), "still open"
        codes = [raw.close_code for raw in slow]
        assert codes == [4008] * len(slow), codes

        # The client that was dropped reconnects and gets the current state.
        again = await welcomed(server, users[0].access_token)
        clients.append(again)
        await subscribe(again, CHANNEL)
        await wait_converged([(again, CHANNEL)], server, timeout=5)
    finally:
        await asyncio.gather(*(raw.close() for raw in slow))
        await close_all(clients)
        await stop_process(server)
