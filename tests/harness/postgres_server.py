"""Real PostgreSQL servers for tests: a throwaway cluster on a free port, stopped, crashed and
restarted at will, and a streaming standby of it that can be promoted.

initdb refuses to run as root, so the cluster belongs to the `postgres` user (`runuser`) and
lives in a directory of its own under the system temp dir, which that user can reach. fsync is
off: these servers never outlive the machine, and a crash of the server process (what the fault
tests do) loses nothing that was committed, as the WAL is in the kernel's page cache. A
benchmark of what a durable commit costs asks for `durable=True`: fsync and full_page_writes
at PostgreSQL's defaults (on).
"""

from __future__ import annotations

import asyncio
import atexit
import glob
import os
import pwd
import shutil
import signal
import tempfile
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from tests.harness.ports import free_port
from tests.harness.procfs import alive

OWNER = "postgres"
T = TypeVar("T")


def postgres_bin(name: str) -> str:
    """A PostgreSQL server binary (initdb, pg_ctl, …), newest version first; Debian keeps them off PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]), reverse=True)
    if found:
        return found[0]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"{name} is not installed (.ci/run installs postgresql with apt-get)")
    return on_path


async def run_as_owner(*argv: str, timeout: float = 60.0) -> str:
    """Run a PostgreSQL binary as its owner; its output, or RuntimeError with it."""
    command = ("runuser", "-u", OWNER, "--", *argv) if os.geteuid() == 0 else argv
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}): {out.decode(errors='replace')}")
    return out.decode(errors="replace")


def owned_temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        user = pwd.getpwnam(OWNER)
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


_INITDB: Path | None = None


async def initdb_once() -> Path:
    """What initdb makes, made once a process and copied for every new cluster: initdb takes about
    1.8 s, a copy 0.6 s. The copies share initdb's system identifier, which only WAL shipping
    between them would notice, and a standby (`standby()`) is a copy of its primary anyway."""
    global _INITDB
    if _INITDB is None:
        home = owned_temp_dir("livevote-initdb-")
        await run_as_owner(postgres_bin("initdb"), "-D", str(home / "data"), "-U", "postgres", "--auth=trust",
                           "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        _INITDB = home / "data"
    return _INITDB


class PostgresServer:
    """One cluster: `await start()`, then `url(database)`; `stop(mode)`, `kill()`, `start()` again."""

    def __init__(self, home: Path | None = None, port: int | None = None, *, durable: bool = False) -> None:
        self.home = home or owned_temp_dir("livevote-pg-")
        self.data = self.home / "data"
        self.port = port or free_port()
        self.durable = durable

    def url(self, database: str = "postgres", **options: str) -> str:
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    async def init(self) -> PostgresServer:
        await run_as_owner("cp", "-a", str(await initdb_once()), str(self.data))
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.home}'\n"
                + ("" if self.durable else "fsync = off\nfull_page_writes = off\n")
                + "max_connections = 200\nshared_buffers = 32MB\n"
                "wal_level = replica\nmax_wal_senders = 4\nwal_keep_size = 64MB\nlogging_collector = off\n"
            )
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        return self

    async def start(self, timeout: float = 30.0) -> PostgresServer:
        if not self.data.exists():
            await self.init()
        await run_as_owner(postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.home / "server.log"),
                           "-w", "-t", str(int(timeout)), "start", timeout=timeout + 5)
        return self

    async def stop(self, mode: str = "fast") -> None:
        """`fast` (clients are disconnected, a checkpoint is written) or `immediate` (a crash, recovered at start)."""
        if self.pid() is not None:
            await run_as_owner(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    async def kill(self) -> None:
        """SIGKILL the postmaster, as a machine that vanished would: its backends stop on their own."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while alive(pid) and loop.time() < deadline:  # noqa: ASYNC110  (not our child: nothing to wait() on)
            await asyncio.sleep(0.02)

    async def promote(self) -> None:
        await run_as_owner(postgres_bin("pg_ctl"), "-D", str(self.data), "-w", "promote")

    async def standby(self) -> PostgresServer:
        """A new server streaming from this one (pg_basebackup -R), started."""
        replica = PostgresServer()
        await run_as_owner(postgres_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                           "-D", str(replica.data), "-R", "-X", "stream", "-c", "fast", "--no-sync")
        with (replica.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {replica.port}\nunix_socket_directories = '{replica.home}'\n")
        return await replica.start()

    def pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if alive(pid) else None

    async def execute(self, sql: str, database: str = "postgres") -> None:
        conn = await asyncpg.connect(self.url(database), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: object, database: str = "postgres") -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.url(database), timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        await self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    async def destroy(self) -> None:
        """Stop at once and remove the files."""
        try:
            await self.stop("immediate")
        except RuntimeError:
            await self.kill()
        shutil.rmtree(self.home, ignore_errors=True)




class SharedPostgres:
    """One server for a whole test run, started on first use and removed at exit; each test folder
    gets a database of its own. Usable from sync code, inside or outside an event loop."""

    def __init__(self) -> None:
        self._server: PostgresServer | None = None
        self._lock = threading.Lock()

    def server(self) -> PostgresServer:
        with self._lock:
            if self._server is None:
                server = self._server = _in_thread(PostgresServer().start())
                atexit.register(lambda: asyncio.run(server.destroy()))
            return self._server

    def database(self, name: str) -> str:
        """The URL of database `name`, created when it does not exist yet."""
        server = self.server()
        if not _in_thread(server.fetch("SELECT 1 FROM pg_database WHERE datname = $1", name)):
            _in_thread(server.create_database(name))
        return server.url(name)

    async def drop(self, names: list[str]) -> None:
        if self._server is not None:
            for name in names:
                await self._server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


POSTGRES = SharedPostgres()
"""The run's shared server: the store contract suite and the `postgres_url` fixture use it."""


def _in_thread(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a loop of its own, whether or not this thread runs one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()
