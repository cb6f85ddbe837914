"""Vote ingestion under wrk: livevote against the Django REST framework stack it grew from.

    python bench/ingest.py [--connections 16,64] [--seconds 10] [--baseline-rev REV]
    python bench/ingest.py --store postgresql [--pool-sizes 4,20] [--commit-delay US] [--connections 16,64]

wrk (C, pinned to the client's core, one thread) drives each server (pinned to core 0) over
keep-alive connections: first GET /healthz, the server's HTTP ceiling, then votes from
bench/wrk/votes.lua, each of which changes a stored vote. After each vote run the server's
store (its SQLite file, read-only, or its PostgreSQL database) is read and every teacher's
counters are compared with its votes.

Servers, one at a time: livevote in embedded mode, as configured by default and with
server.access_log off ("livevote-quiet": gunicorn, like the peer, logs no requests by
default); the DRF peer (bench/peers/drf, needs requirements-bench.txt) under gunicorn, one
gthread worker with one thread; a bare Tornado RequestHandler answering /healthz with the
same body (bench/peers/tornado_bare.py: what the trivial endpoint's CPU is compared with);
and with --baseline-rev, livevote at that revision from a git worktree, so that new and old
code are compared in the same run.

With --store postgresql the servers are livevote on SQLite as above and with Redis, livevote
on PostgreSQL (with Redis, which a PostgreSQL store needs) as one process and as two
(--workers 2), with each --pool-sizes and with --commit-delay (µs), and the DRF peer on
PostgreSQL (psycopg 3, one gthread worker with GUNICORN_THREADS_POSTGRES threads). The run
starts a PostgreSQL of its own with fsync on (the tests' servers have it off), so that a commit
is as durable as SQLite's synchronous=FULL, pinned to the server's core as SQLite is, in the
server's process; each server gets a fresh database. Its processes' CPU (the postmaster and
its children, /proc) is read around each wrk run: the store's share of a vote.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    CLIENT_CORE,
    ROOT,
    SERVER_CORE,
    CpuMeter,
    Process,
    livevote_process,
    prepare,
    table,
    write_result,
)
from bench.httpload import sign_in
from tests.harness.ports import free_port, wait_for_port
from tests.harness.postgres_server import PostgresServer
from tests.harness.procfs import core_ticks, cpu_seconds, process_tree

SCRIPT = ROOT / "bench" / "wrk" / "votes.lua"
USERS = 64  # within livevote's default register_attempts (100 an hour per address)
TEACHERS = 15  # livevote's demo data and the peer's bootstrap both have teachers 1..15
WRK_THREADS = 1  # the client has one core
# One thread, as SQLite has one writer: with more, the writers that lose BEGIN IMMEDIATE sleep in
# SQLite's busy handler (1, 2, 5, 10 ms ...) and votes/s halves (2 to 8 threads measured, at 50-70% CPU).
GUNICORN_THREADS = 1
# On PostgreSQL threads may overlap one vote's waits for the server with another's work: with
# 1 / 2 / 4 / 8 threads the peer did 66 / 68 / 72 / 72 votes/s at 64 connections (one run, its
# core saturated every time), so 4.
GUNICORN_THREADS_POSTGRES = 4
COLUMNS = ["server", "endpoint", "connections", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors",
           "server cpu %", "cpu us/req", "store cpu %", "store us/req", "core 0 other %", "counts ok"]
RATIO_COLUMNS = ["connections", "livevote/drf votes", "quiet/drf votes", "livevote votes/healthz",
                 "quiet votes/healthz", "drf votes/healthz", "healthz cpu/tornado", "new/baseline votes"]
POSTGRES_RATIO_COLUMNS = ["connections", "comparison", "votes/s", "baseline votes/s", "ratio", "cpu us/vote",
                          "baseline cpu us/vote", "votes per cpu ratio"]
MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
MISMATCHED_TEACHERS = """
    SELECT count(*) FROM teachers t LEFT JOIN (
        SELECT teacher, count(*) FILTER (WHERE value = 'good') AS good,
               count(*) FILTER (WHERE value = 'bad') AS bad
        FROM votes GROUP BY teacher) v ON v.teacher = t.no
    WHERE t.good_count <> coalesce(v.good, 0) OR t.bad_count <> coalesce(v.bad, 0)
"""


class BenchPostgres:
    """The run's PostgreSQL: durable commits, on the server's core, a fresh database per server,
    and the CPU time of its processes."""

    def __init__(self) -> None:
        self.server = PostgresServer(durable=True)

    async def start(self) -> BenchPostgres:
        """Pinned once started: the backends it forks later inherit the postmaster's core."""
        await self.server.start()
        for pid in self._processes():
            os.sched_setaffinity(pid, {int(SERVER_CORE)})
        return self

    async def database(self, name: str, **settings: object) -> str:
        """A new database, with `settings` (say commit_delay) for every session of it; its URL."""
        url = await self.server.create_database(name)
        for key, value in settings.items():
            await self.server.execute(f'ALTER DATABASE "{name}" SET {key} = {value}')
        return url

    def cpu(self) -> dict[int, float]:
        """CPU seconds of the postmaster and each of its children (the backends, the WAL writer ...)."""
        readings = {}
        for pid in self._processes():
            with suppress(FileNotFoundError):
                readings[pid] = cpu_seconds(pid)
        return readings

    def _processes(self) -> list[int]:
        pid = self.server.pid()
        if pid is None:
            raise RuntimeError("the bench's PostgreSQL is not running")
        return process_tree(pid)


@dataclass
class Server:
    """A server under test: its process and port, its store (a SQLite file, or a database of
    `postgres` by name), and how a user gets a token."""

    name: str
    process: Process
    port: int
    database: Path | str
    register: bool
    token_field: str
    postgres: BenchPostgres | None = None


def livevote_server(name: str, work: Path, checkout: Path, redis_url: str | None = None, **config: Any) -> Server:
    """Embedded mode from `checkout` unless given Redis, with argon2 as cheap as in
    bench/votes.py: sign-in is not measured. REST votes have no rate limit to raise."""
    port = free_port()
    process = livevote_process(name, work, port, redis_url, checkout, auth__argon2_memory_kib=8192,
                               auth__argon2_time_cost=1, **config)
    return Server(name, process, port, work / name / "livevote.db", register=True, token_field="access_token")


async def livevote_postgres(name: str, work: Path, postgres: BenchPostgres, redis_url: str, workers: int = 1,
                            database_settings: dict[str, object] | None = None, **config: Any) -> Server:
    """livevote on a fresh database of the run's PostgreSQL, seeded at start as SQLite is."""
    database = name.replace("-", "_")
    url = await postgres.database(database, **(database_settings or {}))
    server = livevote_server(name, work, ROOT, redis_url, store__url=url, server__workers=workers, **config)
    server.database, server.postgres = database, postgres
    return server


async def drf_server(work: Path, postgres: BenchPostgres | None = None) -> Server:
    """The peer's bootstrap step makes a fresh database (a SQLite file, or one of `postgres`),
    then gunicorn serves it."""
    name = "drf" if postgres is None else "drf-pg"
    (work / name).mkdir(parents=True)
    database: Path | str = work / name / "drf.db"
    env = {"DRF_BENCH_DB": str(database)}
    if postgres is not None:
        database = name.replace("-", "_")
        env = {"DRF_BENCH_DB": await postgres.database(database)}
    subprocess.run([sys.executable, "-m", "bench.peers.drf.bootstrap", "--users", str(USERS)],
                   cwd=ROOT, env={**os.environ, **env}, check=True)
    port = free_port()
    threads = GUNICORN_THREADS if postgres is None else GUNICORN_THREADS_POSTGRES
    process = Process(name, [
        sys.executable, "-m", "gunicorn", "bench.peers.drf.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--worker-class", "gthread", "--threads", str(threads),
        "--no-control-socket", "--log-level", "warning",
    ], env)
    return Server(name, process, port, database, register=False, token_field="access", postgres=postgres)


def tornado_server() -> Server:
    """Serves /healthz only: no votes, no sign-in."""
    port = free_port()
    process = Process("tornado", [sys.executable, "-m", "bench.peers.tornado_bare", "--port", str(port)])
    return Server("tornado", process, port, Path(), register=False, token_field="")


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@contextmanager
def worktree(rev: str, path: Path) -> Iterator[str]:
    """`rev` checked out at `path` for as long as the block runs; yields its short hash."""
    short = git("rev-parse", "--short", f"{rev}^{{commit}}")
    git("worktree", "add", "--detach", str(path), short)
    try:
        yield short
    finally:
        git("worktree", "remove", "--force", str(path))


async def start(server: Server, work: Path) -> None:
    server.process.start(work)
    try:
        await wait_for_port(server.port)
    except OSError:
        server.process.stop()
        sys.exit(f"{server.name} did not start; see {work / server.process.name}.log")


async def wrk(server: Server, path: str, connections: int, seconds: int,
              script_args: list[str] | None = None) -> tuple[str, dict[str, float]]:
    """wrk's output for one run, the server's CPU % meanwhile (its whole process tree), its
    PostgreSQL's, and the CPU % that anything else took on the server's core: on a shared
    machine, a row with much of that measured a server that did not have its core."""
    args = ["taskset", "-c", CLIENT_CORE, "wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s",
            "--timeout", "10s", "--latency"]
    if script_args is not None:
        args += ["-s", str(SCRIPT)]
    args.append(f"http://127.0.0.1:{server.port}{path}")
    if script_args is not None:
        args += ["--", *script_args]
    meters = [CpuMeter(pid) for pid in process_tree(server.process.pid)]
    for meter in meters:
        meter.start()
    store_before = server.postgres.cpu() if server.postgres else {}
    started = time.monotonic()
    busy, ticks = core_ticks(SERVER_CORE)
    client = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.STDOUT)
    output = (await client.communicate())[0].decode()
    busy_after, ticks_after = core_ticks(SERVER_CORE)
    cpu = sum(meter.stop() for meter in meters)
    readings: dict[str, float | None] = {"store cpu %": None, "store us/req": None}
    if server.postgres:
        # A backend the pool opened meanwhile counts from 0; one that ended meanwhile is not counted.
        store_after = server.postgres.cpu()
        seconds_used = sum(after - store_before.get(pid, 0.0) for pid, after in store_after.items())
        readings["store cpu %"] = 100 * seconds_used / (time.monotonic() - started)
    if client.returncode != 0 or "Requests/sec:" not in output:
        raise RuntimeError(f"wrk failed on {server.name} {path}:\n{output}")
    core_busy = 100 * (busy_after - busy) / max(ticks_after - ticks, 1)
    rate = float(_match(r"^Requests/sec:\s+([\d.]+)", output))
    if readings["store cpu %"] is not None:
        readings["store us/req"] = 10_000 * readings["store cpu %"] / rate
    other = max(core_busy - cpu - (readings["store cpu %"] or 0.0), 0.0)
    return output, {"server cpu %": cpu, "cpu us/req": 10_000 * cpu / rate, **readings, "core 0 other %": other}


def parse(output: str) -> dict[str, Any]:
    """Requests/s, p50/p99, non-2xx (the script's count, else wrk's own line) and socket errors."""
    latency = {percent: float(value) * MS_PER_UNIT[unit] for percent, value, unit
               in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)}
    non2xx = (re.search(r"^non-2xx responses: (\d+)", output, re.M)
              or re.search(r"Non-2xx or 3xx responses: (\d+)", output))
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "req/s": float(_match(r"^Requests/sec:\s+([\d.]+)", output)),
        "p50 ms": latency["50"], "p99 ms": latency["99"],
        "non-2xx": int(non2xx[1]) if non2xx else 0,
        "socket errors": sum(map(int, sockets.groups())) if sockets else 0,
    }


def _match(pattern: str, text: str) -> str:
    found = re.search(pattern, text, re.M)
    if found is None:
        raise RuntimeError(f"no {pattern!r} in wrk's output:\n{text}")
    return found[1]


async def counts_ok(server: Server) -> bool:
    """Every teacher's good/bad counters equal its stored votes, read from the SQLite file as
    it is, or from the server's PostgreSQL database."""
    if server.postgres is not None:
        [row] = await server.postgres.server.fetch(MISMATCHED_TEACHERS, database=str(server.database))
        return int(row[0]) == 0
    with closing(sqlite3.connect(f"file:{server.database}?mode=ro", uri=True)) as conn:
        return int(conn.execute(MISMATCHED_TEACHERS).fetchone()[0]) == 0


async def measure(server: Server, work: Path, connection_counts: list[int], seconds: int) -> list[dict[str, Any]]:
    """healthz then votes at each connection count. Each vote run goes on from the steps the
    previous one reached, so that every vote changes state (see votes.lua)."""
    await start(server, work)
    rows = []
    try:
        if server.name == "tornado":
            for connections in connection_counts:
                healthz, healthz_cpu = await wrk(server, "/healthz", connections, seconds)
                rows.append({"server": server.name, "connections": connections, "endpoint": "healthz",
                             **parse(healthz), **healthz_cpu})
                print(table(displayed(rows[-1:]), COLUMNS), flush=True)
            return rows
        tokens = [await sign_in(server.port, f"bench{index}", register=server.register, token_field=server.token_field)
                  for index in range(USERS)]
        tokens_file = work / f"{server.name}-tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        steps = ["0"] * WRK_THREADS
        for connections in connection_counts:
            healthz, healthz_cpu = await wrk(server, "/healthz", connections, seconds)
            votes, votes_cpu = await wrk(server, "/", connections, seconds, [str(tokens_file), *steps])
            steps = _match(r"^next steps: ([\d ]+)$", votes).split()
            run = {"server": server.name, "connections": connections}
            added = [
                {**run, "endpoint": "healthz", **parse(healthz), **healthz_cpu},
                {**run, "endpoint": "votes", **parse(votes), **votes_cpu, "counts ok": await counts_ok(server)},
            ]
            print(table(displayed(added), COLUMNS), flush=True)
            rows += added
    finally:
        server.process.stop()
    return rows


def displayed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with "counts ok" as yes/NO: table() would print a bool as 1 or 0."""
    return [{**row, "counts ok": ("yes" if row["counts ok"] else "NO") if "counts ok" in row else None}
            for row in rows]


def ratios(rows: list[dict[str, Any]], connection_counts: list[int], baseline: str | None) -> list[dict[str, Any]]:
    rate = {(row["server"], row["endpoint"], row["connections"]): row["req/s"] for row in rows}
    cpu = {(row["server"], row["endpoint"], row["connections"]): row["cpu us/req"] for row in rows}
    return [{
        "connections": count,
        "livevote/drf votes": rate["livevote", "votes", count] / rate["drf", "votes", count],
        "quiet/drf votes": rate["livevote-quiet", "votes", count] / rate["drf", "votes", count],
        "livevote votes/healthz": rate["livevote", "votes", count] / rate["livevote", "healthz", count],
        "quiet votes/healthz": rate["livevote-quiet", "votes", count] / rate["livevote-quiet", "healthz", count],
        "drf votes/healthz": rate["drf", "votes", count] / rate["drf", "healthz", count],
        "healthz cpu/tornado": cpu["livevote", "healthz", count] / cpu["tornado", "healthz", count],
        "new/baseline votes": rate["livevote", "votes", count] / rate[baseline, "votes", count] if baseline else None,
    } for count in connection_counts]


def postgres_ratios(rows: list[dict[str, Any]], connection_counts: list[int],
                    comparisons: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each pair at each connection count: votes/s, and votes per CPU second of the server and its
    PostgreSQL together, which what else runs on the shared core moves less than votes/s."""
    votes = {(row["server"], row["connections"]): row for row in rows if row["endpoint"] == "votes"}
    summary = []
    for server, baseline in comparisons:
        for count in connection_counts:
            new, old = votes[server, count], votes[baseline, count]
            cpu, baseline_cpu = (row["cpu us/req"] + (row["store us/req"] or 0.0) for row in (new, old))
            summary.append({"connections": count, "comparison": f"{server} / {baseline}", "votes/s": new["req/s"],
                            "baseline votes/s": old["req/s"], "ratio": new["req/s"] / old["req/s"],
                            "cpu us/vote": cpu, "baseline cpu us/vote": baseline_cpu,
                            "votes per cpu ratio": baseline_cpu / cpu})
    return summary


async def measure_postgres(work: Path, redis_url: str, options: argparse.Namespace,
                           connection_counts: list[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """livevote on SQLite (embedded, and with Redis as a PostgreSQL store has it), then on
    PostgreSQL (one process, two, each pool size and commit_delay) and the DRF peer on
    PostgreSQL; the rows, and each server's votes/s against its baseline."""
    postgres = await BenchPostgres().start()
    # A Redis database per server: each registers USERS from one address, whose budget is counted there.
    redis_dbs = (f"{redis_url.rsplit('/', 1)[0]}/{db}" for db in itertools.count(1))
    comparisons = [("livevote-pg", "drf-pg"), ("livevote-pg", "livevote"), ("livevote-pg", "livevote-redis"),
                   ("livevote-pg-w2", "livevote-pg")]
    try:
        targets = [
            livevote_server("livevote", work, ROOT),
            livevote_server("livevote-redis", work, ROOT, next(redis_dbs)),
            await livevote_postgres("livevote-pg", work, postgres, next(redis_dbs)),
            await livevote_postgres("livevote-pg-w2", work, postgres, next(redis_dbs), workers=2),
        ]
        for size in options.pool_sizes:
            name = f"livevote-pg-pool{size}"
            targets.append(await livevote_postgres(name, work, postgres, next(redis_dbs), store__pool_size=size))
            comparisons.append((name, "livevote-pg"))
        if options.commit_delay:
            name = f"livevote-pg-delay{options.commit_delay}"
            targets.append(await livevote_postgres(name, work, postgres, next(redis_dbs),
                                                   database_settings={"commit_delay": options.commit_delay}))
            comparisons.append((name, "livevote-pg"))
        targets.append(await drf_server(work, postgres))
        rows = []
        for target in targets:
            rows += await measure(target, work, connection_counts, options.seconds)
    finally:
        await postgres.server.destroy()
    return rows, postgres_ratios(rows, connection_counts, comparisons)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="16,64", help="comma-separated wrk connection counts")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--baseline-rev", help="also measure livevote at this git revision")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite",
                        help="postgresql: livevote and the DRF peer on a PostgreSQL the run starts")
    parser.add_argument("--pool-sizes", type=lambda text: [int(size) for size in text.split(",")], default=[],
                        help="with --store postgresql: also livevote with these store.pool_size (default 10)")
    parser.add_argument("--commit-delay", type=int, default=0,
                        help="with --store postgresql: also livevote on a database with this commit_delay (µs)")
    options = parser.parse_args()
    connection_counts = [int(count) for count in options.connections.split(",")]
    if shutil.which("wrk") is None:
        sys.exit("bench/ingest.py needs wrk on PATH: apt-get install -y wrk")
    if importlib.util.find_spec("rest_framework_simplejwt") is None or importlib.util.find_spec("psycopg") is None:
        sys.exit("bench/ingest.py needs its peer's packages: pip install -r requirements-bench.txt")
    if max(connection_counts) >= USERS // WRK_THREADS * TEACHERS:
        sys.exit(f"at most {USERS // WRK_THREADS * TEACHERS - 1} connections: more would put two requests "
                 "for one vote in flight at once")
    work, redis, redis_url = await prepare("ingest")
    baseline = None
    try:
        if options.store == "postgresql":
            rows, summary = await measure_postgres(work, redis_url, options, connection_counts)
        else:
            rows = await measure(livevote_server("livevote", work, ROOT), work, connection_counts, options.seconds)
            rows += await measure(livevote_server("livevote-quiet", work, ROOT, server__access_log="false"), work,
                                  connection_counts, options.seconds)
            rows += await measure(await drf_server(work), work, connection_counts, options.seconds)
            rows += await measure(tornado_server(), work, connection_counts, options.seconds)
            if options.baseline_rev:
                with worktree(options.baseline_rev, work / "baseline-src") as short:
                    baseline = f"livevote@{short}"
                    rows += await measure(livevote_server(baseline, work, work / "baseline-src"), work,
                                          connection_counts, options.seconds)
            summary = ratios(rows, connection_counts, baseline)
    finally:
        redis.stop()
    print()
    print(table(displayed(rows), COLUMNS))
    print()
    print(table(summary, POSTGRES_RATIO_COLUMNS if options.store == "postgresql" else RATIO_COLUMNS))
    threads = GUNICORN_THREADS_POSTGRES if options.store == "postgresql" else GUNICORN_THREADS
    result = {"seconds": options.seconds, "users": USERS, "wrk threads": WRK_THREADS, "store": options.store,
              "gunicorn": f"1 gthread worker, {threads} threads", "baseline": baseline,
              "rows": rows, "ratios": summary}
    name = "ingest" if options.store == "sqlite" else f"ingest-{options.store}"
    print(f"\nwritten to {write_result(name, result)}")


if __name__ == "__main__":
    asyncio.run(main())
