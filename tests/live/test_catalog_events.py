"""Catalog changes reach open sockets live, on every process: a new, renamed or removed
teacher or subject needs no reload."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ServerFactory
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, sign_up, sign_up_admin
from tests.harness.ws_client import LiveClient

NEW_TEACHER = {"name": "钱学森", "sex": True, "birth": "1911-12-11", "subject": 1}


async def subscribed(server: LiveServer, token: str, channel: str) -> LiveClient:
    client = await LiveClient.connect(server.base_url, token)
    await client.expect("welcome")
    assert (await client.request("subscribe", channel=channel))["type"] == "ack"
    await client.expect("snapshot", channel=channel)
    return client


async def test_teacher_and_subject_changes_reach_the_pages_that_show_them(
    start_server: ServerFactory, redis_or_none: RedisServer | None, tmp_path: Path
) -> None:
    """In scaled mode the admin writes on one process and the sockets listen on another."""
    shared = {"redis__url": redis_or_none.url} if redis_or_none else {}
    writer = await start_server(tmp_path / "host", **shared)
    reader = await start_server(tmp_path / "host", **shared) if redis_or_none else writer
    admin = await sign_up_admin(writer)
    token = (await sign_up(writer, "ursula")).access_token
    subject_page = await subscribed(reader, token, "subject:1")
    other_subject = await subscribed(reader, token, "subject:2")
    board = await subscribed(reader, token, "dashboard")
    try:
        created = await admin.request("POST", "/api/teachers/", json_body=NEW_TEACHER)
        assert created.status == 201
        no = created.json()["no"]
        event = await subject_page.expect("catalog", kind="teacher")
        assert event["record"]["no"] == no and event["record"]["name"] == "钱学森" and event["record"]["subject"] == 1
        await other_subject.expect("catalog", kind="teacher")  # it keeps only its own subject's teachers

        teacher_page = await subscribed(reader, token, f"teacher:{no}")
        assert (await admin.request("PATCH", f"/api/teachers/{no}/", json_body={"name": "钱老"})).status == 200
        renamed = await teacher_page.expect("catalog", kind="teacher")
        assert renamed["record"]["name"] == "钱老"

        assert (await admin.request("PATCH", "/api/subjects/1/", json_body={"name": "Python 进阶"})).status == 200
        subject_event = await board.expect("catalog", kind="subject")
        assert subject_event["record"] == {**subject_event["record"], "no": 1, "name": "Python 进阶"}
        await subject_page.expect("catalog", kind="subject")
        assert (await board.request("unsubscribe", channel="dashboard"))["type"] == "ack"
        assert (await board.request("subscribe", channel="dashboard"))["type"] == "ack"
        snapshot = await board.expect("snapshot", channel="dashboard")
        assert [s["name"] for s in snapshot["subjects"] if s["no"] == 1] == ["Python 进阶"]

        assert (await admin.request("DELETE", f"/api/teachers/{no}/")).status == 204
        gone = await subject_page.expect("catalog", kind="teacher", removed=no)
        assert "record" not in gone
        assert not [m for m in board.messages if m["type"] == "catalog" and m["kind"] == "teacher"]
        await teacher_page.close()
    finally:
        for client in (subject_page, other_subject, board):
            await client.close()
