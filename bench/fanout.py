"""Fan-out: C sockets subscribed to one subject (or K), updates published at rising rates.

    python bench/fanout.py [--sockets 200,1000] [--rates 100,200,...] [--step 3] [--reach [10]] [--floor]
                           [--subjects K] [--half RATE] [--targets livevote,livevote-workers2,...]

Targets, in one run, same machine, same Redis, same message size, same client
(bench/fanout_targets.py): livevote (coalescing off, then on), python-socketio's
AsyncServer with AsyncRedisManager, and a bare `websockets` server with
websockets.broadcast(); on request (--targets livevote,livevote-sse) livevote's
Server-Sent Events streams (GET /sse, bench/sseload.py) beside its sockets, the same
server settings, updates and counts, with the ratio SSE/WebSocket per step; and
livevote as N processes on one port (--targets livevote,livevote-workers2, see
bench/fanout_targets.py for where each worker runs), with the sockets each worker
accepted (counted per pid in /proc) and, per step both took, the N processes
against the one. Updates go straight onto each server's Redis channel, each one
numbered; the client (this process, core 1) times every update on a sample of
sockets from the moment it published it. Per step: updates delivered per second,
latency percentiles, updates lost, server and client CPU; RSS per socket after
connecting. Saturation: the highest rate with >= 99 % delivered and p99 < 1 s;
then one step at half that rate (latency and losses with headroom). Per step
also the server's CPU per delivered frame (/proc process CPU seconds / frames
delivered, as bench/floor.py reads its sender; "full" adds ksoftirqd of its cores) and
"cores other %", what anything else took on the server's cores (less the client
and Redis where they share one): on a shared machine a step with much of it
measured a server that lacked its core. For N workers the server is all of them.
Redis's CPU per step, and its share of server + Redis; "limit" says "client" where
the load client took >= 95 % of its core, "publish lag" where it published less
than 95 % of the step's rate (short of CPU on a shared core): the figure is then
the client's, not the server's.

--subjects K: socket i subscribes to subject i % K + 1, update v goes to subject
v % K + 1 (livevote's targets without coalescing; the seed has 5 subjects), so
each update reaches a K-th of the sockets.

--reach N: first, with the sockets subscribed and idle, ONE update N times,
timed from its publish until the LAST socket has it (every socket counted),
with the client's and the server's CPU over those windows (~100 % client:
the client is the limit).

livevote's garbage collections are read from its /metrics
(livevote_gc_pause_seconds) around each step: how many, and the largest pause
(the upper bound of its histogram bucket); after the step at half the saturation
rate, a table per generation.

--floor: after a target's steps, bench/floor.py's send() loop at the same
socket count, rounds and frames/s as the target's saturation step (paced at
what it delivered: where the client could not publish at the nominal rate,
that is less): every socket woken once per update, as in the step. Not back
to back: the floor's cost per frame moves with the rate (fewer wake-ups per
frame when rounds run together), so only the same rate is like for like. Compared
process to process: the server's and the sender's /proc CPU per frame, with
the ratio; "full" beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CLIENT_CORE, CpuMeter, bucket_bound, percentile, prepare, table, write_result
from bench.fanout_targets import Stream, Target, make_target, start
from bench.floor import measure_floor
from bench.httpload import HttpConnection, sign_in
from tests.harness.ports import wait_for_port
from tests.harness.procfs import core_seconds, cpu_seconds, main_thread_seconds, rss_kib, softirq_seconds

SAMPLED = 50
"""Sockets whose every update is timed (all sockets are counted)."""
CONNECT_CONCURRENCY = 200
CLIENT_LIMIT = 95.0
"""Client CPU % from which a step measured the load client rather than the server."""
PUBLISH_LAG = 0.95
"""Below this share of the nominal rate published, the client (or the core it shares) fell
behind: the step's frames/s is what it could publish, not what the server could take."""
REACH_SPACING = 0.5
"""Seconds before each timed update, so that it finds the sockets idle."""
REACH_TIMEOUT = 5.0
COLUMNS = ["target", "sockets", "rate", "published/s", "delivered/s", "delivered %", "lost", "p50 ms", "p95 ms",
           "p99 ms", "server cpu %", "server µs/frame", "full µs/frame", "cores other %", "redis cpu %",
           "redis share %", "client cpu %", "limit", "converge ms", "collections", "gc max ms"]
REACH_COLUMNS = ["target", "sockets", "updates", "first p50 ms", "last p50 ms", "last max ms", "missed",
                 "client cpu %", "server cpu %"]
TRANSPORTS_COLUMNS = ["sockets", "rate", "ws µs/frame", "sse µs/frame", "ratio", "ws full µs/frame",
                      "sse full µs/frame", "full ratio", "ws p99 ms", "sse p99 ms", "ws delivered %",
                      "sse delivered %"]
SSE, WS = "livevote-sse", "livevote"
"""The targets compared transport against transport: one livevote each, coalescing off."""
WORKERS_COLUMNS = ["target", "sockets", "rate", "delivered/s", "one process delivered/s", "ratio",
                   "server µs/frame", "one process µs/frame", "µs ratio", "redis share %", "one process redis share %",
                   "client cpu %", "one process client cpu %", "cores other %", "one process cores other %", "limit"]
GC_COLUMNS = ["target", "sockets", "rate", "generation", "collections", "p50 ms", "p99 ms", "max ms",
              "over 10 ms", "total ms"]
GC_PAUSES = re.compile(r'^livevote_gc_pause_seconds_(bucket|sum)\{generation="(\d)"(?:,le="([^"]+)")?\} (\S+)$',
                       re.MULTILINE)
FLOOR_COLUMNS = ["target", "sockets", "rate", "frames/s", "floor frames/s", "server µs/frame", "floor µs/frame",
                 "ratio", "server full µs/frame", "floor full µs/frame", "floor refused", "floor client cpu %"]


@dataclass
class Tally:
    """What the sockets of one target received during one step."""

    updates: int = 0
    expected: int = 0
    """Frames: each update times the sockets on its subject."""
    first_at: float = 0.0
    last_at: float = 0.0
    everyone: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    """Resolved when `expected` updates have arrived, at `last_at`."""
    latencies: list[float] = field(default_factory=list)
    sent_at: dict[int, float] = field(default_factory=dict)
    final_version: int = -1
    final_seen: int = 0
    last_final_at: float = 0.0


# -- one target, one socket count -----------------------------------------------------


def subject_of(version: int, subjects: int) -> int:
    return version % subjects + 1


def watchers(sockets: int, subjects: int) -> dict[int, int]:
    """Sockets per subject, socket i on subject_of(i)."""
    return {subject_of(subject, subjects): len(range(subject, sockets, subjects)) for subject in range(subjects)}


async def open_sockets(target: Target, count: int, subjects: int, tally_ref: list[Tally]) -> list[Stream]:
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[Stream] = []

    def counter(index: int) -> Callable[[bytes], None]:
        sampled = index < SAMPLED

        def on_text(payload: bytes) -> None:
            if not target.is_update(payload):
                return
            tally = tally_ref[0]
            tally.updates += 1
            if tally.updates == 1:
                tally.first_at = time.perf_counter()
            if tally.updates == tally.expected and not tally.everyone.done():
                tally.last_at = time.perf_counter()
                tally.everyone.set_result(None)
            if sampled:
                sent = tally.sent_at.get(target.version_of(payload))
                if sent is not None:
                    tally.latencies.append(time.perf_counter() - sent)
            if target.coalescing and tally.final_version >= 0 and b'"version":%d}' % tally.final_version in payload:
                tally.final_seen += 1
                tally.last_final_at = time.perf_counter()

        return on_text

    async def one(index: int) -> None:
        async with limit:
            clients.append(await target.open_socket(target, counter(index), subject_of(index, subjects)))

    await asyncio.gather(*(one(index) for index in range(count)))
    return clients


class CoreMeter:
    """Between start() and stop(): a server's CPU seconds (/proc, all its processes), ksoftirqd's on
    its cores, Redis's (its main thread, to the ns: a few % of a core, below /proc's 10 ms ticks
    in a short step) and the client's, what anything else took on the server's cores, and the
    wall time."""

    def __init__(self, target: Target, redis_pid: int) -> None:
        self.target = target
        self.pids = target.pids()
        self.redis_pid = redis_pid
        self._at: tuple[float, ...] = (0.0,) * 6

    def _read(self) -> tuple[float, ...]:
        cores = self.target.cores
        return (sum(cpu_seconds(pid) for pid in self.pids), sum(softirq_seconds(core) for core in cores),
                main_thread_seconds(self.redis_pid), cpu_seconds(os.getpid()),
                sum(core_seconds(core) for core in cores), time.monotonic())

    def start(self) -> None:
        self._at = self._read()

    def stop(self) -> dict[str, float]:
        server, softirq, redis_cpu, client, cores, wall = (now - then for now, then in zip(self._read(), self._at,
                                                                                             strict=True))
        shared = redis_cpu + client if CLIENT_CORE in self.target.cores else 0.0
        other = max(round(cores - server - softirq - shared, 2), 0.0)  # /proc counts in 10 ms ticks
        return {"server": server, "softirq": softirq, "redis": redis_cpu, "other": other, "wall": wall}


def main_threads_seconds(target: Target) -> float:
    return sum(main_thread_seconds(pid) for pid in target.pids())


def server_rss_kib(target: Target) -> int:
    return sum(rss_kib(pid) for pid in target.pids())


async def gc_pauses(target: Target) -> dict[str, dict[float, float]]:
    """livevote_gc_pause_seconds from a livevote target's /metrics: per generation, the cumulative
    count per bucket bound, and the sum of the pauses under the key -1 (other targets, and workers,
    whose /metrics is whichever worker answers: nothing)."""
    if not target.name.startswith("livevote") or target.workers:
        return {}
    connection = await HttpConnection.open(target.port)
    _, body = await connection.request("GET", "/metrics")
    await connection.close()
    pauses: dict[str, dict[float, float]] = {}
    for kind, generation, bound, value in GC_PAUSES.findall(body.decode()):
        key = -1.0 if kind == "sum" else float("inf") if bound == "+Inf" else float(bound)
        pauses.setdefault(generation, {})[key] = float(value)
    return pauses


def gc_between(before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]) -> list[dict[str, Any]]:
    """Per generation, the collections between two reads: how many, p50, p99 and the largest pause
    (each the upper bound of its bucket, ms), how many took over 10 ms, and their total (ms)."""
    rows = []
    for generation, buckets in sorted(after.items()):
        then = before.get(generation, {})
        counts = {bound: count - then.get(bound, 0.0) for bound, count in sorted(buckets.items()) if bound >= 0}
        total = counts.get(float("inf"), 0.0)
        if not total:
            continue
        rows.append({"generation": int(generation), "collections": int(total),
                     "p50 ms": 1000 * bucket_bound(counts, 0.5), "p99 ms": 1000 * bucket_bound(counts, 0.99),
                     "max ms": 1000 * bucket_bound(counts, 1.0),
                     "over 10 ms": int(total - counts.get(0.01, 0.0)),
                     "total ms": 1000 * (buckets[-1.0] - then.get(-1.0, 0.0))})
    return rows


async def reach(target: Target, publisher: redis.Redis, sockets: int, subjects: int, repeats: int, version: int,
                tally_ref: list[Tally]) -> tuple[dict[str, Any], int]:
    """ONE update to idle sockets, `repeats` times: from its publish until the first and the LAST
    socket (of its subject) has it (every socket counted, not a sample)."""
    first: list[float] = []
    last: list[float] = []
    missed, client, server, window = 0, 0.0, 0.0, 0.0
    for _ in range(repeats):
        await asyncio.sleep(REACH_SPACING)
        subject = subject_of(version, subjects)
        tally = tally_ref[0] = Tally(expected=watchers(sockets, subjects)[subject])
        client_at, server_at = main_thread_seconds(os.getpid()), main_threads_seconds(target)
        sent = time.perf_counter()
        await target.publish(publisher, version, subject)
        version += 1
        try:
            await asyncio.wait_for(tally.everyone, REACH_TIMEOUT)
        except TimeoutError:
            missed += tally.expected - tally.updates
            continue
        client += main_thread_seconds(os.getpid()) - client_at
        server += main_threads_seconds(target) - server_at
        window += time.perf_counter() - sent
        first.append(1000 * (tally.first_at - sent))
        last.append(1000 * (tally.last_at - sent))
    row = {
        "target": target.name, "sockets": sockets, "updates": repeats, "missed": missed,
        "first p50 ms": statistics.median(first) if first else None,
        "last p50 ms": statistics.median(last) if last else None, "last max ms": max(last, default=None),
        "client cpu %": 100 * client / window if window else None,
        "server cpu %": 100 * server / window if window else None, "last ms": last,
    }
    return row, version


async def settle(tally_ref: list[Tally], quiet: float = 1.0, timeout: float = 30.0) -> None:
    """Until no update has arrived for `quiet` seconds: frames still on their way from a step the
    server could not keep up with would count in the next one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = tally_ref[0].updates
        await asyncio.sleep(quiet)
        if tally_ref[0].updates == seen:
            return


async def run_step(target: Target, publisher: redis.Redis, redis_pid: int, sockets: int, subjects: int, rate: int,
                   seconds: float, first_version: int, tally_ref: list[Tally]) -> tuple[dict[str, Any], int]:
    count = max(int(rate * seconds), 1)
    per_subject = watchers(sockets, subjects)
    expected = sum(per_subject[subject_of(first_version + index, subjects)] for index in range(count))
    tally = tally_ref[0] = Tally(expected=expected)
    server_cpu, client_cpu = CoreMeter(target, redis_pid), CpuMeter(os.getpid())
    collected = await gc_pauses(target)
    server_cpu.start()
    client_cpu.start()
    started = time.perf_counter()
    tally.final_version = first_version + count - 1
    for index in range(count):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0.002:
            await asyncio.sleep(delay)
        version = first_version + index
        tally.sent_at[version] = time.perf_counter()
        await target.publish(publisher, version, subject_of(version, subjects))
    published = time.perf_counter()
    deadline = published + 3.0
    while time.perf_counter() < deadline:
        done = tally.final_seen >= sockets if target.coalescing else tally.updates >= expected
        if done:
            break
        await asyncio.sleep(0.02)
    elapsed = published - started
    core = server_cpu.stop()
    gc = gc_between(collected, await gc_pauses(target))
    frames = max(tally.updates, 1)
    client = client_cpu.stop()
    published_rate = count / max(elapsed, 1e-9)
    row = {
        "target": target.name, "sockets": sockets, "rate": rate, "published/s": published_rate,
        "delivered/s": tally.updates / max(elapsed, 1e-9),
        "delivered %": 100 * tally.updates / expected,
        "lost": max(expected - tally.updates, 0) if not target.coalescing else None,
        "p50 ms": 1000 * percentile(tally.latencies, 0.50),
        "p95 ms": 1000 * percentile(tally.latencies, 0.95),
        "p99 ms": 1000 * percentile(tally.latencies, 0.99),
        "server cpu %": 100 * core["server"] / core["wall"], "server µs/frame": 1e6 * core["server"] / frames,
        "full µs/frame": 1e6 * (core["server"] + core["softirq"]) / frames,
        "cores other %": 100 * core["other"] / core["wall"], "redis cpu %": 100 * core["redis"] / core["wall"],
        "redis share %": 100 * core["redis"] / max(core["server"] + core["redis"], 1e-9),
        "client cpu %": client,
        "limit": "client" if client >= CLIENT_LIMIT else "publish lag" if published_rate < PUBLISH_LAG * rate else None,
        "converge ms": 1000 * (tally.last_final_at - published) if target.coalescing and tally.final_seen >= sockets
        else None,
        "collections": sum(entry["collections"] for entry in gc) if collected else None,
        "gc max ms": max((entry["max ms"] for entry in gc), default=0.0) if collected else None,
        "gc": gc,
    }
    return row, first_version + count


def saturated(row: dict[str, Any]) -> bool:
    if row["lost"] is None:
        return row["converge ms"] is None or row["p99 ms"] >= 1000
    return row["delivered %"] < 99 or row["p99 ms"] >= 1000


def connections_by_pid(pids: list[int], port: int) -> dict[int, int]:
    """Established connections on `port` (the server's side) each of `pids` holds: how the
    workers' shared listening socket spread the sockets."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "01":  # ESTABLISHED
            inodes.add(f"socket:[{fields[9]}]")
    counts = {}
    for pid in pids:
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                held += os.readlink(fd) in inodes
            except OSError:
                continue
        counts[pid] = held
    return counts


async def measure(target: Target, redis_url: str, redis_pid: int, sockets: int, subjects: int, rates: list[int],
                  seconds: float, reach_repeats: int, floor_work: Path | None, half_rate: int = 0) -> dict[str, Any]:
    """Reach (if `reach_repeats`), the rising steps, the step at half the saturation rate (or at
    `half_rate`), and the floor beside the saturation step (if `floor_work`, where its sender logs)."""
    publisher = redis.Redis.from_url(redis_url)
    tally_ref = [Tally()]
    before = server_rss_kib(target)
    collected = await gc_pauses(target)
    clients = await open_sockets(target, sockets, subjects, tally_ref)
    await asyncio.sleep(1.0)
    rss_per_socket = 1024 * (server_rss_kib(target) - before) / sockets  # bytes, as the results have it
    measured: dict[str, Any] = {"rss_per_socket": rss_per_socket}
    if target.workers:
        split = connections_by_pid(target.pids()[1:], target.port)
        measured["split"] = list(split.values())
        print("  sockets per worker: " + ", ".join(f"{held:,} (pid {pid})" for pid, held in split.items()), flush=True)
    version = 1_000_000 * (sockets + 1)
    if reach_repeats:
        measured["reach"], version = await reach(target, publisher, sockets, subjects, reach_repeats, version,
                                                 tally_ref)
        print(table([measured["reach"]], REACH_COLUMNS), flush=True)
    rows: list[dict[str, Any]] = []
    saturation = half = None
    for rate in rates:
        row, version = await run_step(target, publisher, redis_pid, sockets, subjects, rate, seconds, version,
                                      tally_ref)
        row["rss/socket KiB"] = rss_per_socket / 1024
        rows.append(row)
        print(table([row], COLUMNS), flush=True)
        if saturated(row):
            break
        saturation = row
    if not half_rate and saturation is not None:
        half_rate = max(saturation["rate"] // 2, 1)
    if half_rate:
        print(f"  at {half_rate} updates/s (half the saturation rate, or --half):", flush=True)
        await settle(tally_ref)
        half, version = await run_step(target, publisher, redis_pid, sockets, subjects, half_rate, seconds, version,
                                       tally_ref)
        print(table([half], COLUMNS), flush=True)
        if half["gc"]:
            print(table([{**half, **entry} for entry in half["gc"]], GC_COLUMNS), flush=True)
    if collected:
        measured["gc"] = gc_between(collected, await gc_pauses(target))
        print(f"  collections from the first connect to the last step ({sockets} sockets):", flush=True)
        print(table([{"target": target.name, "sockets": sockets, **entry} for entry in measured["gc"]],
                    GC_COLUMNS), flush=True)
    closed = sum(client.closed.done() for client in clients)
    if closed:
        print(f"  {closed} of {sockets} sockets were closed during the steps", flush=True)
    for client in clients:
        client.close()
    await publisher.aclose()
    measured.update(rows=rows, saturation=saturation, half=half, closed=closed)
    if floor_work is not None:
        measured["floor"] = await beside_floor(saturation or rows[0], seconds, floor_work)
        print(table([measured["floor"]], FLOOR_COLUMNS), flush=True)
    return measured


def cpu_ratio(measured: float, baseline: float) -> float | None:
    """None where the baseline read no CPU: a step too light for the 10 ms CPU ticks to time."""
    return measured / baseline if baseline else None


def sse_against_ws(by_target: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per step both transports took (same sockets, same rate): the server's CPU per delivered
    frame over SSE against over WebSocket, with latency and delivery beside it."""
    rows = []
    for sockets, sse in by_target.get(SSE, {}).items():
        ws_steps = {step["rate"]: step for step in by_target.get(WS, {}).get(sockets, {}).get("rows", [])}
        for step in sse["rows"]:
            ws = ws_steps.get(step["rate"])
            if ws is None:
                continue
            rows.append({
                "sockets": sockets, "rate": step["rate"],
                "ws µs/frame": ws["server µs/frame"], "sse µs/frame": step["server µs/frame"],
                "ratio": cpu_ratio(step["server µs/frame"], ws["server µs/frame"]),
                "ws full µs/frame": ws["full µs/frame"], "sse full µs/frame": step["full µs/frame"],
                "full ratio": cpu_ratio(step["full µs/frame"], ws["full µs/frame"]),
                "ws p99 ms": ws["p99 ms"], "sse p99 ms": step["p99 ms"],
                "ws delivered %": ws["delivered %"], "sse delivered %": step["delivered %"],
            })
    return rows


def workers_against_one(by_target: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per step a `livevote-workers*` target and one process (`livevote`) both took (same sockets,
    same rate): delivered frames/s and the server's CPU per frame, N processes against one."""
    rows = []
    one = by_target.get(WS, {})
    for name, by_sockets in by_target.items():
        if not name.startswith("livevote-workers"):
            continue
        for sockets, measured in by_sockets.items():
            steps = {step["rate"]: step for step in one.get(sockets, {}).get("rows", [])}
            for step in measured["rows"]:
                alone = steps.get(step["rate"])
                if alone is None:
                    continue
                rows.append({
                    "target": name, "sockets": sockets, "rate": step["rate"], "delivered/s": step["delivered/s"],
                    "one process delivered/s": alone["delivered/s"],
                    "ratio": step["delivered/s"] / alone["delivered/s"],
                    "server µs/frame": step["server µs/frame"], "one process µs/frame": alone["server µs/frame"],
                    "µs ratio": cpu_ratio(step["server µs/frame"], alone["server µs/frame"]),
                    "redis share %": step["redis share %"], "one process redis share %": alone["redis share %"],
                    "client cpu %": step["client cpu %"], "one process client cpu %": alone["client cpu %"],
                    "cores other %": step["cores other %"], "one process cores other %": alone["cores other %"],
                    "limit": step["limit"] or alone["limit"],
                })
    return rows


async def beside_floor(step: dict[str, Any], seconds: float, work: Path) -> dict[str, Any]:
    """bench/floor.py's loop with the sockets, rounds and delivered frames/s of `step` (the saturation
    step, or the first one if none passed), next to the server's CPU per frame in it."""
    await asyncio.sleep(2.0)  # the server lets go of its sockets first: the floor runs on its core
    sockets, rate = step["sockets"], step["rate"]
    measured = await measure_floor(sockets, max(int(rate * seconds), 20), rates=[step["delivered/s"]], work=work)
    floor = measured["rows"][0]
    return {
        "target": step["target"], "sockets": sockets, "rate": rate, "frames/s": step["delivered/s"],
        "floor frames/s": floor["frames/s"], "server µs/frame": step["server µs/frame"],
        "floor µs/frame": floor["µs/frame"], "ratio": step["server µs/frame"] / floor["µs/frame"],
        "server full µs/frame": step["full µs/frame"], "floor full µs/frame": floor["full µs/frame"],
        "full ratio": step["full µs/frame"] / floor["full µs/frame"], "floor refused": floor["refused sends"],
        "floor client cpu %": floor["client cpu %"], "floor": floor,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", default="200,1000")
    parser.add_argument("--rates", default="50,100,200,500,1000,2000,5000")
    parser.add_argument("--step", type=float, default=3.0, help="seconds of publishing per rate")
    parser.add_argument("--targets", default="livevote,livevote-coalesced,socketio,websockets")
    parser.add_argument("--reach", type=int, nargs="?", const=10, default=0, metavar="N",
                        help="first time N single updates until the last idle socket has them (N: 10)")
    parser.add_argument("--floor", action="store_true", help="run bench/floor.py beside each saturation step")
    parser.add_argument("--subjects", type=int, default=1, metavar="K",
                        help="spread the sockets and the updates over K subjects (at most the seed's 5)")
    parser.add_argument("--half", type=int, default=0, metavar="RATE",
                        help="the last step at this rate, not half the saturation rate: runs compared at one rate")
    options = parser.parse_args()
    work, redis_process, redis_url = await prepare("fanout")
    results: dict[str, Any] = {"targets": {}, "subjects": options.subjects}
    targets: list[Target] = []
    try:
        for name in options.targets.split(","):
            target = make_target(work, redis_url, name, options.subjects)
            targets.append(target)
            await start(target, work)
            await wait_for_port(target.port)
            if target.name.startswith("livevote"):
                target.token = await sign_in(target.port)
            for sockets in map(int, options.sockets.split(",")):
                print(f"\n{target.name}, {sockets} sockets", flush=True)
                rates = list(map(int, options.rates.split(",")))
                try:
                    measured = await measure(target, redis_url, redis_process.pid, sockets, options.subjects, rates,
                                             options.step, options.reach, work if options.floor else None,
                                             options.half)
                except (OSError, TimeoutError) as error:
                    print(f"  {target.name} could not take {sockets} sockets: {error!r}", flush=True)
                    measured = {"rows": [], "saturation": None, "rss_per_socket": float("nan"), "error": repr(error)}
                results["targets"].setdefault(target.name, {})[sockets] = measured
            target.process.stop()
    finally:
        for target in targets:
            target.process.stop()
        redis_process.stop()
    print("\nSaturation (highest rate with >= 99 % delivered and p99 < 1 s):")
    summary = []
    for name, by_sockets in results["targets"].items():
        for sockets, measured in by_sockets.items():
            best, half = measured["saturation"] or {}, measured.get("half") or {}
            summary.append({"target": name, "sockets": sockets, "rate": best.get("rate"),
                            "delivered/s": best.get("delivered/s"), "p99 ms": best.get("p99 ms"),
                            "half rate": half.get("rate"), "half p99 ms": half.get("p99 ms"),
                            "half lost": half.get("lost"), "half gc max ms": half.get("gc max ms"),
                            "rss/socket KiB": measured["rss_per_socket"] / 1024})
    print(table(summary, ["target", "sockets", "rate", "delivered/s", "p99 ms", "half rate", "half p99 ms",
                          "half lost", "half gc max ms", "rss/socket KiB"]))
    results["summary"] = summary
    measurements = [measured for by_sockets in results["targets"].values() for measured in by_sockets.values()]
    if options.reach:
        print("\nOne update until the last idle socket has it (ms from its publish; CPU % over those windows):")
        print(table([measured["reach"] for measured in measurements if "reach" in measured], REACH_COLUMNS))
    if SSE in results["targets"] and WS in results["targets"]:
        results["sse_against_ws"] = sse_against_ws(results["targets"])
        print("\nServer CPU per delivered frame, SSE streams against WebSockets at the same sockets and rate"
              " (full: + ksoftirqd/0):")
        print(table(results["sse_against_ws"], TRANSPORTS_COLUMNS))
    if any(name.startswith("livevote-workers") for name in results["targets"]) and WS in results["targets"]:
        results["workers_against_one"] = workers_against_one(results["targets"])
        print(f"\nN processes against one, same sockets and rate, {options.subjects} subject(s) (CPU: all workers;"
              " limit: the client's, in either):")
        print(table(results["workers_against_one"], WORKERS_COLUMNS))
        for name, by_sockets in results["targets"].items():
            for sockets, measured in by_sockets.items():
                if "split" in measured:
                    print(f"  {name}, {sockets} sockets: sockets per worker {measured['split']}")
    if options.floor:
        print("\nCPU per delivered frame against the send() floor at the same sockets and frames/s"
              " (process CPU; full: + ksoftirqd/0):")
        print(table([measured["floor"] for measured in measurements if "floor" in measured], FLOOR_COLUMNS))
    print(f"\nwritten to {write_result('fanout', results)}")


if __name__ == "__main__":
    asyncio.run(main())
