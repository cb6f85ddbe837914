"""Where an idle socket's memory goes: tracemalloc by allocation site, and the objects of one socket.

    python bench/memory.py [--sockets 2000] [--frames 25] [--top 15]

livevote runs unchanged (`server.main`) under `python -X tracemalloc=N bench/memory.py --serve`,
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
import gc
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# -- in the server process ------------------------------------------------------------


def serve(out: Path, argv: list[str]) -> int:
    """Run server.main(argv) with a SIGUSR1 handler that writes snapshot-N.pickle and objects-N.json."""
    taken = [0]

    def on_signal(_signum: int, _frame: Any) -> None:
        taken[0] += 1
        number = taken[0]
        began = time.perf_counter()
        gc.collect()
        collect_seconds = time.perf_counter() - began
        tracked = len(gc.get_objects())
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(str(out / f"snapshot-{number}.pickle"))
        del snapshot
        try:
            objects: dict[str, Any] = walk_sockets()
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            objects = {"error": repr(exc)}
        objects["gc"] = {"full collection s": collect_seconds, "tracked objects": tracked,
                         "collections": {f"gen{n}": stats["collections"] for n, stats in enumerate(gc.get_stats())}}
        (out / f"objects-{number}.json").write_text(json.dumps(objects, indent=1, default=str))
        (out / f"done-{number}").write_text("")

    signal.signal(signal.SIGUSR1, on_signal)
    import server

    return int(server.main(argv))


SKIP_TYPES: tuple[type, ...] = (
    type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType,
    types.MethodDescriptorType, types.WrapperDescriptorType, types.GetSetDescriptorType,
    types.MemberDescriptorType, types.MappingProxyType, property, staticmethod, classmethod,
)


def walk_sockets() -> dict[str, Any]:
    from handlers.live import LiveSocket

    handlers = [obj for obj in gc.get_objects() if type(obj) is LiveSocket and not obj.closed
                and obj.ws_connection is not None and obj.peer is not None]
    if len(handlers) < 2:
        return {"error": f"{len(handlers)} open sockets"}
    first, second = handlers[len(handlers) // 2], handlers[len(handlers) // 2 + 1]
    stop = {id(obj) for obj in _shared_roots(first)}
    other = _reach(second, stop)
    mine = _reach(first, stop, exclude=other)
    by_path: dict[str, dict[str, Any]] = {}
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    total = 0
    for path, obj in mine.values():
        size = sys.getsizeof(obj)
        total += size
        kind = type(obj).__qualname__
        by_type[kind][0] += 1
        by_type[kind][1] += size
        group = _group(path)
        entry = by_path.setdefault(group, {"bytes": 0, "objects": 0, "types": defaultdict(int)})
        entry["bytes"] += size
        entry["objects"] += 1
        entry["types"][kind] += size
    held_elsewhere = _held_elsewhere(first, mine, other)
    largest = sorted(((sys.getsizeof(obj), path, type(obj).__qualname__) for path, obj in mine.values()), reverse=True)
    return {
        "largest": [{"bytes": size, "type": kind, "path": path} for size, path, kind in largest[:40]],
        "sockets open": len(handlers),
        "reachable bytes": total,
        "reachable objects": len(mine),
        "by path": dict(sorted(by_path.items(), key=lambda item: -item[1]["bytes"])),
        "by type": {kind: {"objects": n, "bytes": b} for kind, (n, b) in sorted(by_type.items(), key=lambda i: -i[1][1])},
        "named": _named_objects(first),
        "held elsewhere": held_elsewhere,
    }


def _shared_roots(handler: Any) -> list[Any]:
    """Objects every socket points at: never walked into."""
    import asyncio as aio

    from tornado.ioloop import IOLoop

    services = handler.services
    roots = [handler.application, handler.application.settings, services, IOLoop.current(),
             aio.get_event_loop_policy(), sys.modules]
    try:
        roots.append(aio.get_running_loop())
    except RuntimeError:
        roots.append(IOLoop.current().asyncio_loop)  # type: ignore[attr-defined]
    roots += [value for value in vars(services).values()]
    for value in vars(services).values():
        if hasattr(value, "__dict__"):
            roots += list(vars(value).values())
    return [root for root in roots if root is not None and not isinstance(root, (int, float, str, bool))]


def _skipped(obj: Any) -> bool:
    """Shared by nature: types, modules, functions, descriptors. A builtin method bound to an
    object (say a Task's wakeup in a Future's callbacks) is not: it leads to that object."""
    if isinstance(obj, types.BuiltinMethodType):
        owner = getattr(obj, "__self__", None)
        return owner is None or isinstance(owner, (types.ModuleType, type))
    return isinstance(obj, SKIP_TYPES)


def _children(obj: Any) -> list[tuple[str, Any]]:
    """(name, child) pairs: attributes by name where there are names, else gc referents."""
    named: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            named.append((f"[{key!r}]" if isinstance(key, (str, int)) else "[key]", value))
            named.append(("<key>", key))
        return named
    if isinstance(obj, (list, tuple, set, frozenset, deque_type())):
        items: list[Any] = list(obj)  # type: ignore[call-overload]
        return [(f"[{index}]", value) for index, value in enumerate(items)]
    if isinstance(obj, (types.MethodType, types.BuiltinMethodType)):
        return [("__self__", obj.__self__)]  # a bound method: its function is shared, its object may not be
    seen: set[int] = set()
    instance_dict = getattr(obj, "__dict__", None) if not isinstance(obj, SKIP_TYPES) else None
    if isinstance(instance_dict, dict):
        named.append((".__dict__", instance_dict))
        for key, value in instance_dict.items():
            named.append((f".{key}", value))
            seen.add(id(value))
        seen.add(id(instance_dict))
    for klass in type(obj).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if slot in ("__dict__", "__weakref__"):
                continue
            try:
                value = getattr(obj, slot)
            except AttributeError:
                continue
            named.append((f".{slot}", value))
            seen.add(id(value))
    for ref in gc.get_referents(obj):
        if id(ref) not in seen and ref is not type(obj):
            named.append((f"<{type(ref).__name__}>", ref))
    return named


def deque_type() -> type:
    from collections import deque

    return deque


def _reach(root: Any, stop: set[int], exclude: dict[int, tuple[str, Any]] | None = None) -> dict[int, tuple[str, Any]]:
    """Breadth first from root; {id: (first path, object)}."""
    found: dict[int, tuple[str, Any]] = {id(root): ("handler", root)}
    frontier = [("handler", root)]
    while frontier:
        following = []
        for path, obj in frontier:
            for name, child in _children(obj):
                key = id(child)
                if key in found or key in stop or _skipped(child) or child is None:
                    continue
                if exclude is not None and key in exclude:
                    continue
                if isinstance(child, (bool, int)) and -5 <= int(child) <= 256:
                    continue
                found[key] = (path + name if not name.startswith("<") else f"{path}{name}", child)
                following.append(found[key])
        frontier = following
    return found


def _group(path: str) -> str:
    """Attribute paths to a few owners: handler.ws_connection.stream.<...> -> handler.ws_connection.stream."""
    parts, current = [], ""
    for char in path:
        if char in ".[<" and current:
            parts.append(current)
            current = ""
        current += char
    parts.append(current)
    keep: list[str] = []
    for part in parts:
        if part.startswith(("[", "<")) or part == ".__dict__" or len(keep) >= 4:
            break
        keep.append(part)
    return "".join(keep)


def _named_objects(handler: Any) -> list[dict[str, Any]]:
    """The socket's main objects one by one: own size and, for objects with a __dict__, its size."""
    connection = handler.ws_connection
    stream = connection.stream if connection is not None else None
    candidates = [
        ("LiveSocket handler", handler),
        ("HTTPServerRequest handler.request", handler.request),
        ("response headers handler._headers", getattr(handler, "_headers", None)),
        ("handler.ui (ObjectDict)", getattr(handler, "ui", None)),
        ("handler.ui['_tt_modules']", (getattr(handler, "ui", None) or {}).get("_tt_modules")),
        ("TokenBucket handler._bucket", handler._bucket),
        ("claims", handler.claims),
        ("Peer", handler.peer),
        ("Peer.channels set", handler.peer.channels if handler.peer else None),
        ("WebSocketProtocol13", connection),
        ("_WebSocketParams", getattr(connection, "params", None)),
        ("ping task", getattr(connection, "_ping_coroutine", None)),
        ("ping coroutine", getattr(getattr(connection, "_ping_coroutine", None), "get_coro", lambda: None)()),
        ("compressor", getattr(connection, "_compressor", None)),
        ("decompressor", getattr(connection, "_decompressor", None)),
        ("IOStream", stream),
        ("IOStream._read_buffer", getattr(stream, "_read_buffer", None)),
        ("IOStream._write_buffer", getattr(stream, "_write_buffer", None)),
        ("IOStream._read_future", getattr(stream, "_read_future", None)),
        ("socket.socket", getattr(stream, "socket", None)),
    ]
    rows = []
    for name, obj in candidates:
        if obj is None:
            continue
        row: dict[str, Any] = {"object": name, "type": type(obj).__qualname__, "getsizeof": sys.getsizeof(obj)}
        instance_dict = getattr(obj, "__dict__", None)
        if isinstance(instance_dict, dict):
            row["__dict__ getsizeof"] = sys.getsizeof(instance_dict)
            row["attributes"] = len(instance_dict)
        rows.append(row)
    return rows


def _held_elsewhere(handler: Any, mine: dict[int, tuple[str, Any]], other: dict[int, tuple[str, Any]]) -> list[dict[str, Any]]:
    """Small objects outside the socket's reach that point into it (one level): per-socket entries
    kept by shared structures, e.g. the TokenClock heap's tuples or the IOLoop's handler tuples."""
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    frame_types = (types.FrameType,)
    roots = [handler, handler.peer, handler.ws_connection, getattr(handler.ws_connection, "stream", None)]
    stream = getattr(handler.ws_connection, "stream", None)
    if stream is not None:
        roots.append(stream.socket)
    counted: set[int] = set(mine) | set(other)
    for root in roots:
        if root is None:
            continue
        for referrer in gc.get_referrers(root):
            key = id(referrer)
            if key in counted or isinstance(referrer, frame_types) or referrer is roots:
                continue
            if isinstance(referrer, (list, dict, set)) and len(referrer) > 16:
                continue  # a shared container (a channel's peers, the clock's heap): its slot, not an object
            counted.add(key)
            size = sys.getsizeof(referrer)
            for child in gc.get_referents(referrer):
                if id(child) not in counted and isinstance(child, (float, int, str, bytes, tuple)) and \
                        sys.getrefcount(child) <= 3:
                    size += sys.getsizeof(child)
                    counted.add(id(child))
            label = f"{type(referrer).__qualname__} -> {type(root).__qualname__}"
            rows[label][0] += 1
            rows[label][1] += size
    return [{"object": label, "count": n, "bytes": b} for label, (n, b) in sorted(rows.items(), key=lambda i: -i[1][1])]


# -- in the bench process ----------------------------------------------------------------


def site_table(before_path: Path, after_path: Path, sockets: int, top: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """B - A by allocation site (innermost frame), per socket; each site's main call path."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "*bench/memory.py"),
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
    from bench.common import Process, livevote_process, pin_client, raise_open_files, table, write_result
    from bench.httpload import sign_in
    from bench.idle import CHEAP_ARGON2, code_version, open_all
    from tests.harness.ports import free_port, wait_for_port
    from tests.harness.procfs import rss_kib

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
    process = Process(plain.name, [sys.executable, "-X", f"tracemalloc={options.frames}", "bench/memory.py",
                                   "--serve", str(out), "--", *plain.args[2:]], plain.env).start(work)
    try:
        await wait_for_port(port, timeout=120)
        token = await sign_in(port)

        class Opener:
            name = "livevote"

            @staticmethod
            async def open_socket() -> Any:
                from bench.wsload import open_subscribed

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
    print(f"\nGC: {gc_summary['tracked objects/socket']:.1f} tracked objects per socket; a full collection took "
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
    result = {"code": code_version(), "sockets": options.sockets, "frames": options.frames, "sites": rows, **summary, "objects": objects}
    print(f"\nwritten to {write_result('memory', result)}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        rest = sys.argv[3:]
        sys.exit(serve(Path(sys.argv[2]), rest[1:] if rest[:1] == ["--"] else rest))
    asyncio.run(main())
