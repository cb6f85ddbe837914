"""A reconnect storm: thousands of live pages lose their server at once and come back.

    python bench/storm.py [--sockets 10000] [--users N] [--signal kill|term] [--deadline 60] [--profile FILE]

1. One livevote process (`python server.py`, embedded mode) on core 0; this client on core 1.
   A few votes are cast, so that the counts a page shows are not all zero. `--users` accounts
   sign in (one per page by default, as in a school: every page its own session; fewer, and
   pages share their sessions in turn), with argon2 as cheap as in bench/votes.py, since
   sign-in is not what is measured. The server is then restarted, so that what the sign-ins
   left in its memory is not counted.
2. `--sockets` pages connect gradually (200 at a time, as bench/idle.py does): each one a
   WebSocket with the bearer subprotocol (`livevote.v1, bearer.<jwt>`) that subscribes to
   subject:1 on `welcome` and is live once its snapshot shows the store's counts. RSS per
   socket, as bench/idle.py measures it: RSS with every page live minus RSS before any
   socket, per socket.
3. The server is killed (`kill`: SIGKILL, the sockets just drop; `term`: SIGTERM, the server
   closes them with 1001 and drains) and, once it is gone, started again on the same port.
   Every page reconnects as the page's live client (static/js/live-client.js) does: after a
   close or a failed attempt it waits a delay drawn uniformly from [ceiling/2, ceiling], the
   ceiling 500 ms doubling per failure up to 8 s, and starting over at its `welcome`.
4. From the moment the new process listens: when 50 %, 99 % and 100 % of pages are live again,
   handshakes/s, failed attempts by cause, pages stuck (not live within `--deadline` s), and
   GET /healthz p50/p99 from a separate process polling throughout. Then RSS per socket after
   the storm, against the same process-start baseline. Each stage of the attempts that made
   it (TCP connected, 101, welcome, snapshot) is timed too, to see where pages wait, with per
   half second the listening socket's accept queue, the SYNs the kernel turned away while it
   was full, and this client's loop lag.

Not modelled: a page's fallback to the event stream when its socket does not go live within
3 s, and its token renewal before such a retry; every page here keeps to the WebSocket.
The client's CPU % is reported: at 100 % the client, not the server, bounds the figures. It
runs on uvloop and its garbage collector is paused during the storm: on asyncio's own loop it
lagged 0.4-0.6 s in the storm's first second and a half, and the connections whose requests it
was late to send were taken by the server meanwhile (docs/performance.md); full collections
over 10,000 pages stalled it for seconds. `--profile FILE` runs py-spy (`pip install py-spy`) on the new process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    CpuMeter,
    Process,
    livevote_process,
    percentile,
    pin_client,
    raise_open_files,
    report,
    table,
)
from bench.httpload import HttpConnection, sign_in
from bench.idle import CONNECT_CONCURRENCY
from bench.wsload import WsClient, connect
from tests.harness.ports import free_port, wait_for_port
from tests.harness.procfs import rss_kib

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
"""static/js/live-client.js: BACKOFF_FIRST_MS, BACKOFF_MAX_MS."""
CHANNEL = "subject:1"
SUBSCRIBE = b'{"op":"subscribe","channel":"%s"}' % CHANNEL.encode()
VOTES = {1: "good", 2: "bad", 3: "good"}
"""Cast before the storm (teacher: value), so that a page's counts tell a stale snapshot apart."""
HEALTHZ_EVERY = 0.01
ACCEPT_QUEUE_EVERY = 0.05
COLUMNS = [
    "signal",
    "pages",
    "50 % live s",
    "99 % live s",
    "100 % live s",
    "stuck",
    "handshakes/s",
    "peak handshakes/s",
    "failed",
    "healthz p50 ms",
    "healthz p99 ms",
    "server cpu %",
    "client cpu %",
]
MEMORY_COLUMNS = ["phase", "sockets", "RSS MiB", "RSS/socket KiB"]


def backoff(failures: int, cap: float = BACKOFF_MAX, full_jitter: bool = False) -> float:
    """The page's delay before its next attempt, after `failures` failures in a row: drawn from
    [ceiling/2, ceiling], or from [0, ceiling] with `full_jitter` (bench/backoff.py compares)."""
    ceiling = min(cap, BACKOFF_FIRST * (1 << min(failures - 1, 8)))
    return random.random() * ceiling if full_jitter else ceiling / 2 + random.random() * ceiling / 2


@dataclass
class Attempt:
    """One connection attempt of a page; times from time.monotonic()."""

    started: float
    tcp: float | None = None
    upgraded: float | None = None
    welcome: float | None = None
    live: float | None = None
    cause: str | None = None
    """Why it failed, or None."""


class PageSocket(WsClient):
    """A WsClient that notes when its TCP connection and its 101 came."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__()
        self.attempt = attempt

    def connection_made(self, transport: Any) -> None:
        self.attempt.tcp = time.monotonic()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.attempt.upgraded is None:
            self.attempt.upgraded = time.monotonic()
        super().data_received(data)


@dataclass
class Storm:
    """What every page shares: where to connect, what the store's counts are, every attempt."""

    port: int
    counts: dict[int, tuple[int, int]]
    timeout: float
    attempts: list[Attempt] = field(default_factory=list)


class Page:
    """A page's live channel: connect, subscribe on `welcome`, live on a snapshot with the
    store's counts; on any close, back off and connect again, until stopped."""

    def __init__(self, storm: Storm, token: str) -> None:
        self.storm = storm
        self.token = token
        self.failures = 0
        self.live: asyncio.Event = asyncio.Event()
        self.live_at = 0.0
        self.socket: PageSocket | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Page:
        self.task = asyncio.create_task(self.run())
        return self

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.socket is not None:
            self.socket.close()

    async def run(self) -> None:
        while True:
            connection = await self.attempt()
            if connection is not None:
                await connection.closed
                self.live.clear()
                connection.close()
            self.failures += 1
            await asyncio.sleep(backoff(self.failures))

    async def attempt(self) -> PageSocket | None:
        """A connection once live, or None once failed (the cause noted on the attempt)."""
        attempt = Attempt(time.monotonic())
        self.storm.attempts.append(attempt)
        showing = asyncio.get_running_loop().create_future()
        connection = PageSocket(attempt)
        self.socket = connection

        def on_text(payload: bytes) -> None:
            if payload.startswith(b'{"type":"welcome"'):
                attempt.welcome = time.monotonic()
                self.failures = 0
                connection.send_text(SUBSCRIBE)
            elif payload.startswith(b'{"type":"snapshot"') and not showing.done():
                showing.set_result(snapshot_counts(payload) == self.storm.counts)

        connection.on_text = on_text
        try:
            async with asyncio.timeout(self.storm.timeout):
                await connect(
                    self.storm.port,
                    "/ws",
                    {"Sec-WebSocket-Protocol": f"livevote.v1, bearer.{self.token}"},
                    factory=lambda: connection,
                    timeout=self.storm.timeout,
                )
                done, _ = await asyncio.wait([showing, connection.closed], return_when=asyncio.FIRST_COMPLETED)
        except (OSError, TimeoutError) as error:
            attempt.cause = cause_of(error)
            connection.close()
            return None
        if showing not in done or not showing.result():
            attempt.cause = "closed before the snapshot" if showing not in done else "snapshot with other counts"
            connection.close()
            return None
        attempt.live = self.live_at = time.monotonic()
        connection.on_text = None
        self.live.set()
        return connection


def cause_of(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError):
        return "reset"
    text = str(error)
    if text.startswith("HTTP/"):
        return f"status {text.split(' ', 2)[1]}"
    return text or type(error).__name__


def snapshot_counts(payload: bytes) -> dict[int, tuple[int, int]]:
    teachers = orjson.loads(payload)["teachers"]
    return {teacher["no"]: (teacher["good_count"], teacher["bad_count"]) for teacher in teachers}


async def store_counts(port: int, token: str, *, vote: bool = False) -> dict[int, tuple[int, int]]:
    """Subject 1's counts as REST reports them (after casting VOTES, with `vote`)."""
    http = await HttpConnection.open(port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for teacher, value in VOTES.items() if vote else ():
            status, body = await http.request(
                "PUT", f"/api/teachers/{teacher}/vote", orjson.dumps({"value": value}), headers
            )
            assert status == 200, body
        status, body = await http.request("GET", "/api/subjects/1/teachers", headers=headers)
        assert status == 200, body
    finally:
        await http.close()
    return {item["no"]: (item["good_count"], item["bad_count"]) for item in orjson.loads(body)}


async def sign_in_many(port: int, users: int, at_once: int = 16) -> list[str]:
    """An access token of each of `users` new accounts, each its own session."""
    turns = asyncio.Semaphore(at_once)

    async def one(index: int) -> str:
        async with turns:
            return await sign_in(port, f"bench{index}")

    started = time.monotonic()
    tokens = await asyncio.gather(*(one(index) for index in range(users)))
    print(f"{users} accounts signed in in {time.monotonic() - started:.1f} s", flush=True)
    return list(tokens)


async def until_serving(port: int) -> None:
    """Once the app answers (it binds its port before it is ready to serve)."""
    http = await HttpConnection.open(port)
    try:
        status, body = await http.request("GET", "/healthz")
        assert status == 200, body
    finally:
        await http.close()


def listen_overflows() -> int:
    """The kernel's count of connections its full accept queues turned away (a SYN dropped: the
    client tries again 1 s later, then 3 s, ...), machine-wide."""
    header, values = (line.split() for line in Path("/proc/net/netstat").read_text().splitlines()[:2])
    return int(dict(zip(header, values, strict=True))["ListenOverflows"])


def watch_accept_queue(port: int, every: float, until: threading.Event, samples: list[tuple[float, int]]) -> None:
    """The listening socket's accept queue (connections the kernel holds that the server has not
    accepted yet: `ss`'s Recv-Q), every `every` s."""
    while not until.wait(every):
        listing = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout.split()
        if listing:
            samples.append((time.monotonic(), int(listing[1])))


def probe_listening(port: int, gone: EventType, listening: Connection) -> None:
    """Once the old server is gone: when a connection to `port` is first made (the kernel
    completes it once the new process listens, before the server accepts it), tried every ms."""
    gone.wait()
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                listening.send(time.monotonic())
                return
        except OSError:
            time.sleep(0.001)


def observe(port: int, every: float, gone: EventType, listening: Connection, results: Connection) -> None:
    """In a process of its own (its timings are not this busy client's): GET /healthz every
    `every` s until told to stop, the accept queue, and when the new process listens; sends back
    (started, seconds, status or cause) per request and (when, length) per accept queue reading."""
    samples: list[tuple[float, float, str]] = []
    queue: list[tuple[float, int]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_accept_queue, args=(port, ACCEPT_QUEUE_EVERY, stop, queue))
    watcher.start()
    threading.Thread(target=probe_listening, args=(port, gone, listening), daemon=True).start()
    connection: http.client.HTTPConnection | None = None
    while not results.poll():
        started = time.monotonic()
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            outcome = str(response.status)
        except (OSError, http.client.HTTPException) as error:
            outcome = cause_of(error)
            if connection is not None:
                connection.close()
            connection = None
        samples.append((started, time.monotonic() - started, outcome))
        time.sleep(max(started + every - time.monotonic(), 0))
    stop.set()
    watcher.join()
    results.send((samples, queue))


class Observer:
    """A process beside this client's: /healthz latency, the accept queue, the restart's moment."""

    def __init__(self, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self._gone = context.Event()
        self._listening, listened = context.Pipe(duplex=False)
        self._process = context.Process(
            target=observe, args=(port, HEALTHZ_EVERY, self._gone, listened, theirs), daemon=True
        )

    def start(self) -> Observer:
        self._process.start()
        return self

    async def listening(self) -> float:
        """When the new process listened, once the old one is gone."""
        self._gone.set()
        return float(await asyncio.to_thread(self._listening.recv))

    def stop(self) -> tuple[list[tuple[float, float, str]], list[tuple[float, int]]]:
        """The /healthz requests and the accept queue readings."""
        self._pipe.send(None)
        samples, queue = self._pipe.recv()
        self._process.join()
        return samples, queue


async def watch_lag(samples: list[tuple[float, float]], every: float = 0.01) -> None:
    """How late this client's loop wakes a `every` s sleep: a busy client delays every page's
    steps (its TCP connects and 101s are noted late), and so the figures."""
    while True:
        due = time.monotonic() + every
        await asyncio.sleep(every)
        woke = time.monotonic()
        samples.append((woke, woke - due))


async def connect_gradually(pages: list[Page]) -> float:
    """Every page started, at most CONNECT_CONCURRENCY connecting at once; seconds until all live."""
    began = time.monotonic()
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(page: Page) -> None:
        async with limit:
            await page.start().live.wait()

    await asyncio.gather(*(one(page) for page in pages))
    return time.monotonic() - began


async def until_live(pages: list[Page], deadline: float) -> None:
    try:
        async with asyncio.timeout(deadline):
            await asyncio.gather(*(page.live.wait() for page in pages))
    except TimeoutError:
        pass


def stage_rows(attempts: list[Attempt], listening: float) -> list[dict[str, Any]]:
    """For the storm's attempts that went live: when (s after listening) each stage came."""
    made_it = [attempt for attempt in attempts if attempt.live is not None]
    rows = []
    for stage, times in [
        ("started", [attempt.started for attempt in made_it]),
        ("tcp connected", [attempt.tcp for attempt in made_it if attempt.tcp is not None]),
        ("101", [attempt.upgraded for attempt in made_it if attempt.upgraded is not None]),
        ("welcome", [attempt.welcome for attempt in made_it if attempt.welcome is not None]),
        ("snapshot", [attempt.live for attempt in made_it if attempt.live is not None]),
    ]:
        offsets = [moment - listening for moment in times]
        rows.append(
            {
                "stage": stage,
                "attempts": len(offsets),
                "p1 s": percentile(offsets, 0.01),
                "p10 s": percentile(offsets, 0.1),
                "p50 s": percentile(offsets, 0.5),
                "p90 s": percentile(offsets, 0.9),
                "p99 s": percentile(offsets, 0.99),
                "max s": max(offsets, default=float("nan")),
            }
        )
    return rows


def timeline(
    attempts: list[Attempt],
    queue: list[tuple[float, int]],
    lags: list[tuple[float, float]],
    listening: float,
    until: float,
    step: float,
) -> list[dict[str, Any]]:
    """Per `step` s after listening: attempts started, TCP connects, 101s, welcomes and snapshots,
    the longest accept queue seen and this client's longest loop lag."""
    buckets: list[Counter[str]] = [Counter() for _ in range(max(int((until - listening) / step) + 1, 1))]
    for sampled, lag in lags:
        if listening <= sampled < until:
            bucket = buckets[int((sampled - listening) / step)]
            bucket["client lag ms"] = max(bucket["client lag ms"], int(1000 * lag))
    for sampled, length in queue:
        if listening <= sampled < until:
            bucket = buckets[int((sampled - listening) / step)]
            bucket["accept queue"] = max(bucket["accept queue"], length)
    for attempt in attempts:
        for stage, moment in (
            ("started", attempt.started),
            ("tcp", attempt.tcp),
            ("101", attempt.upgraded),
            ("welcome", attempt.welcome),
            ("live", attempt.live),
        ):
            if moment is not None and listening <= moment < until:
                buckets[int((moment - listening) / step)][stage] += 1
    return [{"from s": index * step, **bucket} for index, bucket in enumerate(buckets)]


async def restart(server: Process, work: Path, how: str) -> tuple[Process, float]:
    """The server stopped by `how` and started again on its port: (the new one, when it stopped)."""
    assert server.popen is not None
    server.popen.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
    await asyncio.to_thread(server.popen.wait, 30)
    stopped = time.monotonic()
    return Process(server.name, server.args, server.env).start(work), stopped


def profile(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy on the server until stopped (SIGINT), without pausing it (a paused server serves a
    storm far slower): a flame graph, or raw stacks for a .txt."""
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--nonblocking",
            "-o",
            str(output),
            *(["--format", "raw"] if output.suffix == ".txt" else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument(
        "--signal",
        choices=["kill", "term"],
        default="kill",
        help="kill: SIGKILL (sockets drop); term: SIGTERM (closed with 1001, then drained)",
    )
    parser.add_argument("--users", type=int, help="accounts the pages sign in as (default: one per page)")
    parser.add_argument("--deadline", type=float, default=60.0, help="s after listening before a page counts as stuck")
    parser.add_argument("--timeout", type=float, default=30.0, help="s an attempt may take to go live")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="s before RSS is read: after start-up and after the pages connected"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the new process until every page is live (.svg or .txt)")
    options = parser.parse_args()
    raise_open_files()
    pin_client()
    work = Path(tempfile.mkdtemp(prefix="livevote-storm-"))
    port = free_port()
    server = livevote_process("livevote", work, port, None, auth__argon2_memory_kib=8192, auth__argon2_time_cost=1,
                              auth__register_attempts=1_000_000).start(work)
    pages: list[Page] = []
    try:
        await wait_for_port(port)
        await until_serving(port)
        tokens = await sign_in_many(port, options.users or options.sockets)
        token = tokens[0]
        counts = await store_counts(port, token, vote=True)
        server, _ = await restart(server, work, "term")
        await wait_for_port(port)
        await until_serving(port)
        await asyncio.sleep(options.settle)
        baseline = rss_kib(server.pid)
        storm = Storm(port, counts, options.timeout)
        pages = [Page(storm, tokens[index % len(tokens)]) for index in range(options.sockets)]
        connect_s = await connect_gradually(pages)
        await asyncio.sleep(options.settle)
        gradual = rss_kib(server.pid)
        print(f"{len(pages)} pages live in {connect_s:.1f} s", flush=True)

        observer = Observer(port).start()
        gc.collect()
        gc.freeze()
        gc.disable()
        lags: list[tuple[float, float]] = []
        lag_watch = asyncio.create_task(watch_lag(lags))
        client_cpu = CpuMeter(os.getpid())
        first, overflows = len(storm.attempts), listen_overflows()
        server, stopped = await restart(server, work, options.signal)
        listening = await observer.listening()
        client_cpu.start()
        server_cpu = CpuMeter(server.pid)
        server_cpu.start()
        profiler = profile(server.pid, options.profile) if options.profile else None
        await until_live(pages, options.deadline - (time.monotonic() - listening))
        ended = time.monotonic()
        lag_watch.cancel()
        gc.enable()
        row_cpu = {"server cpu %": server_cpu.stop(), "client cpu %": client_cpu.stop()}
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            await asyncio.to_thread(profiler.wait, 60)
        overflows = listen_overflows() - overflows
        healthz, queue = observer.stop()
        await asyncio.sleep(options.settle)
        after = rss_kib(server.pid)
        assert await store_counts(port, token) == counts, "the store lost votes across the restart"
    finally:
        for page in pages:
            page.stop()
        server.stop()

    back = sorted(page.live_at - listening for page in pages if page.live.is_set())
    stuck = len(pages) - len(back)
    during = storm.attempts[first:]
    failures = Counter(attempt.cause for attempt in during if attempt.cause is not None)
    handshakes = [
        attempt.upgraded
        for attempt in during
        if attempt.upgraded is not None and attempt.cause is None and attempt.upgraded >= listening
    ]
    per_second = Counter(int(moment - listening) for moment in handshakes)
    storm_healthz = [
        seconds for started, seconds, outcome in healthz if listening <= started <= ended and outcome == "200"
    ]

    def fraction_live(share: float) -> float | None:
        needed = max(int(share * len(pages) + 0.999999), 1)
        return back[needed - 1] if len(back) >= needed else None

    row = {
        "signal": options.signal,
        "pages": len(pages),
        "50 % live s": fraction_live(0.5),
        "99 % live s": fraction_live(0.99),
        "100 % live s": fraction_live(1.0),
        "stuck": stuck,
        "handshakes/s": len(handshakes) / max(ended - listening, 1e-9),
        "peak handshakes/s": max(per_second.values(), default=0),
        "failed": sum(failures.values()),
        "healthz p50 ms": 1000 * percentile(storm_healthz, 0.5),
        "healthz p99 ms": 1000 * percentile(storm_healthz, 0.99),
        **row_cpu,
    }
    memory = [
        {
            "phase": "connected gradually",
            "sockets": len(pages),
            "RSS MiB": gradual / 1024,
            "RSS/socket KiB": (gradual - baseline) / len(pages),
        },
        {
            "phase": "after the storm",
            "sockets": len(back),
            "RSS MiB": after / 1024,
            "RSS/socket KiB": (after - baseline) / max(len(back), 1),
        },
    ]
    stages = stage_rows(during, listening)
    steps = timeline(during, queue, lags, listening, ended, 0.5)
    served = min(handshakes, default=float("nan")) - listening
    slow_syn = sum(1 for attempt in during if attempt.tcp is not None and attempt.tcp - attempt.started > 0.9)
    print(
        f"\nthe old process gone to the new one listening: {listening - stopped:.2f} s; its first 101: {served:.2f} s"
    )
    print(
        f"connections the full accept queue turned away: {overflows}; attempts whose TCP connect took > 0.9 s: "
        f"{slow_syn}; longest accept queue: {max((length for _, length in queue), default=0)}"
    )
    print(f"failed attempts by cause: {dict(failures)}")
    print(
        f"healthz during the storm: {len(storm_healthz)} answered, "
        f"{sum(1 for s, _, o in healthz if listening <= s <= ended and o != '200')} not\n"
    )
    print(table(stages, ["stage", "attempts", "p1 s", "p10 s", "p50 s", "p90 s", "p99 s", "max s"]))
    print()
    print(table(steps, ["from s", "started", "tcp", "accept queue", "101", "welcome", "live", "client lag ms"]))
    print()
    print(table(memory, MEMORY_COLUMNS))
    report(
        "storm",
        [row],
        COLUMNS,
        failures=dict(failures),
        memory=memory,
        stages=stages,
        timeline=steps,
        restart_s=listening - stopped,
        first_101_s=served,
        listen_overflows=overflows,
        slow_tcp_connects=slow_syn,
        users=options.users or options.sockets,
        options={**vars(options), "profile": str(options.profile)},
    )
    if stuck:
        raise SystemExit(f"{stuck} pages stuck")


if __name__ == "__main__":
    uvloop.run(main())
