"""The soak (bench/soak/) in the suite, short: a minute of votes over 200 live sockets with a fault
every 15 s, so that each kind (worker kill -9, Redis master kill -9, nginx reload) happens once;
the soak cycles through the kinds in a shuffled order. Run as the command it is, `python -m
bench.soak` in a subprocess: its verdict is its exit status and the JSON line it prints last.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness.server import ROOT

COMMAND = ["-m", "bench.soak", "--duration", "60", "--sockets", "200", "--voters", "10", "--fault-every", "15"]
TIMEOUT = 150.0
"""Seconds for the whole run (~75 s: 60 s of votes, set-up, the checks and the stop)."""


def run_soak(results: Path) -> tuple[int, str, str]:
    """On a timeout the soak gets SIGTERM, so that it stops what it started (a SIGKILL would leave
    its Redis Cluster, server and nginx running)."""
    process = subprocess.Popen(
        [sys.executable, *COMMAND, "--results", str(results)], cwd=ROOT, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
        raise AssertionError(f"the soak took over {TIMEOUT:.0f} s:\n{stdout}\n{stderr[-5000:]}") from None
    return process.returncode, stdout, stderr


def last_json(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"the soak printed no JSON line:\n{stdout}"
    result = json.loads(lines[-1])
    assert isinstance(result, dict)
    return result


def test_a_minute_of_votes_and_faults_loses_no_vote_and_leaves_no_socket_stale(tmp_path: Path) -> None:
    code, stdout, stderr = run_soak(tmp_path / "soak.json")
    print(stdout)  # the soak's tables, shown when this test fails
    print(stderr[-5000:])
    result = last_json(stdout)
    print(f"FIGURES soak 60 s: staleness after a fault <= {result['max_stale_after_fault_ms']} ms, "
          f"otherwise <= {result['max_stale_baseline_ms']} ms; {result['votes_acked']} votes; "
          f"{result['feed_messages_per_vote']} feed messages and {result['spublish_per_vote']} SPUBLISH per vote")

    assert result["lost"] == 0, "acknowledged votes missing from the store"
    assert result["mismatch"] == 0, "the teachers' counts differ from the acknowledged votes"
    assert result["stale_sockets"] == 0, result["stale_examples"]
    assert result["unsettled_votes"] == 0
    assert sorted(fault["kind"] for fault in result["faults"]) == ["nginx", "redis", "worker"], result["faults"]
    assert [fault for fault in result["faults"] if fault["error"]] == []
    assert result["count_changes"] > 0
    assert code == 0, f"exit {code}"
