"""What the soak observes while it runs, written by the pages, the voters and the samplers as
they go and read by the report at the end: one place, so that none of them needs the run itself."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from time import monotonic as now

from bench.soak.staleness import Staleness


@dataclass
class Tally:
    staleness: Staleness = field(default_factory=Staleness)
    closes: Counter[str] = field(default_factory=Counter)
    """Pages' socket closes, by close code."""
    handshake_failures: Counter[str] = field(default_factory=Counter)
    socket_errors: Counter[str] = field(default_factory=Counter)
    outages: list[float] = field(default_factory=list)
    """Per reconnection: from the close of a page's socket until the new one's snapshot."""
    vote_failures: Counter[str] = field(default_factory=Counter)
    """Failed vote requests (each then sent again), by status or exception."""
    votes_acked: int = 0
    votes_resent: int = 0
    turns_skipped: int = 0
    wrong_acks: int = 0
    last_ack: float = 0.0
    rss: list[tuple[float, int, int]] = field(default_factory=list)
    """(when, worker pid, VmRSS in KiB), sampled every second."""

    def acknowledged(self, teacher: int, version: int, attempt: int) -> None:
        """A vote acknowledged at its `attempt`-th resend, as `version` of the teacher's counts."""
        at = now()
        self.votes_acked += 1
        self.votes_resent += attempt
        self.last_ack = at
        self.staleness.acknowledged(teacher, version, at)
