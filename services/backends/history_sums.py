"""The arithmetic of a vote history, shared by every store.

A store keeps, per teacher and minute, the net change of the counts and the number of changes
(the `vote_history` table or collection). The counts at a moment are then the current counts
less every change after it: exact, because each change is recorded with the counts it moved, in
the same transaction. A store reads two things, the counts at the start of a span (one read, so
that the current counts and the changes after it agree) and the changes within it; the running
sums that turn those into counts are here, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.models import HistoryBucket, HistoryMinute

Change = tuple[int, int, int]
"""(good, bad, votes): the net change of the counts in a stretch of time, and how many changes."""
MinuteChange = tuple[int, int, int, int, int]
"""(teacher, minute, good, bad, votes): one row of the history as stored."""


def buckets(
    start: tuple[int, int], changes: Mapping[int, Change], since: int, until: int, step: int
) -> list[HistoryBucket]:
    """Every bucket of `step` minutes from `since` to `until`, those without a change included:
    `start` is the counts at `since`, `changes` the change of each bucket by its first minute."""
    good, bad = start
    answer = []
    for minute in range(since, until, step):
        good_change, bad_change, votes = changes.get(minute, (0, 0, 0))
        good, bad = good + good_change, bad + bad_change
        answer.append(HistoryBucket(minute, good, bad, votes))
    return answer


def new_teachers(rows: Iterable[MinuteChange], after: HistoryMinute | None) -> list[int]:
    """The teachers of a page whose counts start there (not carried from the previous page), so
    that each teacher's start is read once however many pages its history takes."""
    return sorted({row[0] for row in rows} - {after.teacher if after else 0})


def minutes(
    rows: Iterable[MinuteChange], after: HistoryMinute | None, starts: Mapping[int, tuple[int, int]]
) -> list[HistoryMinute]:
    """Rows in (teacher, minute) order as counts at the end of each minute. A teacher's counts
    go on from `after` when it is the same teacher (the previous page), else from `starts`."""
    answer = []
    teacher, good, bad = (after.teacher, after.good_count, after.bad_count) if after else (None, 0, 0)
    for no, minute, good_change, bad_change, votes in rows:
        if no != teacher:
            teacher, (good, bad) = no, starts.get(no, (0, 0))
        good, bad = good + good_change, bad + bad_change
        answer.append(HistoryMinute(no, minute, good, bad, votes))
    return answer
