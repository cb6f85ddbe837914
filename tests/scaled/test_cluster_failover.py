"""The live channel on a Redis Cluster: three real `python server.py --redis-cluster` processes
on one SQLite data dir and a real cluster of 3 masters and 3 replicas (tests/harness/redis_cluster.py),
each process named a different node, with real sockets on several subjects.

kill -9 of the master that serves a watched subject's feed: the cluster fails over, votes flow
again without restarting anything, every socket converges, and no acknowledged vote is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

from redis.crc import key_slot

from services.events import ALL_VOTES, REVOKED, subject_votes
from tests.harness.live_cluster import FAST_VOTERS, PREFIX, cluster_processes, log_out_everywhere
from tests.harness.live_views import Watchers, channel_teachers, close_all, store_state, teacher_view
from tests.harness.metrics import metric
from tests.harness.redis_cluster import ClusterServers
from tests.harness.server import JsonClient, sign_up, wait_for
from tests.harness.server_process import logged_errors
from tests.harness.voting import VoteStream, cast
from tests.harness.ws_client import LiveClient, welcomed


async def resyncs(servers: Sequence[JsonClient]) -> list[float]:
    return [await metric(server, "livevote_broker_resyncs_total") for server in servers]


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
    async with cluster_processes(3, tmp_path / "host", redis_cluster, [doomed], **FAST_VOTERS) as servers:
        watcher = await sign_up(servers[0], "watcher")
        rest_voters = [await sign_up(servers[i], f"rest{i}") for i in range(3)]
        socket_voters = [
            await welcomed(servers[i], (await sign_up(servers[i], f"sock{i}")).access_token) for i in range(3)
        ]
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
            state = await watchers.wait_converged(servers[0], timeout=15)
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
            one_per_subject = ((0, rest_voters[0], 1), (4, socket_voters[1], 4), (5, socket_voters[2], 7))
            for voter_index, voter, teacher in one_per_subject:
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
                           for (client, channel, _), mark in zip(watchers.items, marks, strict=True))

            try:
                await wait_for(flowing, 10, what="live votes messages on every socket")
            except TimeoutError:
                stuck = [(where, channel) for (client, channel, where), mark in zip(watchers.items, marks, strict=True)
                         if not got_live(client, channel, mark)]
                raise AssertionError(
                    f"no live votes message after the failover on (process, channel) {stuck}"
                ) from None
            flow_seconds = loop.time() - killed_at
            expected = stream.ledger_counts()
            state = await watchers.wait_converged(servers[0], timeout=10)
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
                f" {[n - r for n, r in zip(now, resynced, strict=True)]}; vote outcomes per phase {outcomes}; slowest"
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
