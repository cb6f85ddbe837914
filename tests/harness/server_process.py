"""`python server.py` as real subprocesses: started on a port each picks itself, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from tests.harness.environment import server_env
from tests.harness.server import ROOT, JsonClient


class ServerProcess(JsonClient):
    """`python server.py` as a real subprocess, on a port it picks itself."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, open_files: tuple[int, int] | None = None
    ) -> None:
        """`open_files`: the process's (soft, hard) limit on open files, as `ulimit -n` would set it."""
        self.args = args
        self.env = env
        self.open_files = open_files
        self.port = 0
        self.lines: list[str] = []
        self._new_line = asyncio.Condition()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 20.0) -> ServerProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "server.py"), "--port", "0", *self.args,
            cwd=ROOT, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            preexec_fn=None if self.open_files is None else functools.partial(limit_open_files, self.open_files),
        )
        self._reader = asyncio.create_task(self._read_log())
        line = await self.wait_for_line("listening on http://", timeout)
        self.port = int(line.rsplit(":", 1)[1])
        return self

    async def _read_log(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            async with self._new_line:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self._new_line.notify_all()
        async with self._new_line:
            self._new_line.notify_all()

    async def wait_for_line(self, text: str, timeout: float = 10.0) -> str:
        """The first log line containing `text`, waiting for it to be written."""

        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        async def wait() -> str:
            async with self._new_line:
                while (line := found()) is None:
                    if self._reader is not None and self._reader.done():
                        raise AssertionError(f"server exited without logging {text!r}:\n" + "\n".join(self.lines))
                    await self._new_line.wait()
                return line

        return await asyncio.wait_for(wait(), timeout)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.wait_exit()


def limit_open_files(limits: tuple[int, int]) -> None:
    """In the child, before it runs server.py."""
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


async def start_process(data_dir: Path, redis_url: str, *args: str, **config: object) -> ServerProcess:
    """One scaled-mode server process; `config` as in server_env (`**{"ws.coalesce_ms": 0}`)."""
    return await ServerProcess(
        "--data-dir", str(data_dir), "--redis-url", redis_url, *args, env=server_env(**config)
    ).start()


async def stop_process(server: ServerProcess, timeout: float = 20.0) -> int | None:
    """SIGTERM and wait for the exit code; SIGKILL only if it does not stop in time."""
    if server.process is None or server.process.returncode is not None:
        return None if server.process is None else server.process.returncode
    server.signal(signal.SIGTERM)
    try:
        return await server.wait_exit(timeout)
    except TimeoutError:
        await server.stop()
        log = "\n".join(server.lines[-40:])
        raise AssertionError(
            f"pid {server.process.pid} did not stop within {timeout} s of SIGTERM; its log:\n{log}"
        ) from None


@contextlib.asynccontextmanager
async def processes(count: int, data_dir: Path, redis_url: str, **config: object) -> AsyncIterator[list[ServerProcess]]:
    """`count` processes of one host: one SQLite data dir, one Redis, nothing else shared.

    Started one after the other, so that only the first creates and seeds the store.
    """
    started: list[ServerProcess] = []
    try:
        for _ in range(count):
            started.append(await start_process(data_dir, redis_url, **config))
        yield started
    finally:
        for server in reversed(started):
            await stop_process(server)


def logged_errors(servers: Sequence[ServerProcess]) -> list[str]:
    """Errors and tracebacks the processes logged, but for tornado's access log (a 503 is an
    answer, not a fault)."""
    return [
        f"process {index}: {line}" for index, server in enumerate(servers) for line in server.lines
        if ("ERROR" in line or "Traceback" in line or "CRITICAL" in line) and "tornado.access" not in line
    ]
