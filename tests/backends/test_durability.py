"""Every vote answered 200 survives kill -9 of the server (one atomic step)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tornado.httpclient import HTTPClientError

from tests.harness.environment import server_env
from tests.harness.server import UserClient, log_in, sign_up
from tests.harness.server_process import ServerProcess

TEACHERS = range(1, 16)


async def test_acknowledged_votes_survive_kill_9(tmp_path: Path) -> None:
    server = await ServerProcess("--data-dir", str(tmp_path), env=server_env()).start()
    try:
        voters = [await sign_up(server, f"voter{i}") for i in range(12)]
        acknowledged: set[tuple[str, int]] = set()
        enough = asyncio.Event()

        async def vote_all(voter: UserClient) -> None:
            for teacher in TEACHERS:
                try:
                    response = await voter.request("PUT", f"/api/teachers/{teacher}/vote", json_body={"value": "good"})
                except (OSError, HTTPClientError):
                    return
                if response.status != 200:
                    return
                acknowledged.add((voter.username, teacher))
                if len(acknowledged) >= 60:
                    enough.set()

        streams = [asyncio.create_task(vote_all(voter)) for voter in voters]
        await asyncio.wait_for(enough.wait(), 60)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        await asyncio.gather(*streams)
        await server.wait_exit()
    finally:
        await server.stop()

    assert 60 <= len(acknowledged) < len(voters) * len(TEACHERS), "killed mid-stream"
    again = await ServerProcess("--data-dir", str(tmp_path), env=server_env()).start()
    try:
        counted = 0
        for voter in voters:
            client = await log_in(again, voter.username, voter.password)
            for teacher in TEACHERS:
                value = (await client.get(f"/api/teachers/{teacher}/vote")).json()["value"]
                if (voter.username, teacher) in acknowledged:
                    assert value == "good", f"{voter.username}'s acknowledged vote on {teacher} was lost"
                counted += value == "good"
        totals = sum([(await again.get(f"/api/teachers/{t}/")).json()["good_count"] for t in TEACHERS])
        assert totals == counted, "counters equal the votes after the crash"
    finally:
        await again.stop()
