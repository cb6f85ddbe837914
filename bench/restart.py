"""A restart as a page sees it: from the moment the new process listens until a page is live on it.

    python bench/restart.py [--restarts 10] [--signal term|kill]

One livevote process (`python server.py`, embedded mode, the shipped argon2 cost) on core 0; a
page's token is signed in once, then the process is stopped and started again `--restarts`
times on the same port and data directory. Each time this client (core 1) tries to connect
every 0.5 ms until the port takes a connection (the process listens: it binds its port before
it builds its services, so that pages that come back meanwhile wait in the kernel's queue), then
opens the page's socket (the bearer subprotocol), subscribes and waits for the snapshot. Reported:
listening until the 101, and until the page is live (the snapshot), p50 and max; and the old
process gone until the new one listens (the interpreter's start and its imports).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import livevote_process, percentile, pin_client, report
from bench.httpload import sign_in
from bench.wsload import connect
from tests.harness.ports import free_port, wait_for_port

COLUMNS = ["restarts", "gone to listening p50 ms", "listening to 101 p50 ms", "listening to live p50 ms",
           "listening to live max ms"]
SUBSCRIBE = b'{"op":"subscribe","channel":"subject:1"}'


async def until_listening(port: int, every: float = 0.0005) -> float:
    """The moment the port first takes a connection."""
    while True:
        probe = socket.socket()
        try:
            probe.connect(("127.0.0.1", port))
            return time.monotonic()
        except OSError:
            await asyncio.sleep(every)
        finally:
            probe.close()


async def page_live(port: int, token: str) -> tuple[float, float]:
    """(when the 101 came, when the snapshot came) of one page's socket."""
    snapshot = asyncio.get_running_loop().create_future()

    def on_text(payload: bytes) -> None:
        if payload.startswith(b'{"type":"snapshot"') and not snapshot.done():
            snapshot.set_result(time.monotonic())

    client = await connect(port, "/ws", {"Sec-WebSocket-Protocol": f"livevote.v1, bearer.{token}"}, on_text)
    upgraded = time.monotonic()
    try:
        client.send_text(SUBSCRIBE)
        live: float = await asyncio.wait_for(snapshot, 30)
    finally:
        client.close()
    return upgraded, live


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--signal", choices=["term", "kill"], default="term")
    options = parser.parse_args()
    pin_client()
    work = Path(tempfile.mkdtemp(prefix="livevote-restart-"))
    port = free_port()
    server = livevote_process("livevote", work, port, None).start(work)
    gone_to_listening, to_101, to_live = [], [], []
    try:
        await wait_for_port(port)
        token = await sign_in(port)
        for _ in range(options.restarts):
            assert server.popen is not None
            if options.signal == "kill":
                server.popen.kill()
                server.popen.wait()
            else:
                server.stop()
            gone = time.monotonic()
            server = livevote_process("livevote", work, port, None).start(work)
            listening = await until_listening(port)
            upgraded, live = await page_live(port, token)
            gone_to_listening.append(listening - gone)
            to_101.append(upgraded - listening)
            to_live.append(live - listening)
    finally:
        server.stop()
    row = {
        "restarts": options.restarts,
        "gone to listening p50 ms": 1000 * percentile(gone_to_listening, 0.5),
        "listening to 101 p50 ms": 1000 * percentile(to_101, 0.5),
        "listening to live p50 ms": 1000 * percentile(to_live, 0.5),
        "listening to live max ms": 1000 * max(to_live),
    }
    report("restart", [row], COLUMNS, options=vars(options))


if __name__ == "__main__":
    asyncio.run(main())
