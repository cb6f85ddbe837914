"""GET /api/audit: every administrator's change, logged with who, what, which record, when, and the
record before and after; read by administrators only, a page at a time, newest first. A change that
fails logs nothing; a change whose entry cannot be stored still succeeds, and says so in the log."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.backends.store_sqlite import SqliteStore
from tests.harness.cli import run_server_py
from tests.harness.server import LiveServer, UserClient, assert_problem, sign_up

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
NEW_TEACHER = {"name": "韩梅梅", "sex": False, "birth": "1990-02-03", "photo": "", "intro": "hi", "subject": 1}


async def entries(admin: UserClient, query: str = "") -> list[dict[str, Any]]:
    response = await admin.get(f"/api/audit{query}")
    assert response.status == 200, response.body
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def ok(admin: UserClient, method: str, path: str, body: Any = None) -> Any:
    response = await admin.request(method, path, json_body=body) if body is not None else \
        await admin.request(method, path)
    assert response.status in (200, 201, 204), response.body
    return response.json() if response.body else None


async def test_only_an_administrator_reads_the_log(api: LiveServer, admin: UserClient, user: UserClient) -> None:
    assert_problem(await api.get("/api/audit"), 401)
    assert_problem(await user.get("/api/audit"), 403)
    assert_problem(await user.get("/api/audit?kind=subject"), 403)
    response = await admin.get("/api/audit")
    assert response.status == 200 and response.json() == {"count": 0, "next": None, "previous": None, "results": []}


async def test_every_change_is_logged_with_the_whole_record_before_and_after(
    api: LiveServer, admin: UserClient, user: UserClient
) -> None:
    started = datetime.now(UTC)
    root = admin.pair["user"]
    subject = await ok(admin, "POST", "/api/subjects/", {"name": "天文", "intro": "星星"})
    no = subject["no"]
    replaced = await ok(admin, "PUT", f"/api/subjects/{no}/", {"name": "天文学", "intro": "星星", "is_hot": False})
    patched = await ok(admin, "PATCH", f"/api/subjects/{no}/", {"is_hot": True})
    teacher = await ok(admin, "POST", "/api/teachers/", {**NEW_TEACHER, "subject": no})
    tno = teacher["no"]
    moved = await ok(admin, "PATCH", f"/api/teachers/{tno}/", {"subject": 1})
    renamed = await ok(admin, "PUT", f"/api/teachers/{tno}/", {**NEW_TEACHER, "name": "李雷"})
    await ok(admin, "DELETE", f"/api/teachers/{tno}/")
    await ok(admin, "DELETE", f"/api/subjects/{no}/")
    promoted = await ok(admin, "PATCH", f"/api/users/{user.pair['user']['id']}", {"role": "admin"})

    logged = await entries(admin)
    expected = [
        ("user.role", "user", user.pair["user"]["id"], user.pair["user"], promoted),
        ("subject.delete", "subject", no, patched, None),
        ("teacher.delete", "teacher", tno, renamed, None),
        ("teacher.update", "teacher", tno, moved, renamed),
        ("teacher.update", "teacher", tno, teacher, moved),
        ("teacher.create", "teacher", tno, None, teacher),
        ("subject.update", "subject", no, replaced, patched),  # a PATCH of one field: the whole record
        ("subject.update", "subject", no, subject, replaced),
        ("subject.create", "subject", no, None, subject),
    ]
    assert [(e["action"], e["kind"], e["no"], e["before"], e["after"]) for e in logged] == expected
    ids = [entry["id"] for entry in logged]
    assert ids == sorted(ids, reverse=True)
    for entry in logged:
        assert (entry["user_id"], entry["username"], entry["via"]) == (root["id"], root["username"], "api")
        assert ISO_UTC.fullmatch(entry["at"]), entry["at"]
        at = datetime.fromisoformat(entry["at"])
        assert started - timedelta(seconds=1) <= at <= datetime.now(UTC)


async def test_a_change_that_fails_or_changes_nothing_logs_nothing(
    api: LiveServer, admin: UserClient, user: UserClient
) -> None:
    hired = await ok(admin, "POST", "/api/teachers/", NEW_TEACHER)
    before = await entries(admin)
    assert [entry["action"] for entry in before] == ["teacher.create"]
    failures = [
        (admin, "POST", "/api/subjects/", {"name": ""}, 422),
        (admin, "PATCH", "/api/subjects/4242/", {"name": "x"}, 404),
        (admin, "PUT", f"/api/teachers/{hired['no']}/", {**NEW_TEACHER, "subject": 4242}, 422),
        (admin, "DELETE", "/api/subjects/1/", None, 409),
        (admin, "DELETE", "/api/teachers/4242/", None, 404),
        (admin, "PATCH", "/api/users/4242", {"role": "admin"}, 404),
        (admin, "PATCH", f"/api/users/{user.pair['user']['id']}", {"role": "root"}, 422),
        (user, "PATCH", "/api/subjects/1/", {"name": "pwned"}, 403),
        (user, "DELETE", f"/api/teachers/{hired['no']}/", None, 403),
    ]
    for who, method, path, body, status in failures:
        response = await who.request(method, path, json_body=body) if body is not None else \
            await who.request(method, path)
        assert_problem(response, status)
    # Nothing changed either: the same role again, an empty PATCH, the same values again.
    await ok(admin, "PATCH", f"/api/users/{user.pair['user']['id']}", {"role": "user"})
    await ok(admin, "PATCH", "/api/subjects/1/", {})
    subject = (await api.get("/api/subjects/1/")).json()
    await ok(admin, "PUT", "/api/subjects/1/", {key: subject[key] for key in ("name", "intro", "is_hot")})
    assert await entries(admin) == before


async def test_pages_newest_first_and_filters(api: LiveServer, admin: UserClient) -> None:
    for name in ("a", "b", "c"):
        await ok(admin, "PATCH", "/api/subjects/2/", {"name": name})
    await ok(admin, "PATCH", "/api/subjects/3/", {"name": "d"})
    await ok(admin, "PATCH", "/api/teachers/2/", {"name": "e"})

    first = (await admin.get("/api/audit?page_size=2")).json()
    assert first["count"] == 5 and first["previous"] is None and first["next"] == "/api/audit?page_size=2&page=2"
    assert [(e["kind"], e["no"], e["after"]["name"]) for e in first["results"]] == [("teacher", 2, "e"),
                                                                                      ("subject", 3, "d")]
    last = (await admin.get("/api/audit?page=3&page_size=2")).json()
    assert [e["after"]["name"] for e in last["results"]] == ["a"] and last["next"] is None
    assert_problem(await admin.get("/api/audit?page=4&page_size=2"), 404)
    assert len((await admin.get("/api/audit")).json()["results"]) == 5  # 20 a page unless asked

    of_subject_2 = (await admin.get("/api/audit?kind=subject&no=2&page_size=1")).json()
    assert of_subject_2["count"] == 3 and of_subject_2["results"][0]["after"]["name"] == "c"
    assert of_subject_2["next"] == "/api/audit?kind=subject&no=2&page_size=1&page=2"
    assert [e["kind"] for e in await entries(admin, "?no=2")] == ["teacher", "subject", "subject", "subject"]
    assert [e["no"] for e in await entries(admin, "?kind=teacher")] == [2]


@pytest.mark.parametrize("query, field", [
    ("page_size=101", "page_size"), ("page=0", "page"), ("kind=subjects", "kind"), ("kind=", "kind"),
    ("no=0", "no"), ("no=01", "no"), ("no=x", "no"),
])
async def test_bad_queries_are_422_naming_the_parameter(admin: UserClient, query: str, field: str) -> None:
    problem = assert_problem(await admin.get(f"/api/audit?{query}"), 422)
    assert [error["field"] for error in problem["errors"]] == [field]


async def test_a_role_given_on_the_command_line_is_logged_as_the_command_lines(
    api: LiveServer, admin: UserClient
) -> None:
    bob = await sign_up(api, "bob")
    finished = await run_server_py("set-role", "bob", "admin", "--data-dir", str(api.config.server.data_dir))
    assert finished.code == 0, finished.stderr
    [entry] = await entries(admin)
    assert (entry["user_id"], entry["username"], entry["via"]) == (None, None, "cli")
    assert (entry["action"], entry["kind"], entry["no"]) == ("user.role", "user", bob.pair["user"]["id"])
    assert (entry["before"]["role"], entry["after"]["role"]) == ("user", "admin")


async def test_a_change_whose_entry_cannot_be_stored_still_succeeds_and_is_logged(
    api: LiveServer, admin: UserClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert api.services is not None
    store = api.services.backends.store
    assert isinstance(store, SqliteStore)
    await store.database.write(lambda conn: conn.execute("DROP TABLE audit"))
    with caplog.at_level(logging.ERROR, logger="livevote.audit"):
        changed = await admin.request("PATCH", "/api/subjects/1/", json_body={"name": "改名"})
    assert changed.status == 200 and changed.json()["name"] == "改名"
    assert (await api.get("/api/subjects/1/")).json()["name"] == "改名"
    [record] = [r for r in caplog.records if r.name == "livevote.audit"]
    assert "not stored" in record.getMessage() and '"action":"subject.update"' in record.getMessage()
    assert '"name":"改名"' in record.getMessage()
