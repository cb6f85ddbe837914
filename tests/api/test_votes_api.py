"""Votes over REST: one per user and teacher, idempotent, counted atomically."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.harness.server import LiveServer, UserClient, assert_problem, sign_up

TEACHER = 4


async def vote(client: UserClient, value: str | None, teacher: int = TEACHER) -> dict[str, object]:
    if value is None:
        response = await client.request("DELETE", f"/api/teachers/{teacher}/vote")
    else:
        response = await client.request("PUT", f"/api/teachers/{teacher}/vote", json_body={"value": value})
    assert response.status == 200, response.body
    return dict(response.json())


async def test_cast_repeat_switch_withdraw(user: UserClient) -> None:
    assert await vote(user, "good") == {
        "teacher": TEACHER, "value": "good", "good_count": 1, "bad_count": 0, "version": 1
    }
    assert await vote(user, "good") == {
        "teacher": TEACHER, "value": "good", "good_count": 1, "bad_count": 0, "version": 1
    }
    assert await vote(user, "bad") == {
        "teacher": TEACHER, "value": "bad", "good_count": 0, "bad_count": 1, "version": 2
    }
    assert await vote(user, None) == {
        "teacher": TEACHER, "value": None, "good_count": 0, "bad_count": 0, "version": 3
    }
    assert await vote(user, None) == {
        "teacher": TEACHER, "value": None, "good_count": 0, "bad_count": 0, "version": 3
    }


async def test_counts_show_on_the_teacher_and_your_vote_is_readable(api: LiveServer, user: UserClient) -> None:
    other = await sign_up(api, "bob")
    await vote(user, "good")
    await vote(other, "bad")
    teacher = (await api.get(f"/api/teachers/{TEACHER}/")).json()
    assert (teacher["good_count"], teacher["bad_count"], teacher["version"]) == (1, 1, 2)
    mine = (await user.get(f"/api/teachers/{TEACHER}/vote")).json()
    assert mine["value"] == "good" and mine["good_count"] == 1
    assert (await other.get(f"/api/teachers/{TEACHER}/vote/")).json()["value"] == "bad"


async def test_unknown_teacher_is_404(user: UserClient) -> None:
    assert_problem(await user.request("PUT", "/api/teachers/999/vote", json_body={"value": "good"}), 404)
    assert_problem(await user.request("DELETE", "/api/teachers/999/vote"), 404)
    assert_problem(await user.get("/api/teachers/999/vote"), 404)


@pytest.mark.parametrize("body", [{"value": "great"}, {"value": None}, {"value": 1}, {}, {"value": "good", "x": 1}])
async def test_bad_value_is_422(user: UserClient, body: dict[str, object]) -> None:
    problem = assert_problem(await user.request("PUT", f"/api/teachers/{TEACHER}/vote", json_body=body), 422)
    assert problem["errors"]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "GET"])
async def test_voting_needs_a_token(api: LiveServer, method: str) -> None:
    response = await api.request(method, f"/api/teachers/{TEACHER}/vote",
                                 json_body={"value": "good"} if method == "PUT" else None)
    assert_problem(response, 401)


async def test_deleting_a_teacher_deletes_its_votes(api: LiveServer, admin: UserClient, user: UserClient) -> None:
    await vote(user, "good")
    assert (await admin.request("DELETE", f"/api/teachers/{TEACHER}/")).status == 204
    assert_problem(await user.get(f"/api/teachers/{TEACHER}/vote"), 404)


async def test_concurrent_votes_keep_counts_equal_to_the_votes(api: LiveServer) -> None:
    """200 concurrent PUTs from 50 users on one teacher: the counters equal the vote rows."""
    users = await asyncio.gather(*(sign_up(api, f"voter{i}") for i in range(50)))
    rng = random.Random(7)
    requests = [(rng.choice(users), rng.choice(["good", "bad"])) for _ in range(200)]
    results = await asyncio.gather(*(
        u.request("PUT", f"/api/teachers/{TEACHER}/vote", json_body={"value": v}) for u, v in requests
    ))
    assert all(r.status == 200 for r in results)
    teacher = (await api.get(f"/api/teachers/{TEACHER}/")).json()
    assert api.services is not None
    good, bad = await api.services.backends.store.tally_votes(TEACHER)
    assert (teacher["good_count"], teacher["bad_count"]) == (good, bad)
    assert good + bad == len({id(u) for u, _ in requests})
    finals = {r.json()["version"] for r in results}
    assert teacher["version"] == max(finals), "every change bumped the version once, and the last answer saw it"
