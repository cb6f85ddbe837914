"""Subjects and teachers: validation, then the store, then a catalog event.

Every write that the store took is announced on the CATALOG channel, so that
open pages show a new, renamed or removed record without a reload. The store
is the truth: an announcement the broker refused is logged, and this process
hears it at once; the others lost the broker too, and after that gap they
re-read every open channel from the store, records included.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, TypeVar

import orjson

from services.backends.store import Store
from services.errors import FieldError, Invalid
from services.events import CATALOG, EventBus
from services.models import Page, Subject, Teacher, VotingState, utc_now
from services.schemas import (
    SubjectCreate,
    SubjectPatch,
    SubjectReplace,
    TeacherCreate,
    TeacherPatch,
    TeacherReplace,
    changes,
    parse,
)

log = logging.getLogger("livevote.catalog")

RecordT = TypeVar("RecordT", Subject, Teacher)


class CatalogService:
    def __init__(self, store: Store, events: EventBus) -> None:
        self._store = store
        self._events = events

    async def list_subjects(self, offset: int = 0, limit: int | None = None) -> Page:
        return await self._store.list_subjects(offset, limit)

    async def get_subject(self, no: int) -> Subject:
        return await self._store.get_subject(no)

    async def create_subject(self, body: Any) -> Subject:
        return await self._announced(await self._store.create_subject(parse(SubjectCreate, body).model_dump()))

    async def replace_subject(self, no: int, body: Any) -> Subject:
        return await self._announced(await self._store.update_subject(no, parse(SubjectReplace, body).model_dump()))

    async def patch_subject(self, no: int, body: Any) -> Subject:
        fields = changes(parse(SubjectPatch, body))
        if fields.keys() & {"state", "opens_at", "closes_at"}:
            fields = window_change(await self._store.get_subject(no), fields, utc_now())
        return await self._announced(await self._store.update_subject(no, fields))

    async def delete_subject(self, no: int) -> None:
        await self._store.delete_subject(no)
        await self._announce({"kind": "subject", "removed": no})

    async def list_teachers(
        self, subject: int | None = None, offset: int = 0, limit: int | None = None
    ) -> Page:
        if subject is not None:
            await self._store.get_subject(subject)
        return await self._store.list_teachers(subject, offset, limit)

    async def subject_with_teachers(self, subject: int) -> tuple[Subject, list[Teacher]]:
        found = await self._store.get_subject(subject)
        return found, (await self._store.list_teachers(subject)).items

    async def get_teacher(self, no: int) -> Teacher:
        return await self._store.get_teacher(no)

    async def create_teacher(self, body: Any) -> Teacher:
        return await self._announced(await self._store.create_teacher(parse(TeacherCreate, body).model_dump()))

    async def replace_teacher(self, no: int, body: Any) -> Teacher:
        return await self._announced(await self._store.update_teacher(no, parse(TeacherReplace, body).model_dump()))

    async def patch_teacher(self, no: int, body: Any) -> Teacher:
        return await self._announced(await self._store.update_teacher(no, changes(parse(TeacherPatch, body))))

    async def delete_teacher(self, no: int) -> None:
        await self._store.delete_teacher(no)
        await self._announce({"kind": "teacher", "removed": no})

    async def _announced(self, record: RecordT) -> RecordT:
        await self._announce({"kind": type(record).__name__.lower(), "record": record.to_json()})
        return record

    async def _announce(self, event: dict[str, Any]) -> None:
        data = orjson.dumps(event)
        try:
            await self._events.publish(CATALOG, data)
        except Exception as exc:
            log.warning("could not announce a catalog change (%r); the other processes show it after the gap", exc)
            self._events.on_message(CATALOG, data)


def window_change(subject: Subject, fields: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A PATCH's fields with `state` turned into the window it means, checked against the
    window the subject has: opening now opens from now (keeping a close still to come),
    closing now closes from now (and drops an opening still to come)."""
    fields = dict(fields)
    wanted: VotingState | None = fields.pop("state", None)
    if wanted is not None and wanted != subject.state(now):
        if wanted == "open":
            keep = subject.closes_at is not None and subject.closes_at > now
            fields.update(opens_at=now, closes_at=subject.closes_at if keep else None)
        else:
            fields.update(opens_at=subject.opens_at if subject.state(now) == "open" else None, closes_at=now)
    opens_at, closes_at = fields.get("opens_at", subject.opens_at), fields.get("closes_at", subject.closes_at)
    if opens_at is not None and closes_at is not None and closes_at <= opens_at:
        error = FieldError("closes_at", "closes_before_opens", "closes_at must be later than opens_at")
        raise Invalid("The voting window must close after it opens.", [error])
    return fields
