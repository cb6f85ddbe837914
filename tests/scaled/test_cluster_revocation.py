"""The live channel on a Redis Cluster: three real `python server.py --redis-cluster` processes
on one SQLite data dir and a real cluster of 3 masters and 3 replicas (tests/harness/redis_cluster.py),
each process named a different node, with real sockets on several subjects.

logout-all closes the user's sockets on every process (`revoked`, then 4003) within 1 s, also
while the master of the revocations' feed is down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.events import REVOKED
from tests.harness.live_cluster import PREFIX, cluster_processes, log_out_everywhere
from tests.harness.live_views import Watchers, close_all, subscribe
from tests.harness.redis_cluster import ClusterServers
from tests.harness.server import UserClient, log_in, sign_up
from tests.harness.server_process import logged_errors
from tests.harness.ws_client import LiveClient, refused_status, welcomed


async def test_logout_all_closes_the_users_sockets_on_every_process_within_a_second(
    tmp_path: Path, shared_cluster: ClusterServers
) -> None:
    async with cluster_processes(3, tmp_path / "host", shared_cluster) as servers:
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
            await asyncio.gather(
                *(subscribe(client, channel) for client, channel in zip(doomed, channels, strict=True))
            )
            two_each = {index: channels[2 * index: 2 * index + 2] for index in range(3)}
            await survivors.open(servers, bob.access_token, two_each)
            master = await shared_cluster.master_for_key(PREFIX + REVOKED)

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
            await survivors.wait_converged(servers[1])
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
