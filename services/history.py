"""Vote history: a teacher's or a subject's counts over time, and the exports of a subject.

The store keeps each teacher's changes per minute (services/backends/history_sums.py); here a
request's span is read and bounded, a subject's teachers are gathered, and minutes become the
buckets a chart or a spreadsheet wants. Every history answer that anyone may read goes through
`HistoryService.history`, and shows its counts as the subject's visibility allows the reader
(handlers/history.py asks services/visibility.py); the exports, for administrators, go through
`results` and `buckets`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from typing_extensions import TypedDict

from services.backends.store import Store
from services.errors import FieldError, Invalid
from services.models import HistoryBucket, HistoryMinute, Teacher

Step = Literal["minute", "hour", "day"]
STEP_MINUTES: dict[str, int] = {"minute": 1, "hour": 60, "day": 1440}
DEFAULT_BUCKETS: dict[str, int] = {"minute": 60, "hour": 24, "day": 30}
"""Without `from`, a span ends with the current bucket and holds this many: the last hour by
minute, the last day by hour, the last 30 days by day."""
MAX_BUCKETS = 1440
"""Buckets in one history answer at most: a day by minute, two months by hour, four years by day."""
EXPORT_PAGE = 1000
"""Minutes read from the store at once by an export: its memory stays this size, however long."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DATE_EXAMPLE = "2026-05-01T08:00:00Z"
LAST_MINUTE = (datetime(9000, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(minutes=1)
"""Spans are cut to 1970 .. 9000: no vote is older, and every bucket's start stays a date."""


@dataclass(frozen=True, slots=True)
class Span:
    """Whole buckets of `step` from minute `since` to `until` (minutes since 1970 UTC)."""

    since: int
    until: int
    step: Step

    @property
    def minutes(self) -> int:
        return STEP_MINUTES[self.step]

    @property
    def buckets(self) -> int:
        return (self.until - self.since) // self.minutes


@dataclass(frozen=True, slots=True)
class HistoryOf:
    """Whose history: one teacher's, or a subject's (its teachers' summed)."""

    kind: Literal["teacher", "subject"]
    no: int


class HistoryBucketJson(TypedDict):
    """A stretch of time: the counts at its end, and how many votes changed within it."""

    at: str
    good_count: int | None
    bad_count: int | None
    votes: int


HistoryJson = TypedDict("HistoryJson", {
    "subject": int, "teacher": int | None, "step": Step, "from": str, "to": str, "buckets": list[HistoryBucketJson],
})
"""Counts over time, one bucket per step from `from` to `to`, none left out (`from` is a keyword,
hence the functional form)."""


@dataclass(frozen=True, slots=True)
class History:
    subject: int
    """The subject whose counts these are: the teacher's own subject, for a teacher."""
    teacher: int | None
    span: Span
    buckets: list[HistoryBucket]

    def to_json(self, shown: bool = True) -> HistoryJson:
        """`shown`: False where the subject's visibility withholds its counts from the reader (the
        number of votes in each bucket is activity, not results: it stays)."""
        return {
            "subject": self.subject,
            "teacher": self.teacher,
            "step": self.span.step,
            "from": iso_minute(self.span.since),
            "to": iso_minute(self.span.until),
            "buckets": [
                {"at": iso_minute(bucket.minute), "good_count": bucket.good_count if shown else None,
                 "bad_count": bucket.bad_count if shown else None, "votes": bucket.votes}
                for bucket in self.buckets
            ],
        }


def iso_minute(minute: int) -> str:
    """A minute since 1970 as ISO 8601 in UTC with Z (2026-05-01T08:00:00Z)."""
    return (EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_span(query: Mapping[str, str | None], now: float, max_buckets: int | None = MAX_BUCKETS) -> Span:
    """`from`, `to` and `step` of a request as whole buckets: `from` goes back and `to` forward to
    a bucket's edge (a day's is midnight UTC). Invalid, naming each field, for a date that is no
    ISO 8601, a step not known, `to` not after `from`, or more than `max_buckets` buckets."""
    errors: list[FieldError] = []
    raw_step = query.get("step") or "minute"
    step: Step = "minute"
    if raw_step in STEP_MINUTES:
        step = raw_step  # type: ignore[assignment]
    else:
        errors.append(FieldError("step", "one_of", "must be minute, hour or day"))
    since, until = (_minute_of(query.get(name), name, errors) for name in ("from", "to"))
    if errors:
        raise Invalid("The history's query parameters are not valid.", errors)
    size = STEP_MINUTES[step]
    if since is not None:
        since = min(max(since, 0), LAST_MINUTE - size) // size * size
    if until is None:
        current = int(now // 60) + 1
        until = current if since is None or since < current else since + size
    until = -(-min(max(until, 0), LAST_MINUTE) // size) * size
    if since is None:
        since = max(until - DEFAULT_BUCKETS[step] * size, 0)
    if until <= since:
        raise Invalid("The history's span is empty.", [FieldError("to", "after_from", "must be after from")])
    span = Span(since, until, step)
    if max_buckets is not None and span.buckets > max_buckets:
        raise Invalid(
            f"The span holds {span.buckets} buckets; one answer holds at most {max_buckets}.",
            [FieldError("from", "too_many_buckets",
                        f"at most {max_buckets} {step}s before to: narrow the span, or take a longer step")],
        )
    return span


def _minute_of(raw: str | None, name: str, errors: list[FieldError]) -> int | None:
    """Minutes since 1970 of an ISO 8601 date and time (without an offset, UTC): `from` down to
    its minute, `to` up to the next, so that a span to a moment holds what happened before it
    in that minute."""
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        errors.append(FieldError(name, "date_time", f"must be an ISO 8601 date and time, such as {DATE_EXAMPLE}"))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        whole, part = divmod(moment - EPOCH, timedelta(minutes=1))
        return whole + (1 if name == "to" and part else 0)
    except OverflowError:
        errors.append(FieldError(name, "date_time", "is out of range"))
        return None


class HistoryService:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def history(self, of: HistoryOf, query: Mapping[str, str | None]) -> History:
        """The one way to a teacher's or a subject's counts over time (see the module docstring).
        NotFound for an unknown teacher or subject, Invalid for a span that is not valid."""
        span = parse_span(query, self._clock())
        if of.kind == "teacher":
            teacher = await self._store.get_teacher(of.no)
            subject, teachers = teacher.subject, [teacher.no]
        else:
            subject, teachers = of.no, await self._teachers_of(of.no)
        buckets = await self._store.history(teachers, span.since, span.until, span.minutes)
        return History(subject, of.no if of.kind == "teacher" else None, span, buckets)

    async def results(self, subject: int) -> AsyncIterator[list[Teacher]]:
        """A subject's teachers with their counts now, page by page (an export). NotFound for an
        unknown subject is raised here, before the first page, so that it can still be answered."""
        await self._store.get_subject(subject)
        return self._teacher_pages(subject)

    async def _teacher_pages(self, subject: int) -> AsyncIterator[list[Teacher]]:
        offset = 0
        while page := (await self._store.list_teachers(subject, offset, EXPORT_PAGE)).items:
            yield page
            offset += len(page)

    async def buckets(
        self, subject: int, query: Mapping[str, str | None]
    ) -> tuple[dict[int, str], AsyncIterator[list[HistoryMinute]]]:
        """Each of a subject's teachers' buckets that had a change, in (teacher, time) order, page by
        page as the store's minutes are read (an export): a HistoryMinute whose `minute` is the
        bucket's start. The span has no bound on its buckets, since nothing is held; its errors and
        an unknown subject are raised here, before the first page. Also the teachers' names."""
        span = parse_span(query, self._clock(), max_buckets=None)
        await self._store.get_subject(subject)
        teachers = {teacher.no: teacher.name for teacher in (await self._store.list_teachers(subject)).items}
        return teachers, self._bucket_pages(list(teachers), span)

    async def _bucket_pages(self, teachers: list[int], span: Span) -> AsyncIterator[list[HistoryMinute]]:
        after: HistoryMinute | None = None
        pending: HistoryMinute | None = None
        while True:
            page = await self._store.history_minutes(teachers, span.since, span.until, after, EXPORT_PAGE)
            ready: list[HistoryMinute] = []
            for row in page:
                start = span.since + (row.minute - span.since) // span.minutes * span.minutes
                votes = row.votes
                if pending is not None and (pending.teacher, pending.minute) == (row.teacher, start):
                    votes += pending.votes
                elif pending is not None:
                    ready.append(pending)
                pending = HistoryMinute(row.teacher, start, row.good_count, row.bad_count, votes)
            last = len(page) < EXPORT_PAGE
            if last and pending is not None:
                ready.append(pending)
            if ready:
                yield ready
            if last:
                return
            after = page[-1]

    async def _teachers_of(self, subject: int) -> list[int]:
        await self._store.get_subject(subject)
        return [teacher.no for teacher in (await self._store.list_teachers(subject)).items]
