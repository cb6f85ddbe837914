"""Runs inside the server bench/memory.py measures: `python -X tracemalloc=N bench/memory_probe.py OUT
-- SERVER ARGS` is `python server.py SERVER ARGS` plus a SIGUSR1 handler, installed before server.py
is imported: on each signal the server process (at a point between two bytecodes of its event
loop) collects garbage, dumps a tracemalloc snapshot to OUT, and walks the objects of two open
sockets. Nothing of the benchmark is imported here, so that it allocates nothing in the server.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import time
import tracemalloc
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


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
        except Exception as exc:
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
        "by type": {
            kind: {"objects": n, "bytes": b} for kind, (n, b) in sorted(by_type.items(), key=lambda i: -i[1][1])
        },
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
    roots += list(vars(services).values())
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


def _held_elsewhere(
    handler: Any, mine: dict[int, tuple[str, Any]], other: dict[int, tuple[str, Any]]
) -> list[dict[str, Any]]:
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


if __name__ == "__main__":
    rest = sys.argv[2:]
    sys.exit(serve(Path(sys.argv[1]), rest[1:] if rest[:1] == ["--"] else rest))
