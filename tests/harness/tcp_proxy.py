"""A TCP proxy that a test can cut: a network partition between one process and Redis or PostgreSQL.

    proxy = await TcpProxy(redis_server.port).start()
    ... connect the process under test to proxy.url ...
    await proxy.cut()      # every connection through it drops, new ones are refused
    proxy.blackhole()      # or: connections stay open but no byte passes, new ones hang
    proxy.restore()        # connections go through again

Killing Redis would cut every process off; this cuts one, while the others go on. A cut is a
partition the client hears of (a reset); a blackhole one it does not, as when a host vanishes
or a firewall drops packets: only its own timeouts end the wait. What was held back in the
blackhole is delivered once it lifts, as TCP would retransmit it.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self._target = (host, target_port)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._cut = False
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://{self._target[0]}:{self.port}/0"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self._target[0], 0)
        return self

    async def stop(self) -> None:
        """Cut, stop listening, and wait until every connection through the proxy is closed (a socket
        left open when the test's loop ends would fail a later test with a ResourceWarning)."""
        await self.cut()
        self._flowing.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._handlers)

    async def cut(self) -> None:
        self._cut = True
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def blackhole(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self._cut = False
        self._flowing.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        writers = [client_writer]
        try:
            await self._flowing.wait()
            if self._cut:
                return
            server_reader, server_writer = await asyncio.open_connection(*self._target)
            writers.append(server_writer)
            if self._cut:
                return
            self._open.update(writers)
            await asyncio.gather(_pipe(client_reader, server_writer, self._flowing),
                                 _pipe(server_reader, client_writer, self._flowing))
        except OSError:
            pass  # the target refused the connection: the client's is dropped
        finally:
            self._handlers.discard(handler)
            for writer in writers:
                self._open.discard(writer)
                writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    """Bytes and the end of the stream alike wait while `flowing` is clear."""
    try:
        with contextlib.suppress(OSError):
            while True:
                data = await reader.read(65536)
                await flowing.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()
    finally:
        writer.transport.abort()
