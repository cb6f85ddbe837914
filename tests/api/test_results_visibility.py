"""Results visibility: counts a reader may not see are withheld from every REST body and every
live message, and arrive as a snapshot the moment they may be seen (a reveal, a close, the
reader's first vote)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.server import LiveServer, UserClient, sign_up
from tests.harness.ws_client import LiveClient

SUBJECT, TEACHER, OTHER_SUBJECT_TEACHER = 1, 1, 4


async def set_subject(admin: UserClient, **fields: Any) -> dict[str, Any]:
    response = await admin.request("PATCH", f"/api/subjects/{SUBJECT}/", json_body=fields)
    assert response.status == 200, response.body
    return dict(response.json())


async def vote(client: UserClient, value: str | None, teacher: int = TEACHER) -> dict[str, Any]:
    method, body = ("DELETE", None) if value is None else ("PUT", {"value": value})
    response = await client.request(method, f"/api/teachers/{teacher}/vote", json_body=body)
    assert response.status == 200, response.body
    return dict(response.json())


async def counts_seen(client: UserClient | LiveServer, teacher: int = TEACHER) -> tuple[Any, Any]:
    body = (await client.get(f"/api/teachers/{teacher}/")).json()
    return body["good_count"], body["bad_count"]


async def totals_seen(client: UserClient | LiveServer) -> tuple[Any, int]:
    stats = (await client.get("/api/stats")).json()
    subject = next(s for s in stats["subjects"] if s["no"] == SUBJECT)
    return subject["good_count"], stats["votes_total"]


async def test_hidden_counts_reach_admins_only(api: LiveServer, admin: UserClient, user: UserClient) -> None:
    other = await sign_up(api, "olga")
    await vote(other, "good")
    await vote(other, "bad", OTHER_SUBJECT_TEACHER)
    assert (await set_subject(admin, visibility="hidden"))["visibility"] == "hidden"
    for reader in (api, user):
        assert await counts_seen(reader) == (None, None)
        assert await totals_seen(reader) == (None, 1)  # the total counts only what may be seen
        listed = (await reader.get(f"/api/subjects/{SUBJECT}/teachers/")).json()
        assert {(t["good_count"], t["bad_count"]) for t in listed} == {(None, None)}
        seed_view = (await reader.get(f"/api/teachers/?sno={SUBJECT}")).json()
        assert {t["good_count"] for t in seed_view["teachers"]} == {None}
        assert await counts_seen(reader, OTHER_SUBJECT_TEACHER) == (0, 1)
        for path in (f"/api/teachers/{TEACHER}/history", f"/api/subjects/{SUBJECT}/history"):
            last = (await reader.get(path)).json()["buckets"][-1]
            assert (last["good_count"], last["bad_count"], last["votes"]) == (None, None, 1)
    assert await counts_seen(admin) == (1, 0) and await totals_seen(admin) == (1, 2)
    assert (await admin.get(f"/api/subjects/{SUBJECT}/history")).json()["buckets"][-1]["good_count"] == 1
    answer = await vote(user, "good")
    assert (answer["value"], answer["good_count"], answer["bad_count"]) == ("good", None, None)
    assert await counts_seen(admin) == (2, 0)
    await set_subject(admin, visibility="always")
    assert await counts_seen(api) == (2, 0)


async def test_after_vote_shows_a_users_own_subjects_once_they_voted(
    api: LiveServer, admin: UserClient, user: UserClient
) -> None:
    await set_subject(admin, visibility="after_vote")
    assert await counts_seen(user) == (None, None) and await counts_seen(api) == (None, None)
    mine = await vote(user, "bad", TEACHER + 1)  # another teacher of the same subject
    assert (mine["good_count"], mine["bad_count"]) == (0, 1)
    assert await counts_seen(user) == (0, 0)
    assert await counts_seen(api) == (None, None)
    withdrawn = await vote(user, None, TEACHER + 1)
    assert (withdrawn["good_count"], withdrawn["bad_count"]) == (None, None)
    assert await counts_seen(user) == (None, None)


async def test_after_close_shows_everyone_once_voting_closed(admin: UserClient, user: UserClient) -> None:
    await set_subject(admin, visibility="after_close")
    voted = await vote(user, "good")
    assert voted["good_count"] is None
    await set_subject(admin, state="closed")
    assert await counts_seen(user) == (1, 0)


async def test_an_unknown_visibility_is_422(admin: UserClient) -> None:
    response = await admin.request("PATCH", f"/api/subjects/{SUBJECT}/", json_body={"visibility": "later"})
    assert response.status == 422 and response.json()["errors"][0]["field"] == "visibility"


async def watch(server: LiveServer, token: str, channel: str = f"subject:{SUBJECT}") -> tuple[LiveClient, Any]:
    client = await LiveClient.connect(server.base_url, token)
    await client.expect("welcome")
    assert (await client.request("subscribe", channel=channel))["type"] == "ack"
    return client, await client.expect("snapshot", channel=channel)


def teacher_counts(snapshot: dict[str, Any]) -> tuple[Any, Any]:
    teacher = next(t for t in snapshot["teachers"] if t["no"] == TEACHER)
    return teacher["good_count"], teacher["bad_count"]


@pytest.mark.parametrize("reveal", [{"visibility": "always"}, {"state": "closed"}])
async def test_live_counts_are_withheld_until_revealed(
    api: LiveServer, admin: UserClient, user: UserClient, reveal: dict[str, str]
) -> None:
    await set_subject(admin, visibility="after_close")
    blind, snapshot = await watch(api, user.access_token)
    seer, seen = await watch(api, admin.access_token)
    board, totals = await watch(api, user.access_token, "dashboard")
    try:
        assert teacher_counts(snapshot) == (None, None) and teacher_counts(seen) == (0, 0)
        assert next(s for s in totals["subjects"] if s["no"] == SUBJECT)["good_count"] is None
        voter = await sign_up(api, "vic")
        await vote(voter, "good")
        await seer.expect("votes", channel=f"subject:{SUBJECT}")
        assert (await blind.request("ping"))["type"] == "pong"  # sent after any votes frame would have been
        assert (await board.request("ping"))["type"] == "pong"
        assert not [m for m in blind.messages + board.messages if m["type"] == "votes"]
        acked = await blind.request("vote", teacher=TEACHER + 1, value="bad")
        assert (acked["type"], acked["value"], acked["bad_count"]) == ("ack", "bad", None)

        await set_subject(admin, **reveal)
        assert teacher_counts(await blind.expect("snapshot", channel=f"subject:{SUBJECT}")) == (1, 0)
        revealed = await board.expect("snapshot", channel="dashboard")
        assert next(s for s in revealed["subjects"] if s["no"] == SUBJECT)["good_count"] == 1
    finally:
        for client in (blind, seer, board):
            await client.close()


async def test_a_users_first_vote_brings_their_pages_the_counts(
    api: LiveServer, admin: UserClient, user: UserClient
) -> None:
    await set_subject(admin, visibility="after_vote")
    other = await sign_up(api, "otto")
    await vote(other, "bad")
    page, snapshot = await watch(api, user.access_token)
    bystander, _ = await watch(api, other.access_token)
    try:
        assert teacher_counts(snapshot) == (None, None)
        acked = await page.request("vote", teacher=TEACHER + 2, value="good")  # the socket's vote op
        assert (acked["type"], acked["good_count"]) == ("ack", 1)
        assert teacher_counts(await page.expect("snapshot", channel=f"subject:{SUBJECT}")) == (0, 1)
        await vote(other, "good")
        update = await page.expect("votes", channel=f"subject:{SUBJECT}")
        assert update["updates"][0]["good_count"] == 1
        assert not [m for m in bystander.messages if m["type"] == "snapshot"]  # its sight did not change
        await vote(user, None, TEACHER + 2)
        assert teacher_counts(await page.expect("snapshot", channel=f"subject:{SUBJECT}")) == (None, None)
    finally:
        await page.close()
        await bystander.close()


async def test_a_vote_over_the_socket_answers_only_what_the_voter_may_see(
    api: LiveServer, admin: UserClient, user: UserClient
) -> None:
    await set_subject(admin, visibility="hidden")
    page = await LiveClient.connect(api.base_url, user.access_token)
    try:
        await page.expect("welcome")
        answer = await page.request("vote", teacher=TEACHER, value="good")
        assert (answer["type"], answer["value"]) == ("ack", "good")
        assert (answer["good_count"], answer["bad_count"]) == (None, None)
        await set_subject(admin, visibility="after_vote")
        answer = await page.request("vote", teacher=TEACHER, value="bad")  # they have a vote in it: they see
        assert (answer["good_count"], answer["bad_count"]) == (0, 1)
    finally:
        await page.close()
