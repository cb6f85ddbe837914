"""What every benchmark needs: servers in processes pinned to a core, percentiles, a table,
and a JSON result file. Ports and /proc readings come from the test harness
(tests/harness/ports.py, tests/harness/procfs.py), which the tests share.

Two cores are shared by the server, Redis and the load client, so the server is
pinned to core 0 and the load client (this process) and Redis to core 1; every
figure is read in the same run, and results are reported as ratios.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.environment import ONE_CLIENT_MANY_SOCKETS, config_env
from tests.harness.ports import free_port, wait_for_port
from tests.harness.procfs import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("LIVEVOTE_BENCH_RESULTS", ROOT / "bench" / "results"))
"""Where each benchmark writes its JSON; the benchmarks' smoke test points it elsewhere."""
SERVER_CORE = "0"
CLIENT_CORE = "1"
SECRET = "bench-secret-that-is-long-enough-for-hs256"


def raise_open_files(wanted: int = 65536) -> None:
    """For this process and the servers it starts; never for the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, wanted), hard), hard))


def pin_client() -> None:
    os.sched_setaffinity(0, {int(CLIENT_CORE)})


class CpuMeter:
    """CPU % of a process between start() and stop(), 100 = one core busy."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu = 0.0
        self._wall = 0.0

    def start(self) -> None:
        self._cpu, self._wall = cpu_seconds(self.pid), time.monotonic()

    def stop(self) -> float:
        return 100 * (cpu_seconds(self.pid) - self._cpu) / max(time.monotonic() - self._wall, 1e-9)


@dataclass
class Process:
    """A server under test, started pinned to a core, stopped with SIGTERM (then SIGKILL)."""

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    core: str = SERVER_CORE
    popen: subprocess.Popen[bytes] | None = None

    def start(self, log_dir: Path) -> Process:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / f"{self.name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.popen = subprocess.Popen(
            ["taskset", "-c", self.core, *self.args], cwd=ROOT, env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_more_files,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _more_files() -> None:
    raise_open_files()


async def prepare(name: str) -> tuple[Path, Process, str]:
    """Every benchmark's start: more open files, the client on its core, a work dir and a
    redis-server of its own (on the client's core); returns (work dir, redis, its URL)."""
    raise_open_files()
    pin_client()
    work = Path(tempfile.mkdtemp(prefix=f"livevote-{name}-"))
    port = free_port()
    executable = shutil.which("redis-server") or "redis-server"
    redis = Process("redis", [executable, "--port", str(port), "--save", "", "--appendonly", "no",
                              "--dir", str(work)], core=CLIENT_CORE).start(work)
    await wait_for_port(port)
    return work, redis, f"redis://127.0.0.1:{port}/0"


def livevote_process(name: str, work: Path, port: int, redis_url: str | None, checkout: Path = ROOT,
                     **config: Any) -> Process:
    """`python server.py` of `checkout` with LIVEVOTE_<SECTION>__<KEY> settings from `section__key=value`.
    The socket caps are raised where the checkout has them (a baseline from before them has none,
    and would refuse the unknown keys)."""
    caps = ONE_CLIENT_MANY_SOCKETS if "max_sockets_per_token" in (checkout / "services/config.py").read_text() else {}
    env = {"PYTHONUNBUFFERED": "1", **config_env({"auth.secret": SECRET, **caps, **config})}
    args = [sys.executable, str(checkout / "server.py"), "--port", str(port), "--data-dir", str(work / name)]
    if redis_url:
        args += ["--redis-url", redis_url]
    return Process(name, args, env)


def percentile(samples: Sequence[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def bucket_bound(counts: dict[float, float], share: float) -> float:
    """Of a Prometheus histogram's cumulative counts between two scrapes (upper bound -> count,
    ascending, +Inf last), the upper bound of the first bucket holding `share` of them."""
    return next(bound for bound, count in counts.items() if count >= share * counts[float("inf")])


def table(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    rows = list(rows)
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(row[i]) for row in cells]) for i, column in enumerate(columns)]
    lines = ["  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def machine() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    return path


def report(name: str, rows: list[dict[str, Any]], columns: Sequence[str], **result: Any) -> None:
    """The run's rows as a table, and its result file: `result` and the rows."""
    print()
    print(table(rows, columns))
    print(f"\nwritten to {write_result(name, {**result, 'rows': rows})}")
