"""The send() floor: what one core pays to hand a prebuilt frame to N sockets from Python.

    python bench/floor.py [--sockets 1000,5000,10000] [--frames 1000000] [--repeat 3] [--rates max,100000]

A sender process on core 0 (`python bench/floor.py --serve`) accepts N loopback
TCP connections (non-blocking, TCP_NODELAY) and, round after round, writes the
same ~120-byte WebSocket text frame (a livevote `votes` message) to every one
with a plain `sock.send()` loop; what the kernel does not take is kept per
socket and flushed later, in order, as a server would. No event loop, no
framing, no JSON: the floor under any Python fan-out. This process (core 1)
drains the receivers, counting bytes only, and checks every frame arrived.

Per run: the sender's CPU seconds (/proc, user + system, as bench/fanout.py
reads a server's) per delivered frame; ksoftirqd/0's time per frame ("softirq":
the loopback delivery the kernel defers to that thread, charged to no server)
and the two together ("full"); all of core 0 per frame ("core0", anything else
on the core included: the check on "full"); frames/s, sends the kernel refused
(EAGAIN or partial), and the client's CPU. Rates: `max` sends rounds back to back; a
number paces rounds to that many frames per second (every socket woken each
round, as a live server at that rate would).

`measure_floor(sockets, rounds)` is importable, e.g. for bench/fanout.py to
put the floor beside its own figures in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import select
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CLIENT_CORE, SERVER_CORE, CpuMeter, Process, pin_client, raise_open_files, table, write_result
from tests.harness.ports import free_port
from tests.harness.procfs import core_seconds, cpu_seconds, softirq_seconds

FRAME_SIZE = 120
CONNECT_CONCURRENCY = 500
COLUMNS = ["sockets", "rate", "rounds", "frames", "frames/s", "µs/frame", "µs/frame min", "µs/frame max",
           "softirq µs/frame", "full µs/frame", "core0 µs/frame", "refused sends", "server cpu %", "client cpu %"]


def floor_frame(size: int = FRAME_SIZE) -> bytes:
    """A livevote `votes` broadcast as the hub frames it (2-byte header, unmasked text), padded to `size`."""
    update = {"no": 12, "good_count": 1234, "bad_count": 567, "version": 178901}
    body = orjson.dumps({"type": "votes", "channel": "subject:1", "updates": [update]})
    body = body[:-3] + b" " * (size - 2 - len(body)) + body[-3:]  # JSON whitespace before the closing "}]}"
    assert len(body) < 126 and len(body) + 2 == size, len(body)
    orjson.loads(body)
    return bytes([0x81, len(body)]) + body


# -- the sender (core 0) ----------------------------------------------------------------


def rusage_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def send_rounds(
    socks: list[socket.socket], frame: bytes, rounds: int, frames_per_second: float | None
) -> dict[str, Any]:
    """The loop under test. A socket whose kernel buffer is full keeps its unsent bytes, gets no
    direct send until they are flushed (order is kept), and is retried after each round."""
    pending: dict[socket.socket, bytearray] = {}
    refused = 0
    size = len(frame)
    round_seconds = len(socks) / frames_per_second if frames_per_second else 0.0
    cpu0, wall0 = rusage_seconds(), time.perf_counter()
    for index in range(rounds):
        for sock in socks:
            if pending and sock in pending:
                pending[sock] += frame
                continue
            try:
                sent = sock.send(frame)
            except BlockingIOError:
                sent = 0
            if sent < size:
                refused += 1
                pending[sock] = bytearray(frame[sent:])
        if pending:
            _flush(pending)
        if round_seconds:
            delay = wall0 + (index + 1) * round_seconds - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    poller = select.poll()
    while pending:
        for sock in pending:
            poller.register(sock, select.POLLOUT)
        poller.poll(1000)
        for sock in list(pending):
            poller.unregister(sock)
        _flush(pending)
    return {"cpu s": rusage_seconds() - cpu0, "wall s": time.perf_counter() - wall0, "refused": refused}


def _flush(pending: dict[socket.socket, bytearray]) -> None:
    for sock, data in list(pending.items()):
        try:
            sent = sock.send(data)
        except BlockingIOError:
            continue
        if sent == len(data):
            del pending[sock]
        else:
            del data[:sent]


def serve(port: int) -> None:
    """Control on the first connection, one JSON line per command: accept N, run, close, quit."""
    raise_open_files()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    control, _ = listener.accept()
    commands = control.makefile("rb")
    socks: list[socket.socket] = []
    frame = floor_frame()
    for line in commands:
        command = json.loads(line)
        if "accept" in command:
            while len(socks) < command["accept"]:
                sock, _ = listener.accept()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                socks.append(sock)
            reply: dict[str, Any] = {"accepted": len(socks), "frame": len(frame)}
        elif "run" in command:
            reply = send_rounds(socks, frame, command["run"], command.get("rate"))
        elif "close" in command:
            for sock in socks:
                sock.close()
            socks = []
            reply = {"closed": True}
        else:
            break
        control.sendall(json.dumps(reply).encode() + b"\n")
    control.close()


# -- the client (core 1) ----------------------------------------------------------------


class Drain(asyncio.Protocol):
    """Reads and counts bytes; nothing else."""

    received = 0

    def data_received(self, data: bytes) -> None:
        Drain.received += len(data)


async def _control_connection(port: int, timeout: float = 30.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Not tests.harness.ports.wait_for_port: the sender takes its first connection as the control one."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command: dict[str, Any],
               timeout: float = 600.0) -> dict[str, Any]:
    writer.write(json.dumps(command).encode() + b"\n")
    await writer.drain()
    return dict(json.loads(await asyncio.wait_for(reader.readline(), timeout)))


def default_rounds(sockets: int, frames: int = 1_000_000) -> int:
    return max(frames // sockets, 20)


async def measure_floor(sockets: int, rounds: int | None = None, repeat: int = 3,
                        rates: list[float | None] | None = None, work: Path | None = None) -> dict[str, Any]:
    """Start a sender on SERVER_CORE, connect `sockets` receivers from this process (which should be
    on CLIENT_CORE: bench.common.prepare or pin_client does that), then per rate (None = back to
    back) `repeat` runs of `rounds` rounds. Returns one row per rate: medians over the runs."""
    rounds = rounds or default_rounds(sockets)
    rates = rates or [None]
    work = work or Path(tempfile.mkdtemp(prefix="livevote-floor-"))
    port = free_port()
    sender = Process(f"floor-{sockets}", [sys.executable, "bench/floor.py", "--serve", "--port", str(port)])
    sender.start(work)
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    rows: list[dict[str, Any]] = []
    try:
        reader, writer = await _control_connection(port)
        writer.write(json.dumps({"accept": sockets}).encode() + b"\n")
        await writer.drain()
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one() -> None:
            async with limit:
                transport, _ = await loop.create_connection(Drain, "127.0.0.1", port)
                transports.append(transport)

        await asyncio.gather(*(one() for _ in range(sockets)))
        accepted = dict(json.loads(await asyncio.wait_for(reader.readline(), 120)))
        assert accepted["accepted"] == sockets, accepted
        frame_size = int(accepted["frame"])
        await _ask(reader, writer, {"run": 5})  # warm-up: every socket's buffers and the caches
        await _until_received(sockets * 5 * frame_size)
        for rate in rates:
            runs = [await _one_run(sender.pid, reader, writer, sockets, rounds, rate, frame_size)
                    for _ in range(repeat)]
            per_frame = [run["µs/frame"] for run in runs]
            row = {
                "sockets": sockets, "rate": "max" if rate is None else f"{rate:,.0f}/s", "rounds": rounds,
                "frames": sockets * rounds, "runs": runs,
                **{key: statistics.median(run[key] for run in runs)
                   for key in ("frames/s", "µs/frame", "softirq µs/frame", "full µs/frame", "core0 µs/frame",
                               "server cpu %", "client cpu %", "refused sends")},
                "µs/frame min": min(per_frame), "µs/frame max": max(per_frame), "frame bytes": frame_size,
            }
            rows.append(row)
        await _ask(reader, writer, {"close": True})
        writer.write(b'{"quit": true}\n')
        await writer.drain()
        writer.close()
    finally:
        for transport in transports:
            transport.close()
        sender.stop()
    return {"sockets": sockets, "rows": rows}


async def _until_received(total: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while Drain.received < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"received {Drain.received:,} of {total:,} bytes")
        await asyncio.sleep(0.01)


async def _one_run(pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sockets: int, rounds: int,
                   rate: float | None, frame_size: int) -> dict[str, Any]:
    Drain.received = 0
    frames = sockets * rounds
    client = CpuMeter(os.getpid())
    server_cpu, softirq, core0 = cpu_seconds(pid), softirq_seconds(SERVER_CORE), core_seconds(SERVER_CORE)
    began = time.perf_counter()
    client.start()
    sent = await _ask(reader, writer, {"run": rounds, "rate": rate})
    server_cpu, softirq = cpu_seconds(pid) - server_cpu, softirq_seconds(SERVER_CORE) - softirq
    core0 = core_seconds(SERVER_CORE) - core0
    await _until_received(frames * frame_size)
    wall = time.perf_counter() - began
    return {
        "frames/s": frames / wall, "µs/frame": 1e6 * server_cpu / frames,
        "softirq µs/frame": 1e6 * softirq / frames, "full µs/frame": 1e6 * (server_cpu + softirq) / frames,
        "core0 µs/frame": 1e6 * core0 / frames,
        "sender rusage µs/frame": 1e6 * sent["cpu s"] / frames, "sender wall s": sent["wall s"],
        "refused sends": sent["refused"], "server cpu %": 100 * server_cpu / sent["wall s"],
        "client cpu %": client.stop(),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", default="1000,5000,10000")
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames per run (rounds = frames / sockets)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per run (overrides --frames)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per rate; the table shows their median")
    parser.add_argument("--rates", default="max", help="frames/s per run, or max (back to back), comma-separated")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.port)
        return
    raise_open_files()
    pin_client()
    rates = [None if rate == "max" else float(rate) for rate in options.rates.split(",")]
    results: dict[str, Any] = {"server core": SERVER_CORE, "client core": CLIENT_CORE, "by sockets": {}}
    rows: list[dict[str, Any]] = []
    for sockets in map(int, options.sockets.split(",")):
        rounds = options.rounds or default_rounds(sockets, options.frames)
        measured = await measure_floor(sockets, rounds, options.repeat, rates)
        results["by sockets"][sockets] = measured
        rows += measured["rows"]
        print(table(measured["rows"], COLUMNS), flush=True)
    print()
    print(table(rows, COLUMNS))
    results["rows"] = rows
    print(f"\nwritten to {write_result('floor', results)}")


if __name__ == "__main__":
    asyncio.run(main())
