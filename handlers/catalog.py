"""Subjects and teachers over REST."""

from __future__ import annotations

from typing import Any

from handlers.base import ApiHandler, record_no
from services.errors import NotFound
from services.schemas import canonical_int


class SubjectListHandler(ApiHandler):
    async def get(self) -> None:
        offset, limit = self.page_window()
        self.write_list(await self.services.catalog.list_subjects(offset, limit), offset, limit)

    async def post(self) -> None:
        await self.authenticate_admin()
        subject = await self.services.catalog.create_subject(self.json_body())
        self.created(subject.to_json(), f"/api/subjects/{subject.no}/")


class SubjectHandler(ApiHandler):
    async def get(self, no: str) -> None:
        subject = await self.services.catalog.get_subject(record_no(no, "subject"))
        self.write_json(subject.to_json())

    async def put(self, no: str) -> None:
        await self.authenticate_admin()
        subject = await self.services.catalog.replace_subject(record_no(no, "subject"), self.json_body())
        self.write_json(subject.to_json())

    async def patch(self, no: str) -> None:
        await self.authenticate_admin()
        subject = await self.services.catalog.patch_subject(record_no(no, "subject"), self.json_body())
        self.write_json(subject.to_json())

    async def delete(self, no: str) -> None:
        await self.authenticate_admin()
        await self.services.catalog.delete_subject(record_no(no, "subject"))
        self.no_content()


class SubjectTeachersHandler(ApiHandler):
    async def get(self, no: str) -> None:
        offset, limit = self.page_window()
        page = await self.services.catalog.list_teachers(record_no(no, "subject"), offset, limit)
        self.write_list(page, offset, limit)


class TeacherListHandler(ApiHandler):
    async def get(self) -> None:
        """The seed-compatible view: `?sno=` names the subject and is required."""
        raw = self.get_query_argument("sno", "", strip=False)
        if canonical_int(raw) is None:
            raise NotFound("Name a subject with ?sno=<number>.")
        subject, teachers = await self.services.catalog.subject_with_teachers(record_no(raw, "subject"))
        body: dict[str, Any] = {
            "subject": {"no": subject.no, "name": subject.name},
            "teachers": [teacher.to_json() for teacher in teachers],
        }
        self.write_json(body)

    async def post(self) -> None:
        await self.authenticate_admin()
        teacher = await self.services.catalog.create_teacher(self.json_body())
        self.created(teacher.to_json(), f"/api/teachers/{teacher.no}/")


class TeacherHandler(ApiHandler):
    async def get(self, no: str) -> None:
        teacher = await self.services.catalog.get_teacher(record_no(no, "teacher"))
        self.write_json(teacher.to_json())

    async def put(self, no: str) -> None:
        await self.authenticate_admin()
        teacher = await self.services.catalog.replace_teacher(record_no(no, "teacher"), self.json_body())
        self.write_json(teacher.to_json())

    async def patch(self, no: str) -> None:
        await self.authenticate_admin()
        teacher = await self.services.catalog.patch_teacher(record_no(no, "teacher"), self.json_body())
        self.write_json(teacher.to_json())

    async def delete(self, no: str) -> None:
        await self.authenticate_admin()
        await self.services.catalog.delete_teacher(record_no(no, "teacher"))
        self.no_content()
