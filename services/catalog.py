"""Subjects and teachers: validation, then the store, then a catalog event.

Every write that the store took is announced on the CATALOG channel, so that
open pages show a new, renamed or removed record without a reload. The store
is the truth: an announcement the broker refused is logged, and this process
hears it at once; the others lost the broker too, and after that gap they
re-read every open channel from the store, records included. Every write is
also written to the audit log (services/audit.py), with the record before and
after, by the actor the caller names.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, TypeVar

import orjson

from services.audit import Actor, AuditService
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
    def __init__(self, store: Store, events: EventBus, audit: AuditService) -> None:
        self._store = store
        self._events = events
        self._audit = audit

    async def list_subjects(self, offset: int = 0, limit: int | None = None) -> Page:
        return await self._store.list_subjects(offset, limit)

    async def get_subject(self, no: int) -> Subject:
        return await self._store.get_subject(no)

    async def create_subject(self, body: Any, actor: Actor) -> Subject:
        subject = await self._store.create_subject(parse(SubjectCreate, body).model_dump())
        await self._audit.record(actor, "subject.create", subject.no, None, subject)
        return await self._announced(subject)

    async def replace_subject(self, no: int, body: Any, actor: Actor) -> Subject:
        return await self._update_subject(no, parse(SubjectReplace, body).model_dump(), actor)

    async def patch_subject(self, no: int, body: Any, actor: Actor) -> Subject:
        return await self._update_subject(no, changes(parse(SubjectPatch, body)), actor)

    async def _update_subject(self, no: int, fields: dict[str, Any], actor: Actor) -> Subject:
        """The whole subject before and after goes to the audit log, whichever fields changed."""
        before = await self._store.get_subject(no)
        if fields.keys() & {"state", "opens_at", "closes_at"}:
            fields = window_change(before, fields, utc_now())
        after = await self._store.update_subject(no, fields)
        await self._audit.record(actor, "subject.update", no, before, after)
        return await self._announced(after)

    async def delete_subject(self, no: int, actor: Actor) -> None:
        before = await self._store.get_subject(no)
        await self._store.delete_subject(no)
        await self._audit.record(actor, "subject.delete", no, before, None)
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

    async def create_teacher(self, body: Any, actor: Actor) -> Teacher:
        teacher = await self._store.create_teacher(parse(TeacherCreate, body).model_dump())
        await self._audit.record(actor, "teacher.create", teacher.no, None, teacher)
        return await self._announced(teacher)

    async def replace_teacher(self, no: int, body: Any, actor: Actor) -> Teacher:
        return await self._update_teacher(no, parse(TeacherReplace, body).model_dump(), actor)

    async def patch_teacher(self, no: int, body: Any, actor: Actor) -> Teacher:
        return await self._update_teacher(no, changes(parse(TeacherPatch, body)), actor)

    async def _update_teacher(self, no: int, fields: dict[str, Any], actor: Actor) -> Teacher:
        before = await self._store.get_teacher(no)
        after = await self._store.update_teacher(no, fields)
        await self._audit.record(actor, "teacher.update", no, before, after)
        return await self._announced(after)

    async def delete_teacher(self, no: int, actor: Actor) -> None:
        before = await self._store.get_teacher(no)
        await self._store.delete_teacher(no)
        await self._audit.record(actor, "teacher.delete", no, before, None)
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
