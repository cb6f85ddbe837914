"""Soak: the scaled deployment under load and recurring faults, checked for lost votes and stale pages.

    python bench/soak.py [--duration 600] [--sockets 1000] [--voters 20] [--rate 20] [--fault-every 60]
    python -m bench.soak ...            (the same)

What runs, on free ports in one temp dir, all stopped and removed at the end (Ctrl-C included):
a 3 master + 3 replica Redis Cluster (tests/harness/redis_cluster.py), one `python server.py --workers 3
--redis-cluster` (server.xheaders on), and nginx from deploy/nginx.conf in front of it over TLS
(tests/harness/nginx.py). Not pinned to cores, unlike the throughput benchmarks: this one is
about correctness under faults, on whatever the machine has.

- Pages: --sockets WebSockets through nginx with the page's Origin and a bearer subprotocol
  (docs/protocol.md), each on one channel (subject:1..N round robin with dashboard). Like
  static/js/livevote.js they subscribe on `welcome`, keep per teacher the counts of the highest
  version, and after a close reconnect with backoff (0.5 s doubling to 15 s, equal jitter, reset
  by a welcome); a 401 at the handshake logs their user in again.
- Voters: --voters users cast --rate votes/s in all, round robin, each turn one user switching
  its vote on a random teacher to another value (good, bad, or withdrawn with DELETE) over REST
  through nginx. A failed request (502 while a worker dies, 503 while Redis fails over, a reset)
  is sent again, unchanged, until acknowledged: a vote sets a value, so a repeat is harmless, and
  each user's last acknowledged vote per teacher is then exactly what the store must hold. A
  user still busy when its turn comes skips it (counted).
- Faults, every --fault-every s, cycling through the kinds in a new shuffled order each round so
  that a short run sees each kind: kill -9 of a worker (the supervisor forks a new one; done when
  the new one logs that it listens), kill -9 of a Redis master (done when its replica has taken
  over and the node, started again, has rejoined as a replica and the cluster is healthy), SIGHUP
  to nginx (a reload; done when a new nginx worker exists and /healthz answers through it).

What it reports, as tables and then one JSON line (the last line of stdout); the exit status is
1 when lost, mismatch, stale_sockets, unsettled_votes or wrong_acks is not 0, or a fault did not
recover (the server's exit code and ERROR lines are reported, not judged):
- lost: (user, teacher) pairs whose vote in the store (GET /api/teachers/N/vote as that user) is
  not that user's last acknowledged one. mismatch: sum over teachers of the differences between
  GET /api/teachers/N's good/bad counts and what all users' last acknowledged votes add up to.
- stale_sockets: pages not subscribed, or not showing the store (per teacher counts and version;
  dashboards: every subject's totals and votes_total), at the deadline: 5 s after the later of
  the last vote's acknowledgement and the end of the last fault's recovery (polled until then;
  converge_ms is when all of them did).
- staleness of a vote: from t, when its acknowledgement reached the voter, until every page that
  was subscribed to the teacher's subject at t shows a version >= the acknowledged one, over the
  same socket or one it reconnected with (0 when all of them already did). A vote follows a fault
  when [t, that moment] overlaps the fault's window, from its start until 5 s after it recovered;
  max_stale_after_fault_ms is the max over such votes (also per fault), and the others give the
  baseline (max and p99). Dashboards carry no version, so only the final check covers them.
- rss: each worker (child of the supervisor), mean VmRSS over the first and the last third of
  the voting time, sampled every second; a worker started after a kill is a row of its own.
- pub/sub per vote, over the voting time, divided by the count changes (the sum of the teachers'
  version increments): livevote_vote_feed_messages_total summed over workers (each scraped on a
  keep-alive connection of its own, found through /proc; read just before a worker is killed, a
  new worker counted from 0), and cmdstat_spublish calls summed over the cluster's nodes
  (INFO commandstats; read just before a master is killed, a restarted node counted from 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as redis
from tornado.httpclient import AsyncHTTPClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, CpuMeter, machine, percentile, raise_open_files, table  # noqa: E402
from bench.httpload import HttpConnection  # noqa: E402
from bench.wsload import WsClient, connect  # noqa: E402
from tests.harness.environment import server_env  # noqa: E402
from tests.harness.metrics import FEED_MESSAGES, find_sample  # noqa: E402
from tests.harness.nginx import Nginx  # noqa: E402
from tests.harness.procfs import child_pids, rss_kib, socket_owner  # noqa: E402
from tests.harness.redis_cluster import ClusterServers  # noqa: E402
from tests.harness.server import Response, wait_for  # noqa: E402
from tests.harness.server_process import ServerProcess, stop_process  # noqa: E402

WORKERS = 3
PASSWORD = "correct horse battery"
FAULT_KINDS = ("worker", "redis", "nginx")
FAULT_TIMEOUT = 90.0
"""A fault not recovered by then is reported as failed (and fails the run)."""
NO_FAULT_TAIL = 5.0
"""No fault starts this close to the end of the voting time."""
SETTLE = 5.0
"""A fault's window, for the staleness figure, lasts this long past its recovery."""
CONVERGE = 5.0
"""Pages must show the store this long after the last vote (or the last recovery)."""
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 15.0
"""static/js/livevote.js's reconnect backoff, in seconds."""
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Between attempts of one unacknowledged vote."""
SETTLE_VOTES = 60.0
"""How long votes in flight at the end may take to be acknowledged."""
SOCKETS_PER_ACCOUNT = 100
CONNECT_CONCURRENCY = 100
VALUES = ("good", "bad", None)

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE  # nginx's certificate is a self-signed one made for this run


def now() -> float:
    return time.monotonic()


# -- accounts, pages and voters ------------------------------------------------------------------


class Account:
    """A user and its latest access token (pages share one; pushed tokens replace it)."""

    def __init__(self, nginx: Nginx, username: str) -> None:
        self.nginx = nginx
        self.username = username
        self.token = ""
        self.logins = 0
        self._renewing = asyncio.Lock()

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def register(self) -> None:
        body = {"username": self.username, "password": PASSWORD}
        response = await self.nginx.request("POST", "/api/auth/register", json_body=body)
        if response.status != 201:
            raise RuntimeError(f"register {self.username}: {response.status} {response.body[:200]!r}")
        await self.log_in()

    async def log_in(self) -> None:
        body = {"username": self.username, "password": PASSWORD}
        response = await self.nginx.request("POST", "/api/auth/login", json_body=body)
        if response.status != 200:
            raise RuntimeError(f"login {self.username}: {response.status} {response.body[:200]!r}")
        self.token = str(response.json()["access_token"])
        self.logins += 1

    async def renew(self, refused: str) -> None:
        """Log in again after a 401 (a session lost with a failed-over master), once per refused token."""
        async with self._renewing:
            if self.token == refused:
                with contextlib.suppress(Exception):
                    await self.log_in()

    async def api(self, method: str, path: str, **options: Any) -> Response:
        """A request as this user that must succeed in the end (the checks after the run): retried
        with backoff on anything but 200, logging in again on 401."""
        for attempt in range(40):
            token = self.token
            with contextlib.suppress(Exception):  # a reset or a timeout: try again
                response = await self.nginx.request(method, path, headers=self.bearer, **options)
                if response.status == 200:
                    return response
                if response.status == 401:
                    await self.renew(token)
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        raise RuntimeError(f"{method} {path} as {self.username} kept failing")


async def open_socket(port: int, token: str, factory: Callable[[], WsClient]) -> WsClient:
    """/ws through nginx over TLS, as a page opens it: its Origin, the token in a subprotocol.
    `factory` makes the client with its callback set, since `welcome` may come in the 101's own read."""
    headers = {"Origin": f"https://127.0.0.1:{port}", "Sec-WebSocket-Protocol": f"livevote.v1, bearer.{token}"}
    return await connect(port, "/ws", headers, factory=factory, ssl=TLS, timeout=20)


class Page:
    """One live page on one channel, for the whole run, across its reconnections."""

    def __init__(self, soak: Soak, index: int, channel: str, account: Account) -> None:
        self.soak = soak
        self.index = index
        self.channel = channel
        self.account = account
        self.subject = int(channel.split(":")[1]) if channel.startswith("subject:") else None
        self.teachers: dict[int, tuple[int, int, int]] = {}
        """good, bad, version: the highest version seen of each teacher."""
        self.subjects: dict[int, tuple[int, int]] = {}
        self.votes_total: int | None = None
        self.subscribed = False
        """The current socket has had its snapshot."""
        self.changed_at = 0.0
        """When what the page shows last changed."""
        self.closed_at: float | None = None
        """When its last socket closed, until a new one has its snapshot."""
        self.ready = asyncio.Event()
        self.client: WsClient | None = None
        self.failures = 0
        self.connects = 0
        self._subscribe = orjson.dumps({"op": "subscribe", "channel": channel, "id": 1})

    def version_of(self, teacher: int) -> int:
        shown = self.teachers.get(teacher)
        return shown[2] if shown else 0

    async def run(self) -> None:
        soak = self.soak
        while not soak.stopping:
            token = self.account.token
            try:
                client = await open_socket(soak.nginx_port, token, self._new_client)
            except Exception as error:  # noqa: BLE001 - every failure is retried, as a page does
                self.client = None
                soak.handshake_failures[_failure(error)] += 1
                if "401" in str(error):
                    await self.account.renew(token)
                await self.backoff()
                continue
            code = await client.closed
            client.close()
            self.client, self.subscribed, self.closed_at = None, False, now()
            soak.closes[str(code)] += 1
            if soak.stopping:
                return
            await self.backoff()

    def _new_client(self) -> WsClient:
        self.client = WsClient(self.on_text)
        return self.client

    async def backoff(self) -> None:
        self.failures += 1
        ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))
        await asyncio.sleep(ceiling / 2 + random.random() * ceiling / 2)

    def on_text(self, payload: bytes) -> None:
        message = orjson.loads(payload)
        kind = message.get("type")
        if kind in ("snapshot", "votes") and message.get("channel") == self.channel:
            at = now()
            if self.subject is None:
                for item in message["subjects"]:
                    shown = (item["good_count"], item["bad_count"])
                    if self.subjects.get(item["no"]) != shown:
                        self.subjects[item["no"]], self.changed_at = shown, at
                self.votes_total = message["votes_total"]
            else:
                for item in message.get("teachers") or message.get("updates") or ():
                    before = self.version_of(item["no"])
                    if item["version"] > before:
                        self.teachers[item["no"]] = (item["good_count"], item["bad_count"], item["version"])
                        self.changed_at = at
                        self.soak.staleness.shown(self.index, item["no"], before, item["version"], at)
            if kind == "snapshot":
                self.subscribed = True
                self.ready.set()
                if self.closed_at is not None:
                    self.soak.outages.append(at - self.closed_at)
                    self.closed_at = None
        elif kind == "welcome":
            self.failures = 0
            self.connects += 1
            if self.client is not None:
                self.client.send_text(self._subscribe)
        elif kind == "token":
            self.account.token = str(message["access_token"])
        elif kind == "error":
            self.soak.socket_errors[str(message.get("code"))] += 1
        elif kind == "revoked":
            self.soak.socket_errors["revoked"] += 1


def _failure(error: BaseException) -> str:
    text = str(error)
    for status in ("401", "403", "502", "503", "504"):
        if f" {status} " in f" {text} ":
            return status
    return type(error).__name__


class Voter(Account):
    """A user casting votes one at a time; `votes` holds its last acknowledged vote per teacher."""

    def __init__(self, nginx: Nginx, username: str) -> None:
        super().__init__(nginx, username)
        self.votes: dict[int, str | None] = {}
        self.busy = False

    async def vote(self, soak: Soak, teacher: int) -> None:
        """Switch the vote on `teacher` to another value, resending until acknowledged."""
        value = random.choice([choice for choice in VALUES if choice != self.votes.get(teacher)])
        path = f"/api/teachers/{teacher}/vote"
        try:
            for attempt in itertools.count():
                token = self.token
                status: str
                try:
                    if value is None:
                        response = await self.nginx.request("DELETE", path, headers=self.bearer)
                    else:
                        response = await self.nginx.request("PUT", path, json_body={"value": value}, headers=self.bearer)
                    status = str(response.status)
                except Exception as error:  # noqa: BLE001 - reset, timeout: unknown outcome, resend
                    status = type(error).__name__
                else:
                    if response.status == 200:
                        body = response.json()
                        if body["value"] != value or body["teacher"] != teacher:
                            soak.wrong_acks += 1
                        self.votes[teacher] = value
                        soak.acknowledged(teacher, int(body["version"]), attempt)
                        return
                    if response.status == 401:
                        await self.renew(token)
                soak.vote_failures[status] += 1
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        finally:
            self.busy = False


# -- staleness ------------------------------------------------------------------------------------


@dataclass
class PendingVote:
    acked: float
    waiting: set[int]
    """Pages subscribed at `acked` that do not show the version yet."""


class Staleness:
    """Per acknowledged version, the pages still to show it (see the module docstring)."""

    def __init__(self) -> None:
        self.pages_by_subject: dict[int, list[Page]] = defaultdict(list)
        self.subject_of: dict[int, int] = {}
        self.pending: dict[int, dict[int, PendingVote]] = defaultdict(dict)
        self.known: dict[int, set[int]] = defaultdict(set)
        self.done: list[tuple[float, float]] = []
        """(acknowledged, shown by every page) per vote."""
        self.unreached = 0

    def acknowledged(self, teacher: int, version: int, at: float) -> None:
        if version in self.known[teacher]:  # a resent vote that had already been applied
            return
        self.known[teacher].add(version)
        waiting = {page.index for page in self.pages_by_subject[self.subject_of[teacher]]
                   if page.subscribed and page.version_of(teacher) < version}
        if waiting:
            self.pending[teacher][version] = PendingVote(at, waiting)
        else:
            self.done.append((at, at))

    def shown(self, page: int, teacher: int, before: int, version: int, at: float) -> None:
        pending = self.pending.get(teacher)
        if not pending:
            return
        versions = range(before + 1, version + 1) if version - before <= len(pending) else \
            [v for v in pending if before < v <= version]
        for v in versions:
            vote = pending.get(v)
            if vote is not None and page in vote.waiting:
                vote.waiting.discard(page)
                if not vote.waiting:
                    del pending[v]
                    self.done.append((vote.acked, at))

    def finish(self, at: float) -> None:
        """Votes some page never showed: stale until the end of the run."""
        for pending in self.pending.values():
            for vote in pending.values():
                self.done.append((vote.acked, at))
                self.unreached += 1
            pending.clear()


# -- measurements ---------------------------------------------------------------------------------


class WorkerFeeds:
    """livevote_vote_feed_messages_total of each worker, each asked on a connection it holds:
    the workers share one port, so /proc tells which one accepted which connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections: dict[int, HttpConnection] = {}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.counting = False

    async def connect(self, pids: list[int], timeout: float = 20.0) -> None:
        deadline = now() + timeout
        while missing := set(pids) - set(self.connections):
            if now() > deadline:
                raise TimeoutError(f"no connection landed on worker(s) {sorted(missing)} within {timeout} s")
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            connection = HttpConnection(reader, writer, self.port)
            owner = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.request("GET", "/healthz"), 5)
                owner = socket_owner(sorted(missing), self.port, int(writer.get_extra_info("sockname")[1]))
            if owner is None:
                await _close(connection)
            else:
                self.connections[owner] = connection

    async def scrape(self) -> None:
        for pid, connection in list(self.connections.items()):
            try:
                status, body = await asyncio.wait_for(connection.request("GET", "/metrics"), 5)
                value = find_sample(body.decode(), FEED_MESSAGES)
            except Exception:  # noqa: BLE001 - the worker is gone (or hung): its last reading stands
                del self.connections[pid]
                await _close(connection)
                continue
            if status != 200 or value is None:
                continue
            self.last[pid] = value
            if pid not in self.first:
                self.first[pid] = 0.0 if self.counting else value  # a worker started during the run counts from 0

    @property
    def total(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)

    async def close(self) -> None:
        for connection in self.connections.values():
            await _close(connection)
        self.connections.clear()


async def _close(connection: HttpConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.close(), 2)


class SpublishCalls:
    """cmdstat_spublish calls of every node, by (port, run_id): a restarted node starts from 0."""

    def __init__(self, cluster: ClusterServers) -> None:
        self.cluster = cluster
        self.first: dict[tuple[int, str], int] = {}
        self.last: dict[tuple[int, str], int] = {}
        self.counting = False

    async def scrape(self) -> None:
        for port in self.cluster.running_ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)
            try:
                server = await client.info("server")
                stats = await client.info("commandstats")
            except (redis.RedisError, OSError):
                continue
            finally:
                await client.aclose()
            key = (port, str(server["run_id"]))
            calls = int(stats.get("cmdstat_spublish", {}).get("calls", 0))
            self.last[key] = calls
            if key not in self.first:
                self.first[key] = 0 if self.counting else calls

    @property
    def total(self) -> int:
        return sum(self.last[key] - self.first[key] for key in self.last)


@dataclass
class Fault:
    kind: str
    started: float
    target: str = ""
    recovered: float | None = None
    error: str | None = None


@dataclass
class Options:
    duration: float
    sockets: int
    voters: int
    rate: float
    fault_every: float
    faults: tuple[str, ...]
    subjects: int
    seed: int | None
    keep: bool
    results: str


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Soak:
    options: Options
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="livevote-soak-")))
    cluster: ClusterServers | None = None
    server: ServerProcess | None = None
    nginx: Nginx | None = None
    stopping: bool = False
    pages: list[Page] = field(default_factory=list)
    voters: list[Voter] = field(default_factory=list)
    staleness: Staleness = field(default_factory=Staleness)
    faults: list[Fault] = field(default_factory=list)
    rss: list[tuple[float, int, int]] = field(default_factory=list)
    closes: Counter[str] = field(default_factory=Counter)
    handshake_failures: Counter[str] = field(default_factory=Counter)
    socket_errors: Counter[str] = field(default_factory=Counter)
    vote_failures: Counter[str] = field(default_factory=Counter)
    outages: list[float] = field(default_factory=list)
    """Per reconnection: from the close of a page's socket until the new one's snapshot."""
    votes_acked: int = 0
    votes_resent: int = 0
    turns_skipped: int = 0
    wrong_acks: int = 0
    last_ack: float = 0.0
    server_exit: int | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def nginx_port(self) -> int:
        assert self.nginx is not None
        return self.nginx.port

    def workers(self) -> list[int]:
        assert self.server is not None and self.server.process is not None
        return child_pids(self.server.process.pid)

    def acknowledged(self, teacher: int, version: int, attempt: int) -> None:
        at = now()
        self.votes_acked += 1
        self.votes_resent += attempt
        self.last_ack = at
        self.staleness.acknowledged(teacher, version, at)

    # -- setting up --------------------------------------------------------------------------------

    async def start(self) -> None:
        options = self.options
        print(f"work dir {self.work}", flush=True)
        self.cluster = await ClusterServers(self.work / "cluster").start()
        accounts = options.voters + max(1, -(-options.sockets // SOCKETS_PER_ACCOUNT))
        env = server_env(**{"server.xheaders": "true", "auth.register_attempts": accounts + 10})
        self.server = ServerProcess(  # kept before it starts, so that an interrupted start is stopped too
            "--data-dir", str(self.work / "data"), "--redis-url", self.cluster.url, "--redis-cluster",
            "--workers", str(WORKERS), env=env,
        )
        await self.server.start(timeout=60)
        await wait_for(self._all_listening, timeout=60, what=f"{WORKERS} workers listening")
        (self.work / "nginx").mkdir()
        self.nginx = await Nginx(self.work / "nginx", [self.server.port]).start(timeout=20)
        print(f"cluster on {self.cluster.ports}, server on {self.server.port} (workers {self.workers()}), "
              f"nginx on {self.nginx.port}", flush=True)

    async def _all_listening(self) -> bool:
        return self.listening() >= WORKERS

    def listening(self) -> int:
        assert self.server is not None
        return sum("listening on http://" in line for line in self.server.lines)

    async def catalog(self) -> list[int]:
        """The first --subjects subjects' teachers; fills the staleness tracker's map."""
        assert self.nginx is not None
        teachers = []
        for subject in range(1, self.options.subjects + 1):
            response = await self.nginx.get(f"/api/teachers/?sno={subject}")
            if response.status != 200:
                raise RuntimeError(f"subject {subject}: {response.status} (the seeded store has 5)")
            for teacher in response.json()["teachers"]:
                teachers.append(teacher["no"])
                self.staleness.subject_of[teacher["no"]] = subject
        return teachers

    async def open_pages(self) -> None:
        assert self.nginx is not None
        options = self.options
        accounts = [Account(self.nginx, f"watcher-{i:03d}") for i in range(max(1, -(-options.sockets // SOCKETS_PER_ACCOUNT)))]
        for account in accounts:
            await account.register()
        channels = [f"subject:{no}" for no in range(1, options.subjects + 1)] + ["dashboard"]
        for index in range(options.sockets):
            page = Page(self, index, channels[index % len(channels)], accounts[index % len(accounts)])
            self.pages.append(page)
            if page.subject is not None:
                self.staleness.pages_by_subject[page.subject].append(page)
        started = now()
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def first_open(page: Page) -> None:
            async with limit:
                self._tasks.append(asyncio.create_task(page.run()))
                await page.ready.wait()

        await asyncio.wait_for(asyncio.gather(*(first_open(page) for page in self.pages)), 120)
        print(f"{options.sockets} pages subscribed in {now() - started:.1f} s", flush=True)

    # -- faults ------------------------------------------------------------------------------------

    async def run_faults(self, start: float, end: float, feeds: WorkerFeeds, spublish: SpublishCalls) -> None:
        order: list[str] = []
        number = 1
        while (due := start + number * self.options.fault_every) < end - NO_FAULT_TAIL:
            await asyncio.sleep(max(due - now(), 0))
            if not order:
                order = random.sample(self.options.faults, len(self.options.faults))
            fault = Fault(order.pop(), now())
            self.faults.append(fault)
            inject = {"worker": self.kill_worker, "redis": self.kill_master, "nginx": self.reload_nginx}[fault.kind]
            try:
                await asyncio.wait_for(inject(fault, feeds, spublish), FAULT_TIMEOUT)
            except Exception as error:  # noqa: BLE001 - reported, and it fails the run
                fault.error = f"{type(error).__name__}: {error}"
            fault.recovered = now()
            print(f"  {fault.started - start:6.1f} s  {fault.kind:6}  {fault.target}: "
                  f"{'recovered' if fault.error is None else 'FAILED ' + fault.error} "
                  f"in {fault.recovered - fault.started:.2f} s", flush=True)
            number += 1

    async def kill_worker(self, fault: Fault, feeds: WorkerFeeds, _spublish: SpublishCalls) -> None:
        victim = random.choice(self.workers())
        fault.target = f"worker {victim}"
        await feeds.scrape()  # its count of feed messages, up to now
        listening = self.listening()
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> list[int]:
            workers = self.workers()
            ok = victim not in workers and len(workers) == WORKERS and self.listening() > listening
            return workers if ok else []

        workers = await wait_for(replaced, timeout=30, what="a new worker in place of the killed one")
        fault.target += f" -> {sorted(set(workers) - set(feeds.connections))}"
        await feeds.connect(workers)

    async def kill_master(self, fault: Fault, _feeds: WorkerFeeds, spublish: SpublishCalls) -> None:
        cluster = self.cluster
        assert cluster is not None
        masters = [node for node in await cluster.nodes() if node.role == "master" and node.running and node.slots]
        victim = random.choice(masters)
        fault.target = f"master :{victim.port}"
        await spublish.scrape()
        await cluster.kill(victim.port)
        successor = await cluster.wait_failover(victim.port, victim.slots[0][0], timeout=30)
        fault.target += f" -> :{successor}, rejoined as replica"
        await cluster.restart(victim.port, timeout=30)

    async def reload_nginx(self, fault: Fault, _feeds: WorkerFeeds, _spublish: SpublishCalls) -> None:
        nginx = self.nginx
        assert nginx is not None and nginx.process is not None
        master = nginx.process.pid
        before = set(child_pids(master))
        fault.target = f"nginx {master} (SIGHUP)"
        os.kill(master, signal.SIGHUP)

        async def reloaded() -> bool:
            if not set(child_pids(master)) - before:
                return False
            with contextlib.suppress(Exception):
                return (await nginx.get("/healthz", request_timeout=2)).status == 200
            return False

        await wait_for(reloaded, timeout=30, what="nginx reloaded")

    # -- votes -------------------------------------------------------------------------------------

    async def drive_votes(self, teachers: list[int], end: float) -> int:
        """Turns at a steady rate until `end`; returns how many votes were still unacknowledged
        SETTLE_VOTES seconds later."""
        started, turn = now(), 0
        tasks: set[asyncio.Task[None]] = set()
        while (due := started + turn / self.options.rate) < end:
            if (delay := due - now()) > 0:
                await asyncio.sleep(delay)
            voter = self.voters[turn % len(self.voters)]
            turn += 1
            if voter.busy:
                self.turns_skipped += 1
                continue
            voter.busy = True
            task = asyncio.create_task(voter.vote(self, random.choice(teachers)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if not tasks:
            return 0
        _, unsettled = await asyncio.wait(set(tasks), timeout=SETTLE_VOTES)
        for task in unsettled:
            task.cancel()
        return len(unsettled)

    async def sample_rss(self) -> None:
        while True:
            at = now()
            for pid in self.workers():
                with contextlib.suppress(OSError, AssertionError):
                    self.rss.append((at, pid, rss_kib(pid)))
            await asyncio.sleep(1.0)

    # -- the store, and what pages show --------------------------------------------------------------

    async def store_counts(self, teachers: list[int]) -> dict[int, tuple[int, int, int]]:
        """GET /api/teachers/N for each teacher: good, bad, version."""
        assert self.nginx is not None
        counts = {}
        for no in teachers:
            for attempt in range(40):
                response = await self.nginx.get(f"/api/teachers/{no}/")
                if response.status == 200:
                    body = response.json()
                    counts[no] = (body["good_count"], body["bad_count"], body["version"])
                    break
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            else:
                raise RuntimeError(f"GET /api/teachers/{no}/ kept failing")
        return counts

    def stale_pages(self, counts: dict[int, tuple[int, int, int]]) -> list[Page]:
        totals: dict[int, tuple[int, int]] = {}
        for no, (good, bad, _) in counts.items():
            subject = self.staleness.subject_of[no]
            before = totals.get(subject, (0, 0))
            totals[subject] = (before[0] + good, before[1] + bad)
        votes_total = sum(good + bad for good, bad in totals.values())
        stale = []
        for page in self.pages:
            if not page.subscribed:
                stale.append(page)
            elif page.subject is None:
                if {no: page.subjects.get(no) for no in totals} != totals or page.votes_total != votes_total:
                    stale.append(page)
            elif any(page.teachers.get(no) != counts[no] for no in counts if self.staleness.subject_of[no] == page.subject):
                stale.append(page)
        return stale

    async def stats_sockets(self, timeout: float = 5.0) -> int | None:
        """Open sockets as /api/stats counts them (each worker's count in Redis, renewed by its
        heartbeat): polled until it equals the pages' sockets, else the last answer. A figure, not a
        verdict: only the dashboard shows it."""
        assert self.nginx is not None
        deadline, shown = now() + timeout, None
        while now() < deadline:
            with contextlib.suppress(Exception):
                response = await self.nginx.get("/api/stats")
                if response.status == 200:
                    shown = int(response.json()["sockets"])
                    if shown == sum(page.subscribed for page in self.pages):
                        break
            await asyncio.sleep(0.2)
        return shown

    async def lost_votes(self) -> int:
        """(user, teacher) pairs where the store holds another vote than the last acknowledged one."""
        limit = asyncio.Semaphore(20)

        async def differs(voter: Voter, teacher: int, value: str | None) -> bool:
            async with limit:
                response = await voter.api("GET", f"/api/teachers/{teacher}/vote")
            return bool(response.json()["value"] != value)

        checks = [differs(voter, teacher, value) for voter in self.voters for teacher, value in voter.votes.items()]
        return sum(await asyncio.gather(*checks))

    # -- the whole run ---------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        options = self.options
        await self.start()
        assert self.nginx is not None and self.server is not None and self.cluster is not None
        teachers = await self.catalog()
        self.voters = [Voter(self.nginx, f"voter-{i:03d}") for i in range(options.voters)]
        for voter in self.voters:
            await voter.register()
        await self.open_pages()

        feeds, spublish = WorkerFeeds(self.server.port), SpublishCalls(self.cluster)
        await feeds.connect(self.workers())
        await feeds.scrape()
        await spublish.scrape()
        feeds.counting = spublish.counting = True
        before = await self.store_counts(teachers)
        client_cpu = CpuMeter(os.getpid())
        client_cpu.start()
        self._tasks.append(asyncio.create_task(self.sample_rss()))

        started = now()
        end = started + options.duration
        print(f"voting for {options.duration:.0f} s at {options.rate:g}/s by {options.voters} users, "
              f"a fault every {options.fault_every:g} s", flush=True)
        faults = asyncio.create_task(self.run_faults(started, end, feeds, spublish))
        self._tasks.append(faults)
        unsettled = await self.drive_votes(teachers, end)
        voting_ended = now()
        await faults
        last = max([self.last_ack] + [fault.recovered or 0.0 for fault in self.faults])
        cpu = client_cpu.stop()

        # Every page must show the store within CONVERGE s of the last vote (or recovery).
        after = await self.store_counts(teachers)
        deadline = last + CONVERGE
        while (stale := self.stale_pages(after)) and now() < deadline:
            await asyncio.sleep(0.05)
        converged = None if stale else max(page.changed_at for page in self.pages)
        self.staleness.finish(now())

        expected: dict[int, list[int]] = {no: [0, 0] for no in teachers}
        for voter in self.voters:
            for teacher, value in voter.votes.items():
                if value is not None:
                    expected[teacher][0 if value == "good" else 1] += 1
        mismatch = sum(abs(after[no][0] - good) + abs(after[no][1] - bad) for no, (good, bad) in expected.items())
        lost = await self.lost_votes()
        stats_sockets = await self.stats_sockets()

        await feeds.connect(self.workers())
        await feeds.scrape()
        await spublish.scrape()
        await feeds.close()
        changes = sum(after[no][2] - before[no][2] for no in teachers)
        return self.report(
            started=started, voting_ended=voting_ended, last=last, converged=converged, cpu=cpu,
            lost=lost, mismatch=mismatch, stale=stale, unsettled=unsettled, changes=changes,
            feeds=feeds, spublish=spublish, stats_sockets=stats_sockets,
        )

    def report(self, *, started: float, voting_ended: float, last: float, converged: float | None, cpu: float,
               lost: int, mismatch: int, stale: list[Page], unsettled: int, changes: int,
               feeds: WorkerFeeds, spublish: SpublishCalls, stats_sockets: int | None) -> dict[str, Any]:
        options = self.options
        windows = [(fault, fault.started, (fault.recovered or fault.started) + SETTLE) for fault in self.faults]
        per_fault: dict[int, float] = {}
        baseline: list[float] = []
        for acked, shown in self.staleness.done:
            lag = shown - acked
            hit = False
            for index, (_, opened, closed) in enumerate(windows):
                if acked <= closed and shown >= opened:
                    per_fault[index] = max(per_fault.get(index, 0.0), lag)
                    hit = True
            if not hit:
                baseline.append(lag)
        faults = [{
            "at_s": round(fault.started - started, 1), "kind": fault.kind, "target": fault.target,
            "recovery_s": round((fault.recovered or fault.started) - fault.started, 2), "error": fault.error,
            "max_stale_ms": round(1000 * per_fault.get(index, 0.0), 1),
        } for index, (fault, _, _) in enumerate(windows)]

        third = (voting_ended - started) / 3
        rss: dict[int, dict[str, float | None]] = {}
        for pid in sorted({pid for _, pid, _ in self.rss}):
            first = [kib for at, p, kib in self.rss if p == pid and started <= at < started + third]
            final = [kib for at, p, kib in self.rss if p == pid and voting_ended - third <= at <= voting_ended]
            rss[pid] = {"first_third_mib": round(sum(first) / len(first) / 1024, 1) if first else None,
                        "last_third_mib": round(sum(final) / len(final) / 1024, 1) if final else None}

        after_fault = max(per_fault.values(), default=0.0)
        result: dict[str, Any] = {
            "duration_s": options.duration, "sockets": options.sockets, "voters": options.voters,
            "rate": options.rate, "fault_every_s": options.fault_every,
            "lost": lost, "mismatch": mismatch, "stale_sockets": len(stale), "unsettled_votes": unsettled,
            "fault_errors": sum(fault.error is not None for fault in self.faults),
            "converge_ms": round(1000 * max(converged - last, 0.0), 1) if converged is not None else None,
            "max_page_outage_ms": round(1000 * max(self.outages, default=0.0), 1),
            "max_stale_after_fault_ms": round(1000 * after_fault, 1),
            "max_stale_baseline_ms": round(1000 * max(baseline, default=0.0), 1),
            "p99_stale_baseline_ms": round(1000 * percentile(baseline, 0.99), 1) if baseline else None,
            "votes_unreached": self.staleness.unreached,
            "votes_acked": self.votes_acked, "count_changes": changes, "votes_resent": self.votes_resent,
            "turns_skipped": self.turns_skipped, "wrong_acks": self.wrong_acks,
            "vote_failures": dict(self.vote_failures),
            "feed_messages_per_vote": round(feeds.total / changes, 3) if changes else None,
            "spublish_per_vote": round(spublish.total / changes, 3) if changes else None,
            "feed_messages": feeds.total, "spublish_calls": spublish.total,
            "faults": faults, "rss": {str(pid): row for pid, row in rss.items()},
            "reconnects": sum(page.connects for page in self.pages) - len(self.pages),
            "closes": dict(self.closes), "handshake_failures": dict(self.handshake_failures),
            "socket_errors": dict(self.socket_errors), "client_cpu_pct": round(cpu, 1),
            "stats_sockets": stats_sockets,
            "stale_examples": [self._describe(page) for page in stale[:3]],
        }
        result["ok"] = not (lost or mismatch or stale or unsettled or result["fault_errors"] or self.wrong_acks)
        return result

    async def _stop_server(self) -> None:
        """SIGTERM to the supervisor, which stops its workers gracefully; its exit code says whether
        each of them stopped cleanly."""
        assert self.server is not None
        try:
            self.server_exit = await stop_process(self.server, timeout=25)
        finally:
            await self.server.stop()

    def server_problems(self) -> list[str]:
        """The server's log lines at ERROR level and the last line of each traceback."""
        assert self.server is not None
        lines, problems = self.server.lines, []
        for index, line in enumerate(lines):
            if " ERROR " in line:
                problems.append(line)
            elif line.startswith("Traceback"):
                end = next((i for i in range(index + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), None)
                if end is not None:
                    problems.append("  " + lines[end])
        return problems

    def _describe(self, page: Page) -> dict[str, Any]:
        return {"page": page.index, "channel": page.channel, "subscribed": page.subscribed,
                "teachers": page.teachers if page.subject else None,
                "subjects": page.subjects if page.subject is None else None, "votes_total": page.votes_total}

    async def stop(self) -> None:
        """Everything this run started, whatever state it is in (also after Ctrl-C)."""
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        for page in self.pages:
            if page.client is not None:
                page.client.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        steps: list[Callable[[], Awaitable[Any]]] = []
        if self.nginx is not None:
            steps.append(self.nginx.stop)
        if self.server is not None:
            steps.append(self._stop_server)
        if self.cluster is not None:
            steps.append(self.cluster.stop)
        for step in steps:
            with contextlib.suppress(Exception):
                await step()
        if self.options.keep:
            if self.server is not None:
                (self.work / "server.log").write_text("\n".join(self.server.lines))
            print(f"kept {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def print_report(result: dict[str, Any]) -> None:
    checks = [
        ("acknowledged votes lost", result["lost"], "0"),
        ("store counts off by (good+bad)", result["mismatch"], "0"),
        (f"sockets not showing the store {CONVERGE:g} s after the last vote", result["stale_sockets"], "0"),
        ("votes never acknowledged", result["unsettled_votes"], "0"),
        ("faults that did not recover", result["fault_errors"], "0"),
        ("all sockets showed the store after (ms)", result["converge_ms"], ""),
        ("longest page outage: close to new snapshot (ms)", result["max_page_outage_ms"], ""),
        ("longest staleness after a fault (ms)", result["max_stale_after_fault_ms"], ""),
        ("longest / p99 staleness otherwise (ms)",
         f"{result['max_stale_baseline_ms']} / {result['p99_stale_baseline_ms']}", ""),
        ("votes acknowledged / count changes", f"{result['votes_acked']} / {result['count_changes']}", ""),
        ("vote requests resent (failures by kind)", f"{result['votes_resent']} {result['vote_failures']}", ""),
        ("feed messages per vote (all workers)", result["feed_messages_per_vote"], ""),
        ("SPUBLISH calls per vote (all nodes)", result["spublish_per_vote"], ""),
        ("socket reconnects (closes by code)", f"{result['reconnects']} {result['closes']}", ""),
        ("load client CPU %", result["client_cpu_pct"], ""),
        ("open sockets: /api/stats / pages", f"{result['stats_sockets']} / {result['sockets']}", ""),
        ("server exit code after SIGTERM / ERROR lines", f"{result['server_exit']} / {len(result['server_errors'])}", ""),
    ]
    print()
    print(table([{"check": name, "value": value, "must be": must} for name, value, must in checks],
                ["check", "value", "must be"]))
    print()
    print(table(result["faults"], ["at_s", "kind", "target", "recovery_s", "max_stale_ms", "error"]))
    print()
    print(table([{"worker": pid, **row} for pid, row in result["rss"].items()],
                ["worker", "first_third_mib", "last_third_mib"]))
    for line in result["server_errors"][:10]:
        print(f"server: {line}")
    print()
    print(json.dumps(result, separators=(",", ":")), flush=True)


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of voting (default 600)")
    parser.add_argument("--sockets", type=int, default=1000, help="live pages (default 1000)")
    parser.add_argument("--voters", type=int, default=20, help="users voting (default 20)")
    parser.add_argument("--rate", type=float, default=20.0, help="votes per second, all users together (default 20)")
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults (default 60)")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="kinds to cycle through (worker,redis,nginx)")
    parser.add_argument("--subjects", type=int, default=5, help="subjects watched and voted on, 1-5 (default 5)")
    parser.add_argument("--seed", type=int, help="random seed (faults, votes, jitter)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) instead of removing it")
    parser.add_argument("--results", default=str(RESULTS / "soak.json"), help="JSON result file ('' for none)")
    args = parser.parse_args(argv)
    kinds = tuple(kind for kind in args.faults.split(",") if kind)
    if not kinds or set(kinds) - set(FAULT_KINDS):
        parser.error(f"--faults: a comma-separated subset of {','.join(FAULT_KINDS)}")
    if args.voters < 1 or args.sockets < 1 or args.rate <= 0 or not 1 <= args.subjects <= 5:
        parser.error("--voters, --sockets, --rate must be positive, --subjects 1-5")
    return Options(args.duration, args.sockets, args.voters, args.rate, args.fault_every, kinds, args.subjects,
                   args.seed, args.keep, args.results)


async def soak(options: Options) -> dict[str, Any]:
    if options.seed is not None:
        random.seed(options.seed)
    raise_open_files()
    AsyncHTTPClient.configure(None, max_clients=options.voters + 50)
    run = Soak(options)
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        result = await run.run()
    finally:
        await run.stop()
    # Reported, not judged: the run's verdict is about votes and pages (see the module docstring).
    result["server_exit"] = run.server_exit
    result["server_errors"] = run.server_problems()
    return result


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        result = asyncio.run(soak(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("soak: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    if options.results:
        path = Path(options.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    print_report(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
