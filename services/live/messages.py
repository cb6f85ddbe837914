"""What the live channel says: channel names, close codes, and the frames of server messages.

Every server message is built here once and framed once (`frame`), then the same
bytes go to every socket that should have it. The dashboard's totals are built
by `totals`, which /api/stats uses too, so the two can never disagree on shape.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import orjson
from typing_extensions import TypedDict

from services.errors import Invalid
from services.models import Counts, SubjectTotals
from services.schemas import canonical_int

DASHBOARD = "dashboard"

CLOSE_GOING_AWAY = 1001
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_REVOKED = 4003
CLOSE_TOO_SLOW = 4008
CLOSE_RATE_LIMITED = 4029


class BadChannel(Invalid):
    """A channel name that is not subject:{no}, teacher:{no} or dashboard."""


def parse_channel(name: object) -> tuple[str, int | None]:
    """(kind, number) of a channel a client named; BadChannel unless its number is canonical."""
    if name == DASHBOARD:
        return DASHBOARD, None
    if isinstance(name, str):
        kind, _, digits = name.partition(":")
        number = canonical_int(digits)
        if kind in ("subject", "teacher") and number is not None:
            return kind, number
    raise BadChannel("Channels are subject:{no}, teacher:{no} and dashboard.")


def subject_of_channel(name: str) -> int | None:
    """N for an open channel named subject:N (names are canonical once open)."""
    return int(name[len("subject:"):]) if name.startswith("subject:") else None


def text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final WebSocket text frame: the same bytes suit every socket."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


def frame(kind: str, /, **fields: Any) -> bytes:
    """A server message of type `kind`, framed."""
    return text_frame(orjson.dumps({"type": kind, **fields}))


def counts_json(counts: Counts) -> dict[str, int]:
    return {"no": counts.no, "good_count": counts.good_count, "bad_count": counts.bad_count, "version": counts.version}


def sum_by_subject(latest: Iterable[Counts], names: Mapping[int, str]) -> list[SubjectTotals]:
    """Good and bad votes per subject, summed from teacher counts: every named subject, and any
    subject a teacher names (shown by number until its name is known)."""
    sums = {no: [0, 0] for no in names}
    for counts in latest:
        subject = sums.setdefault(counts.subject, [0, 0])
        subject[0] += counts.good_count
        subject[1] += counts.bad_count
    return [SubjectTotals(no, names.get(no, f"#{no}"), good, bad) for no, (good, bad) in sorted(sums.items())]


class SubjectTotalsJson(TypedDict):
    # SubjectTotals as a dict: orjson writes a dict about three times as fast as a slots dataclass,
    # and every flush of the dashboard's channel writes these
    no: int
    name: str
    good_count: int | None
    bad_count: int | None


class TotalsJson(TypedDict):
    """The dashboard's totals: votes per subject, and of all subjects."""

    subjects: list[SubjectTotalsJson]
    votes_total: int


def totals(
    subjects: Iterable[SubjectTotals], only: Collection[int] | None = None, hidden: Collection[int] = ()
) -> TotalsJson:
    """Per subject (all, or `only` those) and the votes of all of them; the `hidden` subjects'
    counts are null and left out of the total, so that no sum gives them away."""
    subjects = list(subjects)
    return {
        "subjects": [
            {"no": s.no, "name": s.name, "good_count": None, "bad_count": None} if s.no in hidden else
            {"no": s.no, "name": s.name, "good_count": s.good_count, "bad_count": s.bad_count}
            for s in subjects if only is None or s.no in only
        ],
        "votes_total": sum(s.good_count + s.bad_count for s in subjects if s.no not in hidden),
    }
