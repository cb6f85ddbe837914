"""Where an idle socket's memory goes: tracemalloc by allocation site, and the objects of one socket.

    python bench/memory.py [--sockets 2000] [--frames 25] [--top 15]

livevote runs unchanged (`server.main`) under `python -X tracemalloc=N bench/memory_probe.py`,
which only installs a SIGUSR1 handler before importing server.py: on each signal the
server process (at a point between two bytecodes of its event loop) collects
garbage, dumps a tracemalloc snapshot, and walks the objects of two open sockets.

This process (core 1) opens a few warm-up sockets (lazy imports, first-channel
state), signals (snapshot A), opens `--sockets` more authenticated, subscribed
sockets, signals again (snapshot B) and reads:
1. B - A per allocation site, divided by the sockets opened: the top sites in
   bytes per socket, each with the project/Tornado frames that led to it;
2. one socket's objects: everything reachable from one LiveSocket handler
   (gc.get_referents, stopping at types, modules, functions and the
   application-wide objects) that is not also reachable from a second socket's
   handler, sys.getsizeof each, grouped by the attribute path that reaches it
   first; plus per-socket objects that point at the socket but are held
   elsewhere (TokenClock entries, IOLoop handler tuples).
RSS per socket is printed for scale, inflated by tracemalloc's own bookkeeping:
bench/idle.py and bench/connect.py measure it without tracemalloc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Process, livevote_process, pin_client, raise_open_files, table, write_result
from bench.httpload import sign_in
from bench.idle import CHEAP_ARGON2, code_version, open_all
from bench.wsload import open_subscribed
from tests.harness.ports import free_port, wait_for_port
from tests.harness.procfs import rss_kib


def site_table(
    before_path: Path, after_path: Path, sockets: int, top: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """B - A by allocation site (innermost frame), per socket; each site's main call path."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "*bench/memory_probe.py"),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"), tracemalloc.Filter(False, "<unknown>")]
    before = tracemalloc.Snapshot.load(str(before_path)).filter_traces(ignore)
    after = tracemalloc.Snapshot.load(str(after_path)).filter_traces(ignore)
    diffs = after.compare_to(before, "traceback")
    sites: dict[str, dict[str, Any]] = {}
    for diff in diffs:
        if diff.size_diff == 0:
            continue
        frame = diff.traceback[-1]  # Traceback runs from the oldest frame to the allocation
        site = f"{_short(frame.filename)}:{frame.lineno}"
        entry = sites.setdefault(site, {"bytes": 0, "blocks": 0, "paths": defaultdict(int), "code": _line(frame)})
        entry["bytes"] += diff.size_diff
        entry["blocks"] += diff.count_diff
        entry["paths"][_call_path(diff.traceback)] += diff.size_diff
    total = sum(entry["bytes"] for entry in sites.values())
    rows = []
    for site, entry in sorted(sites.items(), key=lambda item: -item[1]["bytes"])[:top]:
        path, path_bytes = max(entry["paths"].items(), key=lambda item: item[1])
        rows.append({
            "site": site, "KiB/socket": entry["bytes"] / sockets / 1024, "blocks/socket": entry["blocks"] / sockets,
            "% of traced": 100 * entry["bytes"] / total if total else None, "code": entry["code"],
            "via (largest share)": path, "via share %": 100 * path_bytes / entry["bytes"] if entry["bytes"] else None,
        })
    by_file: dict[str, int] = defaultdict(int)
    for diff in after.compare_to(before, "filename"):
        by_file[_short(diff.traceback[-1].filename)] += diff.size_diff
    summary = {
        "traced KiB/socket": total / sockets / 1024,
        "by file KiB/socket": {name: size / sockets / 1024 for name, size in
                               sorted(by_file.items(), key=lambda item: -item[1])[:15]},
    }
    return rows, summary


def _ellipsis(path: str, width: int = 150) -> str:
    return path if len(path) <= width else path[:40] + " ... " + path[-(width - 45):]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.replace(str(ROOT) + "/", "")


def _line(frame: tracemalloc.Frame) -> str:
    import linecache

    return linecache.getline(frame.filename, frame.lineno).strip()[:80]


def _call_path(traceback: tracemalloc.Traceback, frames: int = 3) -> str:
    """The nearest frames above the innermost one in livevote, Tornado or websockets code."""
    chosen = []
    for frame in reversed(list(traceback)[:-1]):
        name = _short(frame.filename)
        if name.startswith(("handlers/", "services/", "tornado/", "server.py")):
            chosen.append(f"{name}:{frame.lineno}")
            if len(chosen) >= frames:
                break
    return " <- ".join(chosen)


async def signal_and_wait(pid: int, out: Path, number: int, timeout: float = 300.0) -> None:
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not (out / f"done-{number}").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no snapshot {number} from the server")
        await asyncio.sleep(0.2)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=20, help="sockets opened before the first snapshot")
    parser.add_argument("--frames", type=int, default=25, help="tracemalloc frames per allocation")
    parser.add_argument("--top", type=int, default=15)
    options = parser.parse_args()
    raise_open_files()
    pin_client()
    print(f"livevote code: {code_version()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="livevote-memory-"))
    out = work / "snapshots"
    out.mkdir()
    port = free_port()
    plain = livevote_process("memory-livevote", work, port, None, **CHEAP_ARGON2)
    process = Process(plain.name, [sys.executable, "-X", f"tracemalloc={options.frames}", "bench/memory_probe.py",
                                   str(out), "--", *plain.args[2:]], plain.env).start(work)
    try:
        await wait_for_port(port, timeout=120)
        token = await sign_in(port)

        class Opener:
            name = "livevote"

            @staticmethod
            async def open_socket() -> Any:
                return await open_subscribed(port, token)

        warm = await open_all(Opener, options.warmup)  # type: ignore[arg-type]
        await asyncio.sleep(1.0)
        rss_before = rss_kib(process.pid)
        await signal_and_wait(process.pid, out, 1)
        clients = await open_all(Opener, options.sockets)  # type: ignore[arg-type]
        await asyncio.sleep(2.0)
        rss_after = rss_kib(process.pid)
        await signal_and_wait(process.pid, out, 2)
        for client in warm + clients:
            client.close()
    finally:
        process.stop()
    rows, summary = site_table(out / "snapshot-1.pickle", out / "snapshot-2.pickle", options.sockets, options.top)
    objects = json.loads((out / "objects-2.json").read_text())
    gc_before = json.loads((out / "objects-1.json").read_text())["gc"]
    gc_after = objects["gc"]
    summary["RSS/socket KiB (with tracemalloc)"] = (rss_after - rss_before) / options.sockets
    summary["gc"] = {
        "tracked objects/socket": (gc_after["tracked objects"] - gc_before["tracked objects"]) / options.sockets,
        "tracked objects before, after": [gc_before["tracked objects"], gc_after["tracked objects"]],
        "full collection ms before, after": [1000 * gc_before["full collection s"],
                                             1000 * gc_after["full collection s"]],
        "full collection µs/socket": 1e6 * (gc_after["full collection s"] - gc_before["full collection s"])
        / options.sockets,
    }
    print(f"\nTop {options.top} allocation sites, {options.sockets} sockets opened between the snapshots:")
    print(table(rows, ["site", "KiB/socket", "blocks/socket", "% of traced", "code"]))
    print("\nwhere each came from (largest share of its bytes):")
    for row in rows:
        print(f"  {row['site']}: {row['via (largest share)'] or '-'} ({row['via share %']:.0f} %)")
    print(f"\ntraced: {summary['traced KiB/socket']:.2f} KiB/socket; RSS with tracemalloc on: "
          f"{summary['RSS/socket KiB (with tracemalloc)']:.2f} KiB/socket")
    print(table([{"file": name, "KiB/socket": size} for name, size in summary["by file KiB/socket"].items()],
                ["file", "KiB/socket"]))
    gc_summary = summary["gc"]
    print(f"\nGC: {gc_summary['tracked objects/socket']:.1f} tracked objects per socket that a full collection"
          " walks (not the frozen); it took "
          f"{gc_summary['full collection ms before, after'][0]:.1f} ms before, "
          f"{gc_summary['full collection ms before, after'][1]:.1f} ms after "
          f"({gc_summary['full collection µs/socket']:.1f} µs per socket, tracemalloc on)")
    if "error" in objects:
        print(f"\nobject walk failed: {objects['error']}")
    else:
        print(f"\nOne socket's objects (reachable from its handler, not from another socket's): "
              f"{objects['reachable objects']} objects, {objects['reachable bytes'] / 1024:.2f} KiB (sys.getsizeof)")
        path_rows = [{"owner (first path)": path, "bytes": entry["bytes"], "objects": entry["objects"],
                      "largest types": ", ".join(f"{kind} {size}" for kind, size in
                                                 sorted(entry["types"].items(), key=lambda i: -i[1])[:3])}
                     for path, entry in list(objects["by path"].items())[:25]]
        print(table(path_rows, ["owner (first path)", "bytes", "objects", "largest types"]))
        print()
        print(table([{"type": kind, **value} for kind, value in list(objects["by type"].items())[:20]],
                    ["type", "objects", "bytes"]))
        print()
        print(table(objects["named"], ["object", "type", "getsizeof", "__dict__ getsizeof", "attributes"]))
        print("\nlargest single objects (first path from the handler; <coroutine> steps are frame locals):")
        print(table([{**row, "path": _ellipsis(row["path"])} for row in objects["largest"][:25]],
                    ["bytes", "type", "path"]))
        print("\nheld elsewhere, pointing at the socket:")
        print(table(objects["held elsewhere"], ["object", "count", "bytes"]))
    result = {"code": code_version(), "sockets": options.sockets, "frames": options.frames, "sites": rows, **summary,
              "objects": objects}
    print(f"\nwritten to {write_result('memory', result)}")


if __name__ == "__main__":
    asyncio.run(main())
