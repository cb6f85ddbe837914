"""Vote ingestion under wrk: livevote against the Django REST framework stack it grew from.

    python bench/ingest.py [--connections 16,64] [--seconds 10] [--baseline-rev REV]

wrk (C, pinned to the client's core, one thread) drives each server (pinned to core 0) over
keep-alive connections: first GET /healthz, the server's HTTP ceiling, then votes from
bench/wrk/votes.lua, each of which changes a stored vote. After each vote run the server's
SQLite file is opened read-only and every teacher's counters are compared with its votes.

Servers, one at a time: livevote in embedded mode, as configured by default and with
server.access_log off ("livevote-quiet": gunicorn, like the peer, logs no requests by
default); the DRF peer (bench/peers/drf, needs requirements-bench.txt) under gunicorn, one
gthread worker with one thread; a bare Tornado RequestHandler answering /healthz with the
same body (bench/peers/tornado_bare.py: what the trivial endpoint's CPU is compared with);
and with --baseline-rev, livevote at that revision from a git worktree, so that new and old
code are compared in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
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
from tests.harness.procfs import core_ticks, process_tree

SCRIPT = ROOT / "bench" / "wrk" / "votes.lua"
USERS = 64  # within livevote's default register_attempts (100 an hour per address)
TEACHERS = 15  # livevote's demo data and the peer's bootstrap both have teachers 1..15
WRK_THREADS = 1  # the client has one core
# One thread, as SQLite has one writer: with more, the writers that lose BEGIN IMMEDIATE sleep in
# SQLite's busy handler (1, 2, 5, 10 ms ...) and votes/s halves (2 to 8 threads measured, at 50-70% CPU).
GUNICORN_THREADS = 1
COLUMNS = ["server", "endpoint", "connections", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors",
           "server cpu %", "cpu us/req", "core 0 other %", "counts ok"]
RATIO_COLUMNS = ["connections", "livevote/drf votes", "quiet/drf votes", "livevote votes/healthz",
                 "quiet votes/healthz", "drf votes/healthz", "healthz cpu/tornado", "new/baseline votes"]
MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
MISMATCHED_TEACHERS = """
    SELECT count(*) FROM teachers t LEFT JOIN (
        SELECT teacher, count(*) FILTER (WHERE value = 'good') AS good,
               count(*) FILTER (WHERE value = 'bad') AS bad
        FROM votes GROUP BY teacher) v ON v.teacher = t.no
    WHERE t.good_count <> coalesce(v.good, 0) OR t.bad_count <> coalesce(v.bad, 0)
"""


@dataclass
class Server:
    """A server under test: its process and port, its SQLite file, and how a user gets a token."""

    name: str
    process: Process
    port: int
    database: Path
    register: bool
    token_field: str


def livevote_server(name: str, work: Path, checkout: Path, **config: Any) -> Server:
    """Embedded mode from `checkout`, with argon2 as cheap as in bench/votes.py: sign-in is not
    measured. REST votes have no rate limit to raise."""
    port = free_port()
    process = livevote_process(name, work, port, None, checkout, auth__argon2_memory_kib=8192, auth__argon2_time_cost=1,
                               **config)
    return Server(name, process, port, work / name / "livevote.db", register=True, token_field="access_token")


def drf_server(work: Path) -> Server:
    """The peer's bootstrap step makes a fresh database, then gunicorn serves it."""
    port, database = free_port(), work / "drf" / "drf.db"
    database.parent.mkdir(parents=True)
    env = {"DRF_BENCH_DB": str(database)}
    subprocess.run([sys.executable, "-m", "bench.peers.drf.bootstrap", "--users", str(USERS)],
                   cwd=ROOT, env={**os.environ, **env}, check=True)
    process = Process("drf", [
        sys.executable, "-m", "gunicorn", "bench.peers.drf.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--worker-class", "gthread", "--threads", str(GUNICORN_THREADS),
        "--no-control-socket", "--log-level", "warning",
    ], env)
    return Server("drf", process, port, database, register=False, token_field="access")


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
    """wrk's output for one run, the server's CPU % meanwhile (its whole process tree), and the
    CPU % that anything else took on the server's core: on a shared machine, a row with much
    of that measured a server that did not have its core."""
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
    busy, ticks = core_ticks(SERVER_CORE)
    client = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.STDOUT)
    output = (await client.communicate())[0].decode()
    busy_after, ticks_after = core_ticks(SERVER_CORE)
    cpu = sum(meter.stop() for meter in meters)
    if client.returncode != 0 or "Requests/sec:" not in output:
        raise RuntimeError(f"wrk failed on {server.name} {path}:\n{output}")
    core_busy = 100 * (busy_after - busy) / max(ticks_after - ticks, 1)
    rate = float(_match(r"^Requests/sec:\s+([\d.]+)", output))
    return output, {"server cpu %": cpu, "cpu us/req": 10_000 * cpu / rate, "core 0 other %": max(core_busy - cpu, 0.0)}


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


def counts_ok(database: Path) -> bool:
    """Every teacher's good/bad counters equal its stored votes, read from the file as it is."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
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
                {**run, "endpoint": "votes", **parse(votes), **votes_cpu, "counts ok": counts_ok(server.database)},
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="16,64", help="comma-separated wrk connection counts")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--baseline-rev", help="also measure livevote at this git revision")
    options = parser.parse_args()
    connection_counts = [int(count) for count in options.connections.split(",")]
    if shutil.which("wrk") is None:
        sys.exit("bench/ingest.py needs wrk on PATH: apt-get install -y wrk")
    if importlib.util.find_spec("rest_framework_simplejwt") is None:
        sys.exit("bench/ingest.py needs its peer's packages: pip install -r requirements-bench.txt")
    if max(connection_counts) >= USERS // WRK_THREADS * TEACHERS:
        sys.exit(f"at most {USERS // WRK_THREADS * TEACHERS - 1} connections: more would put two requests "
                 "for one vote in flight at once")
    work, redis, _ = await prepare("ingest")
    baseline = None
    try:
        rows = await measure(livevote_server("livevote", work, ROOT), work, connection_counts, options.seconds)
        rows += await measure(livevote_server("livevote-quiet", work, ROOT, server__access_log="false"), work,
                              connection_counts, options.seconds)
        rows += await measure(drf_server(work), work, connection_counts, options.seconds)
        rows += await measure(tornado_server(), work, connection_counts, options.seconds)
        if options.baseline_rev:
            with worktree(options.baseline_rev, work / "baseline-src") as short:
                baseline = f"livevote@{short}"
                rows += await measure(livevote_server(baseline, work, work / "baseline-src"), work,
                                      connection_counts, options.seconds)
    finally:
        redis.stop()
    summary = ratios(rows, connection_counts, baseline)
    print()
    print(table(displayed(rows), COLUMNS))
    print()
    print(table(summary, RATIO_COLUMNS))
    result = {"seconds": options.seconds, "users": USERS, "wrk threads": WRK_THREADS,
              "gunicorn": f"1 gthread worker, {GUNICORN_THREADS} threads", "baseline": baseline,
              "rows": rows, "ratios": summary}
    print(f"\nwritten to {write_result('ingest', result)}")


if __name__ == "__main__":
    asyncio.run(main())
