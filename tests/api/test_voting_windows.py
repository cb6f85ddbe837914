"""Voting windows: an admin opens and closes a subject now or on a schedule, a vote on a closed
subject is refused (409 `voting_closed`, on REST and on the socket), and open pages hear the
state change at its moment, with no process needing to act then."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.harness.server import LiveServer, UserClient, assert_problem, sign_up
from tests.harness.ws_client import LiveClient

TEACHER = 1  # of subject 1


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def soon(seconds: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


async def patch_subject(admin: UserClient, body: dict[str, Any], no: int = 1) -> dict[str, Any]:
    response = await admin.request("PATCH", f"/api/subjects/{no}/", json_body=body)
    assert response.status == 200, response.body
    return dict(response.json())


async def put_vote(client: UserClient, value: str | None) -> Any:
    if value is None:
        return await client.request("DELETE", f"/api/teachers/{TEACHER}/vote")
    return await client.request("PUT", f"/api/teachers/{TEACHER}/vote", json_body={"value": value})


def assert_closed(response: Any) -> None:
    problem = assert_problem(response, 409)
    assert problem["code"] == "voting_closed"


async def test_closing_now_refuses_changes_and_keeps_what_was_counted(admin: UserClient, user: UserClient) -> None:
    assert (await put_vote(user, "good")).status == 200
    closed = await patch_subject(admin, {"state": "closed"})
    assert closed["state"] == "closed" and closed["closes_at"] is not None and closed["opens_at"] is None
    assert_closed(await put_vote(user, "bad"))
    assert_closed(await put_vote(user, None))
    again = await put_vote(user, "good")  # the vote it already has: a retry is answered, not refused
    assert again.status == 200 and again.json()["good_count"] == 1
    teacher = (await user.get(f"/api/teachers/{TEACHER}/")).json()
    assert (teacher["good_count"], teacher["bad_count"], teacher["version"]) == (1, 0, 1)

    reopened = await patch_subject(admin, {"state": "open"})
    assert reopened["state"] == "open" and reopened["closes_at"] is None
    assert (await put_vote(user, "bad")).json()["bad_count"] == 1
    assert (await patch_subject(admin, {"state": "open"}))["opens_at"] == reopened["opens_at"]  # no change


async def test_a_schedule_decides_the_state(admin: UserClient, user: UserClient) -> None:
    later = await patch_subject(admin, {"opens_at": soon(3600), "closes_at": soon(7200)})
    assert later["state"] == "closed"
    assert_closed(await put_vote(user, "good"))
    now_open = await patch_subject(admin, {"opens_at": soon(-60)})
    assert now_open["state"] == "open" and now_open["closes_at"] == later["closes_at"]
    assert (await put_vote(user, "good")).status == 200
    # closing now drops nothing of the schedule but its end; opening again keeps that end no more
    closed = await patch_subject(admin, {"state": "closed"})
    assert closed["opens_at"] == now_open["opens_at"] and closed["state"] == "closed"
    unscheduled = await patch_subject(admin, {"opens_at": None, "closes_at": None})
    assert unscheduled["state"] == "open"


async def test_a_scheduled_close_takes_effect_at_its_time(admin: UserClient, user: UserClient) -> None:
    closes_at = datetime.now(UTC) + timedelta(seconds=1.5)
    await patch_subject(admin, {"closes_at": iso(closes_at)})
    assert (await put_vote(user, "good")).status == 200
    await asyncio.sleep((closes_at - datetime.now(UTC)).total_seconds() + 0.05)  # nobody acts meanwhile
    assert_closed(await put_vote(user, "bad"))
    assert (await user.get("/api/subjects/1/")).json()["state"] == "closed"


@pytest.mark.parametrize("body, field, code", [
    ({"opens_at": "2030-01-01T10:00:00Z", "closes_at": "2030-01-01T09:00:00Z"}, "body", "closes_before_opens"),
    ({"opens_at": "2030-01-01T10:00:00Z", "closes_at": "2030-01-01T10:00:00Z"}, "body", "closes_before_opens"),
    ({"closes_at": "2030-01-01T10:00:00"}, "closes_at", "timezone_aware"),
    ({"closes_at": 1893456000}, "closes_at", "datetime_type"),
    ({"closes_at": "tomorrow"}, "closes_at", "datetime_from_date_parsing"),
    ({"state": "closed", "closes_at": "2030-01-01T10:00:00Z"}, "body", "state_with_schedule"),
    ({"state": "paused"}, "state", "literal_error"),
])
async def test_bad_windows_are_422(admin: UserClient, body: dict[str, Any], field: str, code: str) -> None:
    problem = assert_problem(await admin.request("PATCH", "/api/subjects/1/", json_body=body), 422)
    assert {(error["field"], error["code"]) for error in problem["errors"]} == {(field, code)}


async def test_a_window_is_checked_against_the_one_stored(admin: UserClient) -> None:
    await patch_subject(admin, {"opens_at": "2030-01-01T10:00:00+08:00"})
    problem = assert_problem(
        await admin.request("PATCH", "/api/subjects/1/", json_body={"closes_at": "2030-01-01T01:00:00Z"}), 422
    )
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("closes_at", "closes_before_opens")]
    stored = (await admin.get("/api/subjects/1/")).json()
    assert (stored["opens_at"], stored["closes_at"]) == ("2030-01-01T02:00:00Z", None)


async def test_only_an_admin_sets_a_window(user: UserClient) -> None:
    assert_problem(await user.request("PATCH", "/api/subjects/1/", json_body={"state": "closed"}), 403)


async def test_the_socket_refuses_a_vote_and_pages_hear_the_scheduled_change(
    api: LiveServer, admin: UserClient
) -> None:
    voter = await sign_up(api, "vera")
    client = await LiveClient.connect(api.base_url, voter.access_token)
    try:
        await client.expect("welcome")
        assert (await client.request("subscribe", channel="subject:1"))["type"] == "ack"
        snapshot = await client.expect("snapshot", channel="subject:1")
        assert snapshot["subject"]["state"] == "open" and snapshot["now"].endswith("Z")

        await patch_subject(admin, {"closes_at": soon(1.0)})
        scheduled = await client.expect("catalog", kind="subject")
        assert scheduled["record"]["state"] == "open"
        closed = await client.expect("catalog", kind="subject", timeout=5.0, record={**scheduled["record"],
                                                                                    "state": "closed"})
        assert closed["channel"] == "subject:1"
        refused = await client.request("vote", teacher=TEACHER, value="good")
        assert (refused["type"], refused["code"]) == ("error", "voting_closed")
    finally:
        await client.close()
