"""Subjects and teachers over REST, against the real server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.server import LiveServer, UserClient, assert_problem

NEW_TEACHER = {"name": "韩梅梅", "sex": False, "birth": "1990-02-03", "photo": "x.svg", "intro": "hi", "subject": 1}


async def test_subjects_list_is_a_plain_array_of_the_seed(api: LiveServer) -> None:
    response = await api.get("/api/subjects/")
    assert response.status == 200 and response.content_type == "application/json"
    subjects = response.json()
    assert isinstance(subjects, list) and len(subjects) >= 5
    assert set(subjects[0]) == {"no", "name", "intro", "is_hot", "opens_at", "closes_at", "visibility", "state"}
    assert (subjects[0]["state"], subjects[0]["visibility"]) == ("open", "always")
    assert any(s["is_hot"] for s in subjects)


@pytest.mark.parametrize("path", ["/api/subjects", "/api/subjects/", "/api/subjects/1", "/api/subjects/1/"])
async def test_trailing_slash_is_optional(api: LiveServer, path: str) -> None:
    assert (await api.get(path)).status == 200


async def test_paging_follows_drf(api: LiveServer) -> None:
    first = (await api.get("/api/subjects/?page_size=2")).json()
    assert first["count"] == 5 and len(first["results"]) == 2 and first["previous"] is None
    assert first["next"].endswith("/api/subjects/?page_size=2&page=2") or "page=2" in first["next"]
    last = (await api.get("/api/subjects/?page=3&page_size=2")).json()
    assert len(last["results"]) == 1 and last["next"] is None and "page=2" in last["previous"]
    assert (await api.get("/api/subjects/?page=1")).json()["count"] == 5
    assert_problem(await api.get("/api/subjects/?page=9&page_size=2"), 404)


@pytest.mark.parametrize("query", ["page=0", "page=x", "page_size=101", "page_size=0", "page=-1"])
async def test_bad_paging_is_422(api: LiveServer, query: str) -> None:
    problem = assert_problem(await api.get(f"/api/subjects/?{query}"), 422)
    assert problem["errors"][0]["field"] == query.split("=")[0]


async def test_subject_crud(api: LiveServer, admin: UserClient) -> None:
    created = await admin.request("POST", "/api/subjects/", json_body={"name": "Go", "intro": "gophers"})
    assert created.status == 201
    subject = created.json()
    assert subject["is_hot"] is False and subject["name"] == "Go"
    assert created.headers["Location"] == f"/api/subjects/{subject['no']}/"
    assert (await api.get(created.headers["Location"])).json() == subject

    replaced = await admin.request("PUT", f"/api/subjects/{subject['no']}/",
                                 json_body={"name": "Golang", "intro": "", "is_hot": True})
    assert replaced.status == 200 and replaced.json() == {**subject, "name": "Golang", "intro": "", "is_hot": True}
    patched = await admin.request("PATCH", f"/api/subjects/{subject['no']}/", json_body={"intro": "fast"})
    assert patched.json() == {**replaced.json(), "intro": "fast"}

    deleted = await admin.request("DELETE", f"/api/subjects/{subject['no']}/")
    assert deleted.status == 204 and deleted.body == b""
    assert_problem(await api.get(f"/api/subjects/{subject['no']}/"), 404)


async def test_put_needs_every_field(api: LiveServer, admin: UserClient) -> None:
    problem = assert_problem(await admin.request("PUT", "/api/subjects/1/", json_body={"name": "x"}), 422)
    assert {e["field"] for e in problem["errors"]} == {"intro", "is_hot"}


@pytest.mark.parametrize("body, field", [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 51}, "name"),
    ({"name": 5}, "name"),
    ({"name": "ok", "is_hot": "yes"}, "is_hot"),
    ({"name": "ok", "colour": "red"}, "colour"),
    ({"intro": "no name"}, "name"),
])
async def test_subject_validation(api: LiveServer, admin: UserClient, body: dict[str, Any], field: str) -> None:
    problem = assert_problem(await admin.request("POST", "/api/subjects/", json_body=body), 422)
    assert field in [error["field"] for error in problem["errors"]]


async def test_patch_rejects_null_and_unknown_fields(api: LiveServer, admin: UserClient) -> None:
    for body in ({"name": None}, {"votes": 3}, {"good_count": 100}):
        assert_problem(await admin.request("PATCH", "/api/teachers/1/", json_body=body), 422)
    assert (await api.get("/api/teachers/1/")).json()["good_count"] == 0


async def test_deleting_a_subject_with_teachers_is_409(api: LiveServer, admin: UserClient) -> None:
    assert_problem(await admin.request("DELETE", "/api/subjects/1/"), 409)
    assert (await api.get("/api/subjects/1/")).status == 200


async def test_teacher_crud(api: LiveServer, admin: UserClient) -> None:
    created = await admin.request("POST", "/api/teachers/", json_body=NEW_TEACHER)
    assert created.status == 201
    teacher = created.json()
    assert {k: teacher[k] for k in NEW_TEACHER} == NEW_TEACHER
    assert (teacher["good_count"], teacher["bad_count"], teacher["version"]) == (0, 0, 0)
    path = created.headers["Location"]
    assert path == f"/api/teachers/{teacher['no']}/"

    moved = await admin.request("PATCH", path, json_body={"subject": 2, "birth": "1991-12-31"})
    assert moved.json()["subject"] == 2 and moved.json()["birth"] == "1991-12-31"
    replaced = await admin.request("PUT", path, json_body={**NEW_TEACHER, "name": "Han"})
    assert replaced.json()["name"] == "Han" and replaced.json()["subject"] == 1

    assert (await admin.request("DELETE", path)).status == 204
    assert_problem(await api.get(path), 404)
    assert_problem(await admin.request("DELETE", path), 404)


@pytest.mark.parametrize("change, field, code", [
    ({"birth": "1990-13-01"}, "birth", "date_from_datetime_parsing"),
    ({"birth": 19900101}, "birth", "date_type"),
    ({"sex": "male"}, "sex", "bool_type"),
    ({"subject": "1"}, "subject", "integer_type"),
    ({"subject": 0}, "subject", "greater_than_equal"),
    ({"subject": 4242}, "subject", "no_such_subject"),
    ({"photo": "../../etc/passwd"}, "photo", "string_pattern_mismatch"),
    ({"name": "x" * 51}, "name", "string_too_long"),
])
async def test_teacher_validation(
    api: LiveServer, admin: UserClient, change: dict[str, Any], field: str, code: str
) -> None:
    """Each field error names its field and a code for programs (pages translate codes)."""
    problem = assert_problem(await admin.request("POST", "/api/teachers/", json_body={**NEW_TEACHER, **change}), 422)
    assert [(error["field"], error["code"]) for error in problem["errors"]] == [(field, code)]


async def test_teachers_of_a_subject(api: LiveServer) -> None:
    teachers = (await api.get("/api/subjects/2/teachers/")).json()
    assert len(teachers) == 3 and all(t["subject"] == 2 for t in teachers)
    page = (await api.get("/api/subjects/2/teachers/?page_size=2")).json()
    assert page["count"] == 3 and len(page["results"]) == 2
    assert_problem(await api.get("/api/subjects/999/teachers/"), 404)


async def test_seed_compatible_teacher_view(api: LiveServer) -> None:
    body = (await api.get("/api/teachers/?sno=3")).json()
    subject = (await api.get("/api/subjects/3/")).json()
    assert body["subject"] == {"no": 3, "name": subject["name"]}
    assert [t["subject"] for t in body["teachers"]] == [3, 3, 3]


@pytest.mark.parametrize("query", ["", "?sno=", "?sno=abc", "?sno=999", "?sno=-1", "?sno=99999999999999999999999"])
async def test_seed_view_needs_a_known_numeric_sno(api: LiveServer, query: str) -> None:
    assert_problem(await api.get(f"/api/teachers/{query}"), 404)


async def test_huge_ids_are_404_not_500(api: LiveServer) -> None:
    assert_problem(await api.get("/api/teachers/99999999999999999999999/"), 404)
    assert_problem(await api.get("/api/subjects/9223372036854775808/"), 404)


WRITES = [
    ("POST", "/api/subjects/", {"name": "x"}),
    ("PUT", "/api/subjects/1/", {"name": "x", "intro": "", "is_hot": False}),
    ("PATCH", "/api/subjects/1/", {"name": "x"}),
    ("DELETE", "/api/subjects/5/", None),
    ("POST", "/api/teachers/", NEW_TEACHER),
    ("PATCH", "/api/teachers/1/", {"name": "x"}),
    ("DELETE", "/api/teachers/1/", None),
]


@pytest.mark.parametrize("method, path, body", WRITES)
async def test_writes_without_a_token_are_401(api: LiveServer, method: str, path: str, body: Any) -> None:
    response = await api.request(method, path, json_body=body)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await api.get("/api/subjects/1/")).json()["name"] != "x"


@pytest.mark.parametrize("method, path, body", WRITES)
async def test_writes_by_a_plain_user_are_403(
    api: LiveServer, user: UserClient, method: str, path: str, body: Any
) -> None:
    assert_problem(await user.request(method, path, json_body=body), 403)
    assert (await api.get("/api/teachers/1/")).status == 200


async def test_markup_in_names_is_stored_verbatim(api: LiveServer, admin: UserClient) -> None:
    name = "<img src=x onerror=alert(1)>"
    created = (await admin.request("POST", "/api/subjects/", json_body={"name": name})).json()
    assert (await api.get(f"/api/subjects/{created['no']}/")).json()["name"] == name
