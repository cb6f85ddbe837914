"""Who sees a subject's counts, and the REST bodies with the others' counts withheld.

A subject's `visibility`: `always` (everyone), `after_vote` (a user with a vote in it now),
`after_close` (everyone once voting closed), `hidden` (nobody). Administrators see every count.
Withheld counts are null; a teacher's version still moves, since pages order changes by it.
The live channel applies the same rule (services/live/hub.py, through `is_public`, the same rule on a subject's record).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.backends.store import Store
from services.models import Subject, Teacher, TeacherJson, User, VoteResult, VoteResultJson, public


@dataclass(frozen=True, slots=True)
class Reader:
    """Who asks: a user (by id), or nobody known (None); and whether an administrator, now."""

    user_id: int | None
    admin: bool = False

    @classmethod
    def of(cls, user: User) -> Reader:
        return cls(user.id, user.is_admin)


ANONYMOUS = Reader(None)


class VisibilityService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def withheld(self, reader: Reader, subjects: Iterable[Subject]) -> set[int]:
        """Of these subjects, those whose counts the reader may not see now."""
        if reader.admin:
            return set()
        restricted = {subject.no: subject.visibility for subject in subjects
                      if not public(subject.visibility, subject.state())}
        if not restricted:
            return set()
        voted: set[int] = set()
        if reader.user_id is not None and "after_vote" in restricted.values():
            voted = await self._store.voted_subjects(reader.user_id)
        return {no for no, visibility in restricted.items() if visibility != "after_vote" or no not in voted}

    async def shows(self, reader: Reader, subject: int) -> bool:
        """Whether the reader may see the subject's counts now."""
        return not await self.withheld(reader, [await self._store.get_subject(subject)])

    async def teachers(self, reader: Reader, teachers: Iterable[Teacher]) -> list[TeacherJson]:
        teachers = list(teachers)
        numbers = {teacher.subject for teacher in teachers}
        subjects = [await self._store.get_subject(no) for no in numbers] if len(numbers) == 1 else [
            subject for subject in (await self._store.list_subjects()).items if subject.no in numbers
        ]
        hidden = await self.withheld(reader, subjects)
        return [_masked(teacher.to_json()) if teacher.subject in hidden else teacher.to_json() for teacher in teachers]

    async def vote(self, reader: Reader, result: VoteResult) -> VoteResultJson:
        """The voter's answer, by the subject's rules as the vote found them: no second read, but
        for an after_vote subject whose vote the voter just took back."""
        visibility, subject = result.visibility, result.counts.subject
        shown = reader.admin or public(visibility, result.state)
        if visibility == "after_vote" and not reader.admin and reader.user_id is not None:
            shown = result.value is not None or subject in await self._store.voted_subjects(reader.user_id)
        return result.to_json(shown)


def _masked(teacher: TeacherJson) -> TeacherJson:
    return {**teacher, "good_count": None, "bad_count": None}
