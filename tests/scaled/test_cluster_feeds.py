"""The live channel on a Redis Cluster: three real `python server.py --redis-cluster` processes
on one SQLite data dir and a real cluster of 3 masters and 3 replicas (tests/harness/redis_cluster.py),
each process named a different node, with real sockets on several subjects.

- Votes cast through any process, over REST or the socket's `vote` op, reach every socket that
  watches them on every process, and every socket ends showing the store's counts.
- A process receives the vote feed of a subject only while one of its sockets watches it
  (`livevote_vote_feed_messages_total` of each process's /metrics); a dashboard makes it take
  the all-subjects feed instead. The messages per vote each process received are printed
  (pytest -s) for the capacity model in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from services.events import ALL_VOTES, subject_votes
from tests.harness.cli import create_admin
from tests.harness.live_cluster import FAST_VOTERS, PREFIX, cluster_processes
from tests.harness.live_views import State, Watchers, close_all, store_state
from tests.harness.metrics import FEED_MESSAGES, metric
from tests.harness.redis_cluster import ClusterServers
from tests.harness.server import JsonClient, UserClient, log_in, sign_up, wait_for
from tests.harness.server_process import logged_errors
from tests.harness.voting import Voter, vote_all
from tests.harness.ws_client import LiveClient, welcomed


async def feed_messages(servers: Sequence[JsonClient]) -> list[float]:
    return [await metric(server, FEED_MESSAGES) for server in servers]


async def wait_heard(
    servers: Sequence[JsonClient], heard: Sequence[float], expected: Mapping[int, int], timeout: float = 10.0
) -> list[float]:
    """Until each process named in `expected` (by index) has received exactly that many vote feed
    messages since `heard`; more fails at once. Returns every process's counter as last read."""
    latest = list(heard)

    async def done() -> bool:
        latest[:] = await feed_messages(servers)
        got = {index: latest[index] - heard[index] for index in expected}
        assert all(got[index] <= count for index, count in expected.items()), (
            f"feed messages received per process {got}, more than the changes on their subjects {dict(expected)}"
        )
        return got == dict(expected)

    try:
        await wait_for(done, timeout, what="the processes receive their subjects' changes")
    except TimeoutError:
        got = {index: latest[index] - heard[index] for index in expected}
        raise AssertionError(f"feed messages received per process {got}, expected {dict(expected)}") from None
    return latest


def changes(before: State, after: State, subjects: Iterable[int] | None = None) -> int:
    """How many count changes (so feed messages) there were on these subjects' teachers: the
    growth of their versions (every cast, switch or withdrawal adds one; a repeat nothing)."""
    wanted = None if subjects is None else set(subjects)
    return sum(
        version - (before[no][2] if no in before else 0)
        for no, (_, _, version, subject) in after.items()
        if wanted is None or subject in wanted
    )


async def create_subjects(admin: UserClient, count: int) -> list[int]:
    """`count` more subjects with three teachers each; returns their numbers."""
    created = []
    for index in range(count):
        subject = await admin.request("POST", "/api/subjects/", json_body={"name": f"Extra subject {index}"})
        assert subject.status == 201, subject.body
        created.append(subject.json()["no"])
        for t in range(3):
            teacher = await admin.request("POST", "/api/teachers/", json_body={
                "name": f"Teacher {index}-{t}", "sex": t % 2 == 0, "birth": "1985-01-01", "subject": created[-1],
            })
            assert teacher.status == 201, teacher.body
    return created


async def feeds_by_master(cluster: ClusterServers, subjects: Iterable[int]) -> dict[int, list[str]]:
    """Which master serves which feed: the subjects' and the dashboards' (votes:all)."""
    where: dict[int, list[str]] = collections.defaultdict(list)
    for subject in subjects:
        where[await cluster.master_for_key(PREFIX + subject_votes(subject))].append(str(subject))
    where[await cluster.master_for_key(PREFIX + ALL_VOTES)].append("all")
    return dict(where)


async def test_votes_reach_every_watcher_on_every_process_and_each_process_hears_only_its_subjects(
    tmp_path: Path, shared_cluster: ClusterServers
) -> None:
    data_dir = tmp_path / "host"
    async with cluster_processes(3, data_dir, shared_cluster, **FAST_VOTERS) as servers:
        p0, _, p2 = servers
        watcher = await sign_up(p0, "watcher")
        rest_voters = [await sign_up(servers[i], f"rest{i}") for i in range(3)]
        socket_voters = [
            await welcomed(servers[i], (await sign_up(servers[i], f"sock{i}")).access_token) for i in range(3)
        ]
        watchers = Watchers()
        idle: list[LiveClient] = []
        try:
            # Isolation: process 0 watches subject 1 only, process 1 subject 2 only, and
            # process 2 subject 2 through one of its teachers (teacher 5), so its subject's feed.
            await watchers.open(servers, watcher.access_token, {
                0: ["subject:1", "subject:1"], 1: ["subject:2", "subject:2"], 2: ["teacher:5"],
            })
            state = await store_state(p0)
            heard = await feed_messages(servers)
            # Subject 2's votes are cast through process 0, which does not watch it.
            await vote_all(
                [rest_voters[0], socket_voters[0]],
                [[(4, "good"), (5, "bad"), (6, "good"), (5, "good"), (4, None)], [(6, "bad"), (5, "good")]],
            )
            after = await watchers.wait_converged(p0)
            expected = changes(state, after, [2])
            assert expected == 7 and changes(state, after) == expected

            now = await wait_heard(servers, heard, {1: expected, 2: expected})
            assert now[0] == heard[0], (
                f"process 0 watches no subject 2 but received {now[0] - heard[0]} of its messages"
            )

            # And the other way round: subject 1's votes, cast through process 1, reach process 0 only.
            state, heard = after, now
            await vote_all([rest_voters[1], socket_voters[1]], [[(1, "good"), (2, "bad")], [(3, "bad"), (1, "bad")]])
            after = await watchers.wait_converged(p0)
            expected = changes(state, after, [1])
            assert expected == 4 and changes(state, after) == expected

            now = await wait_heard(servers, heard, {0: expected})
            assert now[1:] == heard[1:], f"processes 1 and 2 received subject 1's messages: {heard} -> {now}"

            # Process 1's last subject 2 sockets leave: it drops the feed, process 2 keeps it.
            for client, channel in watchers.on(1):
                ack = await client.request("unsubscribe", channel=channel)
                assert ack["type"] == "ack", ack
                idle.append(client)
            watchers.items = [item for item in watchers.items if item[2] != 1]
            state, heard = after, now
            await vote_all([rest_voters[2]], [[(4, "bad"), (6, "good")]])
            after = await watchers.wait_converged(p0)
            expected = changes(state, after, [2])
            assert expected == 2

            now = await wait_heard(servers, heard, {2: expected})
            assert now[:2] == heard[:2], (
                f"after its last subject 2 socket left, process 1 still heard it: {heard} -> {now}"
            )

            # Mixed: ten subjects; process 0 watches 1-3, process 1 watches 4-8 and teacher 1
            # (subject 1), process 2 a dashboard (the all-subjects feed) besides subjects 9-10.
            await create_admin(data_dir, shared_cluster.url, "--redis-cluster")
            admin = await log_in(p2, "root", "admin password")
            subjects = [1, 2, 3, 4, 5, *await create_subjects(admin, 5)]
            assert subjects == list(range(1, 11))
            await watchers.open(servers, watcher.access_token, {
                0: ["subject:2", "subject:3", "subject:3"],
                1: [f"subject:{no}" for no in (4, 5, 6, 7, 8, 4, 6)] + ["teacher:1"],
                2: ["dashboard", "dashboard", "subject:9", "subject:10"],
            })
            feeds = {0: {1, 2, 3}, 1: {1, 4, 5, 6, 7, 8}, 2: set(subjects)}
            marks = [len(client.messages) for client in watchers.clients]
            state = await store_state(p0)
            heard = await feed_messages(servers)
            teachers = sorted(state)
            assert len(teachers) == 30
            rng = random.Random(2024)
            scripts = [[(rng.choice(teachers), rng.choice(("good", "bad", None))) for _ in range(30)] for _ in range(6)]
            voters: list[Voter] = [*rest_voters, *socket_voters]
            started = asyncio.get_running_loop().time()
            ops = await vote_all(voters, scripts)
            seconds = asyncio.get_running_loop().time() - started
            after = await watchers.wait_converged(p0)
            total = changes(state, after)
            expected_heard = [changes(state, after, feeds[index]) for index in range(3)]
            assert expected_heard[2] == total

            now = await wait_heard(servers, heard, dict(enumerate(expected_heard)))
            live = [
                sum(1 for m in client.messages[mark:] if m.get("type") == "votes")
                for client, mark in zip(watchers.clients, marks, strict=True)
            ]
            assert min(live) >= 1, "every socket got live votes messages, not only snapshots"
            per_change = [(n - h) / total for n, h in zip(now, heard, strict=True)]
            masters = await feeds_by_master(shared_cluster, subjects)
            print(
                f"\nFIGURES cluster feeds: 3 processes, 10 subjects of 3 teachers, feeds per master {masters};"
                f" {ops} vote ops ({len(voters) // 2} REST, {len(voters) // 2} socket voters, one per process each,"
                f" {ops / seconds:.0f} ops/s) made {total} changes"
                f"\nFIGURES cluster feeds: messages received per change: process 0 (subjects 1-3)"
                f" {per_change[0]:.2f}, process 1 (subjects 1, 4-8) {per_change[1]:.2f},"
                f" process 2 (dashboard) {per_change[2]:.2f}; all processes {sum(per_change):.2f} per change"
                f" (3.00 if every process heard every vote; 0.30 / 0.60 / 1.00 for votes spread evenly); per vote op"
                f" {[round((n - h) / ops, 2) for n, h in zip(now, heard, strict=True)]}"
                f"\nFIGURES cluster feeds: live votes messages per socket min/max {min(live)}/{max(live)}"
                f" over {len(live)} sockets"
            )
            assert not logged_errors(servers)
        finally:
            await watchers.close()
            await close_all([*idle, *socket_voters])
