"""Subjects and teachers over REST."""

from __future__ import annotations

from typing_extensions import TypedDict

from handlers.base import ApiHandler, record_no
from handlers.openapi import BODY, PAGING_422, ListOrPage, Operation, query
from services.errors import NotFound
from services.models import SubjectJson, TeacherJson
from services.schemas import (
    SubjectCreate,
    SubjectPatch,
    SubjectReplace,
    TeacherCreate,
    TeacherPatch,
    TeacherReplace,
    canonical_int,
)

ADMIN_WRITE = (401, 403, *BODY, 503)
"""Catalog writes: authentication comes first, then the body."""
LOCATION = {"Location": "The new record's URL"}
NO_SUBJECT = {404: "No such subject"}
NO_TEACHER = {404: "No such teacher"}
NO_SUBJECT_422 = {422: "Validation failed, or `subject` names no subject; `errors` names the fields"}


class SubjectNameJson(TypedDict):
    no: int
    name: str


class SubjectTeachersJson(TypedDict):
    """A subject and all its teachers."""

    subject: SubjectNameJson
    teachers: list[TeacherJson]


class CatalogHandler(ApiHandler):
    documented_with_slash = True
    """The catalog's paths are documented with their trailing slash, DRF style, as a new record's
    Location has it (handlers/openapi.py); the routes serve them without it too."""


class SubjectListHandler(CatalogHandler):
    @Operation("listSubjects", "catalog", "List subjects", ok="Every subject, or one page of them",
               returns=ListOrPage(SubjectJson), errors=(404, 422, 503),
               notes={404: "A page past the end", 422: PAGING_422})
    async def get(self) -> None:
        offset, limit = self.page_window()
        self.write_list(await self.services.catalog.list_subjects(offset, limit), offset, limit)

    @Operation("createSubject", "catalog", "Create a subject", ok="Created", status=201, returns=SubjectJson,
               headers=LOCATION, request=SubjectCreate, secured=True, errors=ADMIN_WRITE)
    async def post(self) -> None:
        actor = await self.acting_admin()
        subject = await self.services.catalog.create_subject(self.json_body(), actor)
        self.created(subject.to_json(), f"/api/subjects/{subject.no}/")


class SubjectHandler(CatalogHandler):
    @Operation("getSubject", "catalog", "Get a subject", ok="The subject", returns=SubjectJson,
               errors=(404, 503), notes=NO_SUBJECT)
    async def get(self, no: str) -> None:
        subject = await self.services.catalog.get_subject(record_no(no, "subject"))
        self.write_json(subject.to_json())

    @Operation("replaceSubject", "catalog", "Replace a subject", ok="The subject as stored", returns=SubjectJson,
               request=SubjectReplace, secured=True, errors=(*ADMIN_WRITE, 404), notes=NO_SUBJECT)
    async def put(self, no: str) -> None:
        actor = await self.acting_admin()
        subject = await self.services.catalog.replace_subject(record_no(no, "subject"), self.json_body(), actor)
        self.write_json(subject.to_json())

    @Operation("updateSubject", "catalog", "Change some fields of a subject", ok="The subject as stored",
               returns=SubjectJson, request=SubjectPatch, secured=True, errors=(*ADMIN_WRITE, 404), notes=NO_SUBJECT)
    async def patch(self, no: str) -> None:
        actor = await self.acting_admin()
        subject = await self.services.catalog.patch_subject(record_no(no, "subject"), self.json_body(), actor)
        self.write_json(subject.to_json())

    @Operation("deleteSubject", "catalog", "Delete a subject", ok="Deleted", status=204, secured=True,
               errors=(401, 403, 404, 409, 503), notes={**NO_SUBJECT, 409: "The subject still has teachers"})
    async def delete(self, no: str) -> None:
        actor = await self.acting_admin()
        await self.services.catalog.delete_subject(record_no(no, "subject"), actor)
        self.no_content()


class SubjectTeachersHandler(CatalogHandler):
    @Operation("listSubjectTeachers", "catalog", "Teachers of a subject",
               ok="The subject's teachers, or one page of them", returns=ListOrPage(TeacherJson),
               errors=(404, 422, 503),
               notes={404: "No such subject, or a page past the end", 422: PAGING_422})
    async def get(self, no: str) -> None:
        offset, limit = self.page_window()
        page = await self.services.catalog.list_teachers(record_no(no, "subject"), offset, limit)
        self.write_list(page, offset, limit, await self.services.visibility.teachers(await self.reader(), page.items))


class TeacherListHandler(CatalogHandler):
    @Operation("getSubjectWithTeachers", "catalog", "Teachers of a subject, with the subject",
               ok="The subject and all its teachers", returns=SubjectTeachersJson,
               parameters=[query("sno", {"type": "integer", "minimum": 1}, required=True)],
               errors=(404, 503), notes={404: "No such subject, or ?sno is missing or not a number"})
    async def get(self) -> None:
        """The seed-compatible view: `?sno=` names the subject and is required."""
        raw = self.get_query_argument("sno", "", strip=False)
        if canonical_int(raw) is None:
            raise NotFound("Name a subject with ?sno=<number>.")
        subject, teachers = await self.services.catalog.subject_with_teachers(record_no(raw, "subject"))
        shown = await self.services.visibility.teachers(await self.reader(), teachers)
        body: SubjectTeachersJson = {"subject": {"no": subject.no, "name": subject.name}, "teachers": shown}
        self.write_json(body)

    @Operation("createTeacher", "catalog", "Create a teacher", ok="Created", status=201, returns=TeacherJson,
               headers=LOCATION, request=TeacherCreate, secured=True, errors=ADMIN_WRITE, notes=NO_SUBJECT_422)
    async def post(self) -> None:
        actor = await self.acting_admin()
        teacher = await self.services.catalog.create_teacher(self.json_body(), actor)
        self.created(teacher.to_json(), f"/api/teachers/{teacher.no}/")


class TeacherHandler(CatalogHandler):
    @Operation("getTeacher", "catalog", "Get a teacher", ok="The teacher, with its counts", returns=TeacherJson,
               errors=(404, 503), notes=NO_TEACHER)
    async def get(self, no: str) -> None:
        teacher = await self.services.catalog.get_teacher(record_no(no, "teacher"))
        self.write_json((await self.services.visibility.teachers(await self.reader(), [teacher]))[0])

    @Operation("replaceTeacher", "catalog", "Replace a teacher", ok="The teacher as stored", returns=TeacherJson,
               request=TeacherReplace, secured=True, errors=(*ADMIN_WRITE, 404), notes={**NO_TEACHER, **NO_SUBJECT_422})
    async def put(self, no: str) -> None:
        actor = await self.acting_admin()
        teacher = await self.services.catalog.replace_teacher(record_no(no, "teacher"), self.json_body(), actor)
        self.write_json(teacher.to_json())

    @Operation("updateTeacher", "catalog", "Change some fields of a teacher", ok="The teacher as stored",
               returns=TeacherJson, request=TeacherPatch, secured=True, errors=(*ADMIN_WRITE, 404),
               notes={**NO_TEACHER, **NO_SUBJECT_422})
    async def patch(self, no: str) -> None:
        actor = await self.acting_admin()
        teacher = await self.services.catalog.patch_teacher(record_no(no, "teacher"), self.json_body(), actor)
        self.write_json(teacher.to_json())

    @Operation("deleteTeacher", "catalog", "Delete a teacher", ok="Deleted", status=204, secured=True,
               errors=(401, 403, 404, 503), notes=NO_TEACHER)
    async def delete(self, no: str) -> None:
        actor = await self.acting_admin()
        await self.services.catalog.delete_teacher(record_no(no, "teacher"), actor)
        self.no_content()
