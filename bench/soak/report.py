"""The soak's result: the figures from what the run recorded (staleness by fault window, memory by
third of the voting time, pub/sub per vote), printed as tables and one JSON line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bench.common import percentile, table
from bench.soak.checks import CONVERGE
from bench.soak.probes import SpublishCalls, WorkerFeeds

if TYPE_CHECKING:
    from bench.soak.faults import Fault
    from bench.soak.options import Options
    from bench.soak.pages import Page
    from bench.soak.tally import Tally

SETTLE = 5.0
"""A fault's window, for the staleness figure, lasts this long past its recovery."""


def summarize(options: Options, tally: Tally, injected: list[Fault], pages: list[Page], *,
              started: float, voting_ended: float, last: float, converged: float | None, cpu: float,
              lost: int, mismatch: int, stale: list[Page], unsettled: int, changes: int,
              feeds: WorkerFeeds, spublish: SpublishCalls, stats_sockets: int | None) -> dict[str, Any]:
    """The result (see the package docstring) from what `tally` recorded, the faults `injected`,
    the pages' reconnections and the checks' figures; `ok` is the run's verdict."""
    windows = [(fault, fault.started, (fault.recovered or fault.started) + SETTLE) for fault in injected]
    per_fault: dict[int, float] = {}
    baseline: list[float] = []
    for acked, shown in tally.staleness.done:
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
    for pid in sorted({pid for _, pid, _ in tally.rss}):
        first = [kib for at, p, kib in tally.rss if p == pid and started <= at < started + third]
        final = [kib for at, p, kib in tally.rss if p == pid and voting_ended - third <= at <= voting_ended]
        rss[pid] = {"first_third_mib": round(sum(first) / len(first) / 1024, 1) if first else None,
                    "last_third_mib": round(sum(final) / len(final) / 1024, 1) if final else None}

    after_fault = max(per_fault.values(), default=0.0)
    result: dict[str, Any] = {
        "duration_s": options.duration, "sockets": options.sockets, "voters": options.voters,
        "rate": options.rate, "fault_every_s": options.fault_every,
        "lost": lost, "mismatch": mismatch, "stale_sockets": len(stale), "unsettled_votes": unsettled,
        "fault_errors": sum(fault.error is not None for fault in injected),
        "converge_ms": round(1000 * max(converged - last, 0.0), 1) if converged is not None else None,
        "max_page_outage_ms": round(1000 * max(tally.outages, default=0.0), 1),
        "max_stale_after_fault_ms": round(1000 * after_fault, 1),
        "max_stale_baseline_ms": round(1000 * max(baseline, default=0.0), 1),
        "p99_stale_baseline_ms": round(1000 * percentile(baseline, 0.99), 1) if baseline else None,
        "votes_unreached": tally.staleness.unreached,
        "votes_acked": tally.votes_acked, "count_changes": changes, "votes_resent": tally.votes_resent,
        "turns_skipped": tally.turns_skipped, "wrong_acks": tally.wrong_acks,
        "vote_failures": dict(tally.vote_failures),
        "feed_messages_per_vote": round(feeds.total / changes, 3) if changes else None,
        "spublish_per_vote": round(spublish.total / changes, 3) if changes else None,
        "feed_messages": feeds.total, "spublish_calls": spublish.total,
        "faults": faults, "rss": {str(pid): row for pid, row in rss.items()},
        "reconnects": sum(page.connects for page in pages) - len(pages),
        "closes": dict(tally.closes), "handshake_failures": dict(tally.handshake_failures),
        "socket_errors": dict(tally.socket_errors), "client_cpu_pct": round(cpu, 1),
        "stats_sockets": stats_sockets,
        "stale_examples": [describe(page) for page in stale[:3]],
    }
    result["ok"] = not (lost or mismatch or stale or unsettled or result["fault_errors"] or tally.wrong_acks)
    return result


def describe(page: Page) -> dict[str, Any]:
    return {"page": page.index, "channel": page.channel, "subscribed": page.subscribed,
            "teachers": page.teachers if page.subject else None,
            "subjects": page.subjects if page.subject is None else None, "votes_total": page.votes_total}


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
        ("server exit code after SIGTERM / ERROR lines",
         f"{result['server_exit']} / {len(result['server_errors'])}", ""),
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
