"""The live channel on a Redis Cluster: three real `python server.py --redis-cluster` processes
on one SQLite data dir and a real cluster of 3 masters and 3 replicas (tests/harness/redis_cluster.py),
each process named a different node, with real sockets on several subjects.

- Votes cast through any process, over REST or the socket's `vote` op, reach every socket that
  watches them on every process, and every socket ends showing the store's counts.
- A process receives the vote feed of a subject only while one of its sockets watches it
  (`livevote_vote_feed_messages_total` of each process's /metrics); a dashboard makes it take
  the all-subjects feed instead. The messages per vote each process received are printed
  (pytest -s) for the README's capacity model.
- logout-all closes the user's sockets on every process (`revoked`, then 4003) within 1 s.
- kill -9 of the master that serves a watched subject's feed: the cluster fails over, votes flow
  again without restarting anything, every socket converges, and no acknowledged vote is lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from redis.crc import key_slot

from services.events import ALL_VOTES, REVOKED, subject_votes
from tests.harness.cli import create_admin
from tests.harness.metrics import FEED_MESSAGES, metric
from tests.harness.redis_cluster import ClusterServers
from tests.harness.scaled import (
    close_all,
    dashboard_view,
    start_process,
    stop_process,
    store_totals,
    subscribe,
    teacher_view,
)
from tests.harness.server import JsonClient, ServerProcess, UserClient, log_in, sign_up, wait_for
from tests.harness.voting import Voter, VoteStream, cast, vote_all
from tests.harness.ws_client import LiveClient, refused_status, welcomed

CONFIG = {"ws.rate_limit": 10000, "ws.rate_burst": 10000}
"""Socket voters vote back to back, far above the default 20 ops/s of a page."""

PREFIX = "lv:"
"""The broker's key prefix: a subject's feed is the sharded channel lv:votes:{<sno>}."""

State = dict[int, tuple[int, int, int, int]]
"""Per teacher: good_count, bad_count, version, subject."""


# -- processes, sockets, metrics -------------------------------------------------------


@contextlib.asynccontextmanager
async def cluster_processes(
    count: int, data_dir: Path, cluster: ClusterServers, nodes: Sequence[int] = (), /, **config: object
) -> AsyncIterator[list[ServerProcess]]:
    """`count` processes on one data dir and one cluster, each given another node's URL (any node
    will do: the client discovers the rest), or the node of `nodes` (ports) at its index. The
    first creates and seeds the store; the others start together once it has."""
    ports = [*nodes, *(port for port in cluster.running_ports if port not in nodes)]
    urls = [f"redis://127.0.0.1:{port}/0" for port in ports]
    started: list[ServerProcess] = []

    async def start(index: int) -> ServerProcess:
        server = await start_process(data_dir, urls[index % len(urls)], "--redis-cluster", **config)
        started.append(server)
        return server

    try:
        first = await start(0)
        rest = await asyncio.gather(*(start(index) for index in range(1, count)))
        yield [first, *rest]
    finally:
        await asyncio.gather(*(stop_process(server) for server in started))


def logged_errors(servers: Sequence[ServerProcess]) -> list[str]:
    """Errors and tracebacks the processes logged, but for tornado's access log (a 503 is an
    answer, not a fault)."""
    return [
        f"process {index}: {line}" for index, server in enumerate(servers) for line in server.lines
        if ("ERROR" in line or "Traceback" in line or "CRITICAL" in line) and "tornado.access" not in line
    ]


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


async def resyncs(servers: Sequence[JsonClient]) -> list[float]:
    return [await metric(server, "livevote_broker_resyncs_total") for server in servers]


class Watchers:
    """Sockets and the channel each one watches, on several processes."""

    def __init__(self) -> None:
        self.items: list[tuple[LiveClient, str, int]] = []
        """(socket, channel, index of its process)"""

    @property
    def clients(self) -> list[LiveClient]:
        return [client for client, _, _ in self.items]

    async def open(self, servers: Sequence[JsonClient], token: str, layout: Mapping[int, Iterable[str]]) -> None:
        """Per process index, one socket per channel listed (a channel listed twice: two sockets)."""
        opened = []
        for index, channels in layout.items():
            for channel in channels:
                opened.append((await welcomed(servers[index], token), channel, index))
        self.items.extend(opened)
        await asyncio.gather(*(subscribe(client, channel) for client, channel, _ in opened))

    def on(self, index: int) -> list[tuple[LiveClient, str]]:
        return [(client, channel) for client, channel, where in self.items if where == index]

    async def close(self) -> None:
        await close_all(self.clients)


async def store_state(server: JsonClient) -> State:
    """Every teacher's counts and subject, from the store (one request per subject)."""
    subjects = await server.get("/api/subjects/")
    assert subjects.status == 200, subjects.body
    state: State = {}
    for subject in subjects.json():
        teachers = await server.get(f"/api/subjects/{subject['no']}/teachers/")
        assert teachers.status == 200, teachers.body
        for t in teachers.json():
            state[t["no"]] = (t["good_count"], t["bad_count"], t["version"], t["subject"])
    return state


def channel_teachers(state: State, channel: str) -> dict[int, tuple[int, int, int]]:
    """What a subject:/teacher: channel must show: (good, bad, version) of each of its teachers."""
    kind, _, number = channel.partition(":")
    return {
        no: (good, bad, version)
        for no, (good, bad, version, subject) in state.items()
        if (kind == "subject" and subject == int(number)) or (kind == "teacher" and no == int(number))
    }


async def wait_converged(watchers: Watchers, store: JsonClient, timeout: float = 15.0) -> State:
    """Until every socket shows the store's counts on its channel (every teacher of a subject:
    channel, its teacher on a teacher: channel, every subject's totals on the dashboard); fails
    with the differences. Returns the store's state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = await store_state(store)
        totals = await store_totals(store) if any(ch == "dashboard" for _, ch, _ in watchers.items) else None
        stale = []
        for client, channel, where in watchers.items:
            if channel == "dashboard":
                shown: Any = dashboard_view(client.messages)
                wanted: Any = totals
            else:
                shown, wanted = teacher_view(client.messages, channel), channel_teachers(state, channel)
            if shown != wanted:
                stale.append((f"process {where}", channel, shown, wanted))
        if not stale:
            return state
        if loop.time() > deadline:
            closed = [(channel, client.close_code) for client, channel, _ in watchers.items if client.closed]
            raise AssertionError(
                f"{len(stale)} of {len(watchers.items)} sockets did not converge within {timeout} s"
                f" (closed: {closed}); first ones (process, channel, shown, store): {stale[:3]}"
            )
        await asyncio.sleep(0.1)


async def log_out_everywhere(session: UserClient, sockets: Sequence[LiveClient]) -> tuple[float, list[float]]:
    """POST /api/auth/logout-all with this session's token: within 1 s of the response, each of
    `sockets` must get `revoked` and close 4003. Returns when the response came and when each
    socket closed, in seconds from the request."""
    loop = asyncio.get_running_loop()

    async def revoked(client: LiveClient) -> tuple[int | None, float]:
        message = await client.expect("revoked", timeout=30)
        assert message["reason"], message
        return await client.wait_closed(30), loop.time()

    watching = [asyncio.create_task(revoked(client)) for client in sockets]
    sent = loop.time()
    response = await session.request("POST", "/api/auth/logout-all")
    answered = loop.time()
    assert response.status == 204, response.body
    _, pending = await asyncio.wait(watching, timeout=max(answered + 1.0 - loop.time(), 0.0))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    late = [index for index, task in enumerate(watching) if task in pending]
    assert not late, f"sockets {late} of {len(sockets)} were not revoked and closed within 1 s of the response"
    closed = [task.result() for task in watching]
    assert [code for code, _ in closed] == [4003] * len(sockets), closed
    assert max(at for _, at in closed) - answered < 1.0
    return answered - sent, [at - sent for _, at in closed]


# -- votes -------------------------------------------------------------------------------


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


# -- 1 and 2: fan-out across processes, and feeds only where they are watched ------------------


async def test_votes_reach_every_watcher_on_every_process_and_each_process_hears_only_its_subjects(
    tmp_path: Path, redis_cluster: ClusterServers
) -> None:
    data_dir = tmp_path / "host"
    async with cluster_processes(3, data_dir, redis_cluster, **CONFIG) as servers:
        p0, _, p2 = servers
        watcher = await sign_up(p0, "watcher")
        rest_voters = [await sign_up(servers[i], f"rest{i}") for i in range(3)]
        socket_voters = [await welcomed(servers[i], (await sign_up(servers[i], f"sock{i}")).access_token) for i in range(3)]
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
            after = await wait_converged(watchers, p0)
            expected = changes(state, after, [2])
            assert expected == 7 and changes(state, after) == expected

            now = await wait_heard(servers, heard, {1: expected, 2: expected})
            assert now[0] == heard[0], f"process 0 watches no subject 2 but received {now[0] - heard[0]} of its messages"

            # And the other way round: subject 1's votes, cast through process 1, reach process 0 only.
            state, heard = after, now
            await vote_all([rest_voters[1], socket_voters[1]], [[(1, "good"), (2, "bad")], [(3, "bad"), (1, "bad")]])
            after = await wait_converged(watchers, p0)
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
            after = await wait_converged(watchers, p0)
            expected = changes(state, after, [2])
            assert expected == 2

            now = await wait_heard(servers, heard, {2: expected})
            assert now[:2] == heard[:2], f"after its last subject 2 socket left, process 1 still heard it: {heard} -> {now}"

            # Mixed: ten subjects; process 0 watches 1-3, process 1 watches 4-8 and teacher 1
            # (subject 1), process 2 a dashboard (the all-subjects feed) besides subjects 9-10.
            await create_admin(data_dir, redis_cluster.url, "--redis-cluster")
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
            after = await wait_converged(watchers, p0)
            total = changes(state, after)
            expected_heard = [changes(state, after, feeds[index]) for index in range(3)]
            assert expected_heard[2] == total

            now = await wait_heard(servers, heard, dict(enumerate(expected_heard)))
            live = [
                sum(1 for m in client.messages[mark:] if m.get("type") == "votes")
                for client, mark in zip(watchers.clients, marks)
            ]
            assert min(live) >= 1, "every socket got live votes messages, not only snapshots"
            per_change = [(n - h) / total for n, h in zip(now, heard)]
            masters = await feeds_by_master(redis_cluster, subjects)
            print(
                f"\nFIGURES cluster feeds: 3 processes, 10 subjects of 3 teachers, feeds per master {masters};"
                f" {ops} vote ops ({len(voters) // 2} REST, {len(voters) // 2} socket voters, one per process each,"
                f" {ops / seconds:.0f} ops/s) made {total} changes"
                f"\nFIGURES cluster feeds: messages received per change: process 0 (subjects 1-3)"
                f" {per_change[0]:.2f}, process 1 (subjects 1, 4-8) {per_change[1]:.2f},"
                f" process 2 (dashboard) {per_change[2]:.2f}; all processes {sum(per_change):.2f} per change"
                f" (3.00 if every process heard every vote; 0.30 / 0.60 / 1.00 for votes spread evenly); per vote op"
                f" {[round((n - h) / ops, 2) for n, h in zip(now, heard)]}"
                f"\nFIGURES cluster feeds: live votes messages per socket min/max {min(live)}/{max(live)}"
                f" over {len(live)} sockets"
            )
            assert not logged_errors(servers)
        finally:
            await watchers.close()
            await close_all([*idle, *socket_voters])


# -- 3: revocation reaches every process -----------------------------------------------------


async def test_logout_all_closes_the_users_sockets_on_every_process_within_a_second(
    tmp_path: Path, redis_cluster: ClusterServers
) -> None:
    async with cluster_processes(3, tmp_path / "host", redis_cluster) as servers:
        alice = await sign_up(servers[0], "alice")
        alice_again = await log_in(servers[1], "alice", alice.password)  # a second session, another device
        bob = await sign_up(servers[2], "bob")
        doomed: list[LiveClient] = []
        survivors = Watchers()
        try:
            # Each of alice's sessions has sockets on every process, on channels whose feeds
            # live on different masters; bob watches the same channels, on the same processes.
            for server in servers:
                for session in (alice, alice_again):
                    doomed.append(await welcomed(server, session.access_token))
            channels = ["subject:1", "subject:3", "subject:4", "dashboard", "teacher:2", "subject:2"]
            await asyncio.gather(*(subscribe(client, channel) for client, channel in zip(doomed, channels)))
            await survivors.open(servers, bob.access_token, {index: channels[2 * index: 2 * index + 2] for index in range(3)})
            master = await redis_cluster.master_for_key(PREFIX + REVOKED)

            answered, closed = await log_out_everywhere(alice_again, doomed)
            print(
                f"\nFIGURES cluster revocation: logout-all answered {1000 * answered:.1f} ms after it was sent;"
                f" alice's 6 sockets on 3 processes closed {[round(1000 * t, 1) for t in closed]} ms after it was"
                f" sent (the revoked channel on master {master})"
            )

            # Both sessions ended everywhere; bob's sockets are untouched and still get votes.
            for server in servers:
                for session in (alice, alice_again):
                    me = await UserClient(server, "alice", "", session.pair).get("/api/auth/me")
                    assert me.status == 401, (server.port, me.status)
                    assert await refused_status(server.base_url, session.access_token) == 401
            for client in survivors.clients:
                assert (await client.request("ping"))["type"] == "pong"
            bob_voter = await welcomed(servers[0], bob.access_token)
            doomed.append(bob_voter)  # closed at the end with the others
            ack = await bob_voter.request("vote", teacher=2, value="good")
            assert ack["type"] == "ack", ack
            await wait_converged(survivors, servers[1])
            assert not [client.close_code for client in survivors.clients if client.closed]
            assert not logged_errors(servers)
        finally:
            await survivors.close()
            await close_all(doomed)


async def test_a_logout_while_the_revocation_feeds_master_is_down_still_closes_every_socket(
    tmp_path: Path, redis_cluster: ClusterServers
) -> None:
    """The announcement cannot be published until the cluster fails over: the process that
    revoked closes its own sockets at once, and the other finds out after its gap."""
    doomed_master = await redis_cluster.master_for_key(PREFIX + REVOKED)
    async with cluster_processes(2, tmp_path / "host", redis_cluster) as servers:
        for attempt in range(40):  # a user whose keys live on the masters that stay up
            user = await sign_up(servers[0], f"dave{attempt}")
            me = (await user.get("/api/auth/me")).json()
            keys = [f"{PREFIX}user:{me['user']['id']}", f"{PREFIX}session:{me['session']}"]
            if all([await redis_cluster.master_for_key(key) != doomed_master for key in keys]):
                break
        else:
            raise AssertionError("every user had a key on the master of the revocation feed")
        sockets = [await welcomed(server, user.access_token) for server in servers]
        try:
            await redis_cluster.kill(doomed_master)
            assert (await user.request("POST", "/api/auth/logout-all")).status == 204
            assert await sockets[0].wait_closed(timeout=1) == 4003, "the revoking process's own socket"
            assert await sockets[1].wait_closed(timeout=20) == 4003, "the other process's, after its gap"
            assert not logged_errors(servers)
        finally:
            await close_all(sockets)


# -- 4: a master fails over under the votes ----------------------------------------------------


def feeds_of(channels: Iterable[str], subject_of: dict[int, int]) -> set[str]:
    """The broker channels a process listens to for these socket channels (services/live/hub.py), and
    the revocations' channel, which every process listens to."""
    feeds = {REVOKED}
    names = set(channels)
    if "dashboard" in names:
        return feeds | {ALL_VOTES}
    for name in names:
        kind, _, number = name.partition(":")
        feeds.add(subject_votes(int(number) if kind == "subject" else subject_of[int(number)]))
    return feeds


async def test_killing_the_master_of_a_watched_feed_loses_no_acknowledged_vote_and_votes_flow_again(
    tmp_path: Path, redis_cluster: ClusterServers
) -> None:
    feed = PREFIX + subject_votes(1)
    doomed = await redis_cluster.master_for_key(feed)
    teachers = list(range(1, 10))  # subjects 1-3; subject 1's feed is on the master to be killed
    # Process 0 is given the doomed node's URL: it must get by on the nodes it has discovered.
    async with cluster_processes(3, tmp_path / "host", redis_cluster, [doomed], **CONFIG) as servers:
        watcher = await sign_up(servers[0], "watcher")
        rest_voters = [await sign_up(servers[i], f"rest{i}") for i in range(3)]
        socket_voters = [await welcomed(servers[i], (await sign_up(servers[i], f"sock{i}")).access_token) for i in range(3)]
        layout = {
            0: ["subject:1", "subject:1", "teacher:1", "subject:2", "subject:3"],
            1: ["subject:1", "subject:1", "teacher:7", "subject:3"],
            2: ["subject:1", "dashboard", "subject:2"],
        }
        watchers = Watchers()
        stream: VoteStream | None = None
        dave_sockets: list[LiveClient] = []
        try:
            await watchers.open(servers, watcher.access_token, layout)
            subject_of = {no: subject for no, (_, _, _, subject) in (await store_state(servers[0])).items()}
            on_doomed = []  # the processes that listen to a channel on the master to be killed
            for index, channels in layout.items():
                masters = {await redis_cluster.master_for_key(PREFIX + name) for name in feeds_of(channels, subject_of)}
                if doomed in masters:
                    on_doomed.append(index)
            assert {0, 1} <= set(on_doomed), "processes 0 and 1 listen to subject 1's feed on that master"
            # dave's sockets, one per process, are to be revoked after the failover.
            dave = await sign_up(servers[2], "dave")
            dave_sockets.extend([await welcomed(server, dave.access_token) for server in servers])
            resynced = await resyncs(servers)

            stream = VoteStream([*rest_voters, *socket_voters], teachers, pause=0.005)
            await stream.wait_votes("before", 30, acknowledged_only=True)
            loop = asyncio.get_running_loop()
            stream.phase = "failover"
            killed_at = loop.time()
            await redis_cluster.kill(doomed)
            promoted = await redis_cluster.wait_failover(doomed, key_slot(feed.encode()), timeout=20)
            failover_seconds = loop.time() - killed_at
            stream.phase = "after"
            await stream.wait_votes("after", 30, acknowledged_only=True)
            await stream.stop()
            votes_seconds = loop.time() - killed_at

            # Every process that listened to a channel on the dead master noticed the gap, moved
            # its channels to the new master and re-sent snapshots.
            now = list(resynced)

            async def all_resynced() -> bool:
                now[:] = await resyncs(servers)
                return all(now[index] > resynced[index] for index in on_doomed)

            try:
                await wait_for(all_resynced, 15, what="the processes resync")
            except TimeoutError:
                raise AssertionError(
                    f"broker resyncs per process {resynced} -> {await resyncs(servers)}; processes {on_doomed}"
                    f" listened to a channel on the killed master {doomed}"
                ) from None

            # No acknowledged vote is lost, and every socket shows the store's counts.
            expected = stream.ledger_counts()
            state = await wait_converged(watchers, servers[0], timeout=15)
            for server in servers:
                for no in teachers:
                    response = await server.get(f"/api/teachers/{no}/")
                    assert response.status == 200, response.body
                    stored = (response.json()["good_count"], response.json()["bad_count"])
                    assert stored == expected[no], (
                        f"teacher {no}: the store holds {stored}, the acknowledged votes imply {expected[no]}"
                    )

            # Votes flow live again (votes messages, not only the resync's snapshots) to every
            # watcher on every process, through the new master, with nothing restarted.
            # A vote on each subject watched: 1 and 2 (their feeds moved to the new master) and 3.
            marks = [len(client.messages) for client in watchers.clients]
            fresh: dict[int, int] = {}
            for voter_index, voter, teacher in ((0, rest_voters[0], 1), (4, socket_voters[1], 4), (5, socket_voters[2], 7)):
                value = "bad" if stream.acked.get((voter_index, teacher)) == "good" else "good"
                acknowledged, reply = await cast(voter, teacher, value)
                assert acknowledged, getattr(reply, "body", reply)
                stream.acked[voter_index, teacher] = value
                fresh[teacher] = (reply if isinstance(reply, dict) else reply.json())["version"]

            def got_live(client: LiveClient, channel: str, mark: int) -> bool:
                later = [m for m in client.messages[mark:] if m.get("type") == "votes" and m.get("channel") == channel]
                if channel == "dashboard":
                    return bool(later)
                view, shown = teacher_view(later, channel), channel_teachers(state, channel)
                assert shown.keys() & fresh.keys(), f"no fresh vote for {channel}"
                return all(view.get(no, (0, 0, 0))[2] >= version for no, version in fresh.items() if no in shown)

            async def flowing() -> bool:
                return all(got_live(client, channel, mark)
                           for (client, channel, _), mark in zip(watchers.items, marks))

            try:
                await wait_for(flowing, 10, what="live votes messages on every socket")
            except TimeoutError:
                stuck = [(where, channel) for (client, channel, where), mark in zip(watchers.items, marks)
                         if not got_live(client, channel, mark)]
                raise AssertionError(f"no live votes message after the failover on (process, channel) {stuck}") from None
            flow_seconds = loop.time() - killed_at
            expected = stream.ledger_counts()
            state = await wait_converged(watchers, servers[0], timeout=10)
            assert {no: state[no][:2] for no in teachers} == expected
            assert not [(channel, client.close_code) for client, channel, _ in watchers.items if client.closed], (
                "the sockets stayed open through the failover"
            )
            # The revocations' channel (on the killed master too) works again: on every process.
            assert not [client for client in dave_sockets if client.closed]
            _, revoked_in = await log_out_everywhere(dave, dave_sockets)
            outcomes = {phase: dict(counter) for phase, counter in stream.outcomes.items()}
            print(
                f"\nFIGURES cluster failover: killed master {doomed} (subject 1's feed), slot served by {promoted}"
                f" {failover_seconds:.2f} s later; 30 acknowledged votes after it by {votes_seconds:.2f} s, live votes"
                f" messages on every socket again by {flow_seconds:.2f} s; resyncs per process"
                f" {[n - r for n, r in zip(now, resynced)]}; vote outcomes per phase {outcomes}; slowest"
                f" acknowledged vote per phase (s) {dict(stream.slowest)}; final counts {expected}; after it"
                f" logout-all closed dave's sockets on the 3 processes within {max(revoked_in):.3f} s"
            )
            assert not logged_errors(servers)
            assert stream.outcomes["failover"]["acknowledged"] + stream.outcomes["failover"]["refused"] > 0, (
                "votes were cast during the failover"
            )
        finally:
            if stream is not None:
                await stream.stop()
            await watchers.close()
            await close_all([*socket_voters, *dave_sockets])
