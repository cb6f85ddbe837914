"""Free TCP ports on 127.0.0.1, and waiting until something listens on one."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator


def free_port() -> int:
    """A port nothing listens on now. Pick it just before use: until then the kernel may hand it
    out again, say as the ephemeral port of an outgoing connection."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Until a connection to 127.0.0.1:`port` is accepted (then closed); the last refusal after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


@contextlib.contextmanager
def held_busy(port: int) -> Iterator[None]:
    """Keep 127.0.0.1:`port` listening for the block, so that a server started on it instead of
    a free port stops with "already in use" and its test fails. A port some other program
    already holds is busy enough as it is."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: past TIME_WAIT, not a listener
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        else:
            sock.listen()
        yield
