"""Sockets that never read: every byte written counts against ws.max_pending, replies too.

The server stops reading ops from a socket that is behind on its output, and a
timer closes it 4008 once it has stayed behind for ws.stall_timeout, whether
broadcasts flow or not. The server's memory stays bounded meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.scaled_support import RawSocket, rss_kib
from tests.support import ServerProcess, server_env, sign_up

SOCKETS = 12
PING_ID = "x" * 15_000
FLOOD_SECONDS = 8.0
STALL_TIMEOUT = 2


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
    config = {"ws.stall_timeout": STALL_TIMEOUT, "ws.rate_limit": 1000, "ws.rate_burst": 1000}
    server = await ServerProcess("--data-dir", str(tmp_path), env=server_env(**config)).start()
    sockets: list[RawSocket] = []
    try:
        assert server.process is not None
        user = await sign_up(server, "flooder")
        sockets = [await RawSocket.connect(server.port, user.access_token) for _ in range(SOCKETS)]
        before = rss_kib(server.process.pid)
        floods = [asyncio.create_task(flood(sock, FLOOD_SECONDS)) for sock in sockets]
        peak = before
        while not all(task.done() for task in floods):
            peak = max(peak, rss_kib(server.process.pid))
            await asyncio.wait(floods, timeout=0.1)
        sent = sum(task.result() for task in floods)
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
