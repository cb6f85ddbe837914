"""Staleness of an acknowledged vote: from its acknowledgement until every page subscribed to its
teacher's subject at that moment shows it (see the package docstring)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol


class WatchingPage(Protocol):
    """A live page as far as staleness goes (bench.soak.pages.Page is one): this keeps the tracker
    free of the pages' module, which reports to it."""

    @property
    def index(self) -> int: ...

    @property
    def subscribed(self) -> bool: ...

    def version_of(self, teacher: int) -> int: ...


@dataclass
class PendingVote:
    acked: float
    waiting: set[int]
    """Pages subscribed at `acked` that do not show the version yet."""


class Staleness:
    """Per acknowledged version, the pages still to show it (see the module docstring)."""

    def __init__(self) -> None:
        self.pages_by_subject: dict[int, list[WatchingPage]] = defaultdict(list)
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
