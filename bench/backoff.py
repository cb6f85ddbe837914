"""The page client's reconnect backoff after an outage: when each page first tries again once the
server is back, for outages of a few lengths, against full jitter and lower caps.

    python bench/backoff.py [--pages 20000]

A model, not a measurement: each page's attempts fail while the outage lasts (at once, as a
refused connection does), and wait `bench.storm.backoff` (static/js/live-client.js's formula)
between them. What it prints is how long after the outage each page's first attempt comes:
the part of a storm's tail that no server can shorten.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, report
from bench.storm import BACKOFF_MAX, backoff

COLUMNS = ["outage s", "jitter", "cap s", "p50 s", "p99 s", "max s", "attempts/s in a long outage"]
OUTAGES = (1.0, 2.3, 5.0, 10.0, 30.0)
"""Seconds the server is away; 2.3 s is the storm bench's kill -9 until the new process serves."""


def first_retry_after(outage: float, cap: float, full_jitter: bool) -> float:
    """One page: its first attempt after the outage, in seconds after it ended."""
    now, failures = random.random() * 0.05, 0
    while now < outage:
        failures += 1
        now += backoff(failures, cap, full_jitter)
    return now - outage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=20000)
    options = parser.parse_args()
    rows = []
    for outage in OUTAGES:
        for full_jitter in (False, True):
            for cap in (15.0, BACKOFF_MAX, 5.0):
                waits = [first_retry_after(outage, cap, full_jitter) for _ in range(options.pages)]
                mean_delay = cap * (0.5 if full_jitter else 0.75)  # once the ceiling is the cap
                rows.append({
                    "outage s": outage, "jitter": "full" if full_jitter else "equal (the page's)", "cap s": cap,
                    "p50 s": round(percentile(waits, 0.5), 2), "p99 s": round(percentile(waits, 0.99), 2),
                    "max s": round(max(waits), 2), "attempts/s in a long outage": round(options.pages / mean_delay),
                })
    print(f"{options.pages:,} pages; seconds from the end of the outage to each page's first attempt")
    report("backoff", rows, COLUMNS, pages=options.pages)


if __name__ == "__main__":
    main()
