"""Instructions per GET /healthz: livevote against a bare Tornado RequestHandler, counted by callgrind.

    python bench/instructions.py [--requests 500] [--baseline-rev REV]

bench/ingest.py measures the trivial endpoint's CPU time per request under wrk, and on
a shared machine that figure moves 10-25 % from run to run: too much to tell 1.1x from
1.25x. Valgrind counts the instructions a process executes, the same whatever else the
machine does, so the ratio of two counts settles it (instructions are not time: cache
misses and system calls weigh more than they count, so this complements ingest.py).

Each server runs under `valgrind --tool=callgrind --instr-atstart=no`: started, warmed
up with 50 requests, then counted (callgrind_control -i on) over --requests sequential
requests on one keep-alive connection, each checked for 200. Servers: livevote as
bench/ingest.py starts it (embedded mode, default config, access log on), the bare
Tornado peer (bench/peers/tornado_bare.py, same body, tornado's default access log),
and with --baseline-rev livevote at that revision.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, table, write_result
from bench.httpload import HttpConnection
from bench.ingest import Server, livevote_server, tornado_server, worktree
from tests.harness.ports import wait_for_port

WARM_UP = 50
START_TIMEOUT = 300.0
"""Under valgrind a server starts some 30 times slower."""


async def requests(port: int, count: int) -> None:
    connection = await HttpConnection.open(port)
    try:
        for _ in range(count):
            status, _body = await connection.request("GET", "/healthz")
            if status != 200:
                sys.exit(f"GET /healthz answered {status}")
    finally:
        await connection.close()


async def count(server: Server, work: Path, how_many: int) -> float:
    """Instructions per request, counted over `how_many` after the warm-up."""
    out = work / f"{server.name}.callgrind"
    server.process.args[:0] = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    server.process.start(work)
    try:
        await wait_for_port(server.port, START_TIMEOUT)
        await requests(server.port, WARM_UP)
        subprocess.run(["callgrind_control", "-i", "on", str(server.process.pid)], check=True, capture_output=True)
        await requests(server.port, how_many)
        subprocess.run(["callgrind_control", "-i", "off", str(server.process.pid)], check=True, capture_output=True)
    finally:
        server.process.stop()
    totals = re.search(r"^totals: (\d+)$", out.read_text(), re.MULTILINE)
    if totals is None:
        sys.exit(f"no callgrind totals in {out}")
    return int(totals.group(1)) / how_many


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--baseline-rev", help="also count livevote at this git revision")
    options = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("needs valgrind (apt-get install -y valgrind)")
    work = Path(tempfile.mkdtemp(prefix="livevote-instructions-"))
    servers = [livevote_server("livevote", work, ROOT), tornado_server()]
    rows = [{"server": server.name, "instructions/request": await count(server, work, options.requests)}
            for server in servers]
    if options.baseline_rev:
        with worktree(options.baseline_rev, work / "baseline") as short:
            server = livevote_server(f"livevote@{short}", work, work / "baseline")
            rows.append({"server": server.name, "instructions/request": await count(server, work, options.requests)})
    tornado = rows[1]["instructions/request"]
    for row in rows:
        row["vs tornado"] = row["instructions/request"] / tornado
    print(table(rows, ["server", "instructions/request", "vs tornado"]))
    path = write_result("instructions", {"requests": options.requests, "rows": rows})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    asyncio.run(main())
