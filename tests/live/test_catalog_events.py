"""Catalog changes reach open sockets live, on every process: a new, renamed or removed
teacher or subject needs no reload."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ServerFactory
from tests.harness.live_views import subscribe
from tests.harness.page_model import wait_showing_the_store
from tests.harness.redis_server import RedisServer
from tests.harness.server import LiveServer, sign_up, sign_up_admin, two_processes
from tests.harness.ws_client import LiveClient, welcomed

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


async def watching(server: LiveServer, token: str, channel: str) -> LiveClient:
    """A socket subscribed to `channel` that keeps every message, for page_model to fold."""
    client = await welcomed(server, token)
    await subscribe(client, channel)
    return client


async def test_a_teacher_channel_follows_its_teacher_to_another_subject(
    start_server: ServerFactory, redis_or_none: RedisServer | None, tmp_path: Path
) -> None:
    """The page open before the move, and one opened after it, keep showing the teacher's votes."""
    writer, reader = await two_processes(start_server, redis_or_none, tmp_path)
    admin = await sign_up_admin(writer)
    voter = await sign_up(writer, "vera")
    before = await watching(reader, voter.access_token, "teacher:1")
    try:
        moved = await admin.request("PATCH", "/api/teachers/1/", json_body={"subject": 2})
        assert moved.status == 200 and moved.json()["subject"] == 2
        await wait_showing_the_store(before, "teacher:1", writer)
        after = await watching(reader, voter.access_token, "teacher:1")
        for value in ("good", "bad", None):
            vote = await voter.request("PUT" if value else "DELETE", "/api/teachers/1/vote",
                                       **({"json_body": {"value": value}} if value else {}))
            assert vote.status == 200, vote.body
            for page in (before, after):
                await wait_showing_the_store(page, "teacher:1", writer)
        await after.close()
    finally:
        await before.close()


async def test_a_deleted_records_channel_is_not_found_while_another_socket_holds_it(
    start_server: ServerFactory, redis_or_none: RedisServer | None, tmp_path: Path
) -> None:
    writer, reader = await two_processes(start_server, redis_or_none, tmp_path)
    admin = await sign_up_admin(writer)
    token = (await sign_up(writer, "wanda")).access_token
    subject = (await admin.request("POST", "/api/subjects/", json_body={"name": "短命"})).json()["no"]
    created = await admin.request("POST", "/api/teachers/", json_body={**NEW_TEACHER, "subject": subject})
    teacher = created.json()["no"]
    holders = [await subscribed(reader, token, channel) for channel in (f"teacher:{teacher}", f"subject:{subject}")]
    try:
        assert (await admin.request("DELETE", f"/api/teachers/{teacher}/")).status == 204
        await holders[0].expect("catalog", kind="teacher", removed=teacher)
        assert (await admin.request("DELETE", f"/api/subjects/{subject}/")).status == 204
        await holders[1].expect("catalog", kind="subject", removed=subject)
        late = await LiveClient.connect(reader.base_url, token)
        for channel in (f"teacher:{teacher}", f"subject:{subject}"):
            refused = await late.request("subscribe", channel=channel)
            assert (refused["type"], refused["code"]) == ("error", "not_found"), refused
        await late.close()
    finally:
        for client in holders:
            await client.close()


async def test_catalog_changes_made_while_redis_is_down_reach_open_pages_after_the_gap(
    start_server: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    """On the process that made the change as on the others: the gap's snapshots carry the records."""
    writer, reader = await two_processes(start_server, redis_server, tmp_path)
    admin = await sign_up_admin(writer)
    token = (await sign_up(writer, "xena")).access_token
    pages = [
        (channel, await watching(server, token, channel))
        for server in (writer, reader) for channel in ("subject:1", "subject:2", "dashboard")
    ]
    try:
        # the admin's session is one this process has seen active, so it stays usable meanwhile
        assert (await admin.request("PATCH", "/api/subjects/3/", json_body={})).status == 200
        await redis_server.kill()
        created = await admin.request("POST", "/api/teachers/", json_body=NEW_TEACHER)
        assert created.status == 201, created.body
        moved = await admin.request("PATCH", "/api/teachers/2/", json_body={"subject": 2, "name": "搬走"})
        assert moved.status == 200
        assert (await admin.request("PATCH", "/api/subjects/1/", json_body={"name": "改名"})).status == 200
        assert (await admin.request("POST", "/api/subjects/", json_body={"name": "新科目"})).status == 201
        await redis_server.start()
        for channel, client in pages:
            await wait_showing_the_store(client, channel, writer)
    finally:
        for _, client in pages:
            await client.close()
