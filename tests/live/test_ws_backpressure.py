"""Sockets that never read: every byte written counts against ws.max_pending, replies too.

The server stops reading ops from a socket that is behind on its output, and a
timer closes it 4008 once it has stayed behind for ws.stall_timeout, whether
broadcasts flow or not. The server's memory stays bounded meanwhile. What the
server writes straight to a socket never cuts into what tornado queued itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.harness.environment import server_env
from tests.harness.procfs import kernel_send_buffer_max, rss_kib
from tests.harness.raw_socket import RawSocket
from tests.harness.server import sign_up
from tests.harness.server_process import ServerProcess

SOCKETS = 12
PING_ID = "x" * 15_000
FLOOD_SECONDS = 8.0
STALL_TIMEOUT = 2
MAX_PENDING = 64 * 1024


async def flood(sock: RawSocket, seconds: float) -> int:
    """Send 15 KB pings for `seconds` without reading a byte; returns how many went out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    sent = 0
    with contextlib.suppress(OSError, TimeoutError):
        while loop.time() < deadline:
            await asyncio.wait_for(sock.send("ping", id=PING_ID), deadline - loop.time())
            sent += 1
            await asyncio.sleep(0.005)
    return sent


async def closed_by_server(sock: RawSocket, timeout: float) -> bool:
    """Read what the server queued until it ends the connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while (left := deadline - loop.time()) > 0:
            if await sock.read_message(timeout=left) is None:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True
    return False


async def test_a_flood_of_replies_nobody_reads_stays_bounded_and_is_closed(tmp_path: Path) -> None:
    config = {
        "ws.stall_timeout": STALL_TIMEOUT, "ws.max_pending": MAX_PENDING, "ws.rate_limit": 1000, "ws.rate_burst": 1000
    }
    server = await ServerProcess("--data-dir", str(tmp_path), env=server_env(**config)).start()
    sockets: list[RawSocket] = []
    try:
        assert server.process is not None
        user = await sign_up(server, "flooder")
        sockets = [await RawSocket.connect(server.port, user.access_token, segment=None) for _ in range(SOCKETS)]
        before = rss_kib(server.process.pid)
        floods = [asyncio.create_task(flood(sock, FLOOD_SECONDS)) for sock in sockets]
        peak = before
        while not all(task.done() for task in floods):
            peak = max(peak, rss_kib(server.process.pid))
            await asyncio.wait(floods, timeout=0.1)
        sent = sum(task.result() for task in floods)
        offered = sent // SOCKETS * len(PING_ID)
        assert offered > kernel_send_buffer_max() + MAX_PENDING, "the replies must outgrow what the kernel holds"
        growth_mib = (peak - before) / 1024
        print(f"\n{SOCKETS} sockets sent {sent} pings of 15 KB unread; server RSS {before / 1024:.1f} MiB,"
              f" peak +{growth_mib:.1f} MiB")
        assert growth_mib < 16, f"server grew by {growth_mib:.1f} MiB"
        results = await asyncio.gather(*(closed_by_server(sock, STALL_TIMEOUT + 15) for sock in sockets))
        assert all(results), f"{results.count(False)} sockets were never closed"
        assert (await server.get("/healthz")).status == 200
    finally:
        for sock in sockets:
            sock.sock.close()
        await server.stop()


async def test_frames_sent_straight_never_cut_into_queued_ones(tmp_path: Path) -> None:
    """A frame goes straight to the socket only while nothing is queued before it. A watcher
    that reads slowly while it asks for 15 KB replies and sends pings keeps the server's kernel
    buffer at the brim, where it takes frames in part, while another socket's votes broadcast
    to it: a frame sent straight past the queued tail of a reply, or past a pong tornado holds,
    would cut into it. Every frame read must be whole, every reply and vote there in order,
    the pongs in the order of the pings."""
    config = {
        "ws.max_pending": 64 * 1024 * 1024, "ws.rate_limit": 100_000, "ws.rate_burst": 100_000,
        "ws.coalesce_ms": 0, "ws.ping_interval": 600,
    }
    server = await ServerProcess("--data-dir", str(tmp_path), env=server_env(**config)).start()
    sockets: list[RawSocket] = []
    try:
        watcher = await RawSocket.connect(server.port, (await sign_up(server, "watcher")).access_token)
        voter = await RawSocket.connect(server.port, (await sign_up(server, "voter")).access_token)
        sockets = [watcher, voter]
        start = next(t["version"] for t in (await watcher.subscribe("subject:1"))["teachers"] if t["no"] == 1)
        rounds = 2 * (kernel_send_buffer_max() // len(PING_ID))
        votes = 2 * rounds

        def versions() -> list[int]:
            return [
                u["version"] for m in watcher.messages if m.get("type") == "votes" for u in m["updates"] if u["no"] == 1
            ]

        last_pong = str(rounds - 1).encode()
        watching = asyncio.create_task(watcher.read_until(
            lambda: last_pong in watcher.pongs and versions()[-1:] == [start + votes], timeout=120))
        acks = asyncio.create_task(voter.read_until(lambda: len(voter.messages) > votes, timeout=120))
        for number in range(rounds):
            await watcher.send("ping", id=f"{number}:{PING_ID}")
            await watcher.ping(str(number).encode())
            for value in ("good", "bad"):
                await voter.send("vote", teacher=1, value=value)
        assert await acks and await watching
        pongs = [int(payload) for payload in watcher.pongs]
        replies = [m["id"] for m in watcher.messages if m.get("type") == "pong"]
        assert replies == [f"{number}:{PING_ID}" for number in range(rounds)]
        assert versions() == list(range(start + 1, start + votes + 1))
        assert pongs == sorted(set(pongs)), "pongs out of order"
    finally:
        for sock in sockets:
            sock.sock.close()
        await server.stop()


async def test_nothing_follows_the_close_frame(tmp_path: Path) -> None:
    """A socket whose session is revoked gets its close frame while votes still broadcast to it
    (it stays in its channel until the connection ends). It reads nothing meanwhile; then the
    close frame must be the last bytes the server sent."""
    config = {"ws.rate_limit": 100_000, "ws.rate_burst": 100_000, "ws.coalesce_ms": 0, "ws.ping_interval": 600}
    server = await ServerProcess("--data-dir", str(tmp_path), env=server_env(**config)).start()
    sockets: list[RawSocket] = []
    try:
        watching = await sign_up(server, "watcher")
        watcher = await RawSocket.connect(server.port, watching.access_token)
        voter = await RawSocket.connect(server.port, (await sign_up(server, "voter")).access_token)
        sockets = [watcher, voter]
        await watcher.subscribe("subject:1")

        async def votes(count: int) -> None:
            acked = len(voter.messages) + count
            for number in range(count):
                await voter.send("vote", teacher=1, value=("good", "bad")[number % 2])
            assert await voter.read_until(lambda: len(voter.messages) >= acked, timeout=30)

        await votes(20)
        logout = await server.request("POST", "/api/auth/logout", json_body={"refresh_token": watching.refresh_token})
        assert logout.status == 204
        await votes(200)
        while await watcher.read_message(timeout=10) is not None:
            pass
        assert watcher.close_code == 4003
        assert await watcher.rest(timeout=10) == b"", "frames after the close frame"
    finally:
        for sock in sockets:
            sock.sock.close()
        await server.stop()
