"""Catalog changes while people vote, on real `python server.py` processes sharing one
redis-server and one SQLite data dir: every page, opened before the changes or after them, on
either process, ends showing the store (records, counts, the dashboard as /api/stats), and so
again after a Redis restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.harness.cli import run_server_py
from tests.harness.live_views import close_all, subscribe
from tests.harness.page_model import wait_showing_the_store
from tests.harness.redis_server import RedisServer
from tests.harness.server import log_in, sign_up
from tests.harness.server_process import ServerProcess, processes
from tests.harness.voting import VoteStream
from tests.harness.ws_client import LiveClient, welcomed

CHANNELS = ("dashboard", "subject:1", "subject:2", "subject:3", "teacher:2", "teacher:4")
ADMIN_PASSWORD = b"admin password\n"


async def open_pages(servers: list[ServerProcess]) -> list[tuple[LiveClient, str]]:
    """Every channel on every process, as pages with nobody logged in open them (a viewer token
    has no session, so it also works after a Redis restart emptied the sessions)."""
    pages = []
    for server in servers:
        viewer = await server.request("POST", "/api/auth/viewer")
        assert viewer.status == 200, viewer.body
        pages += [(await welcomed(server, viewer.json()["access_token"]), channel) for channel in CHANNELS]
    await asyncio.gather(*(subscribe(client, channel) for client, channel in pages))
    return pages


async def wait_all_show_the_store(pages: list[tuple[LiveClient, str]], store: ServerProcess) -> None:
    await asyncio.gather(*(wait_showing_the_store(client, channel, store, timeout=20) for client, channel in pages))


async def test_pages_on_every_process_converge_on_catalog_changes_made_while_voting(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    data = tmp_path / "data"
    created = await run_server_py("create-user", "boss", "--admin", "--password-stdin", "--data-dir", str(data),
                                  stdin=ADMIN_PASSWORD)
    assert created.code == 0, created.stderr
    async with processes(2, data, redis_server.url) as servers:
        admin = await log_in(servers[0], "boss", ADMIN_PASSWORD.decode().strip())
        voters = [await sign_up(servers[index % 2], f"voter{index}") for index in range(20)]
        before = await open_pages(servers)
        after: list[tuple[LiveClient, str]] = []
        resynced: list[tuple[LiveClient, str]] = []
        stream = VoteStream(voters, tuple(range(1, 16)))
        try:
            await stream.wait_votes("before", 40, acknowledged_only=True)
            changes = [
                ("DELETE", "/api/teachers/3/", None),
                ("PATCH", "/api/teachers/4/", {"subject": 3}),
                ("PATCH", "/api/teachers/7/", {"subject": 1, "name": "调来"}),
                ("POST", "/api/teachers/", {"name": "新人", "sex": False, "birth": "1995-05-05", "subject": 2}),
                ("PATCH", "/api/subjects/2/", {"name": "改名的科目"}),
            ]
            for method, path, body in changes:
                reply = await admin.request(method, path, **({"json_body": body} if body else {}))
                assert reply.status in (200, 201, 204), (path, reply.status, reply.body)
                await stream.wait_votes("before", stream.count("before") + 10)
            await stream.stop()
            after = await open_pages(servers)
            await wait_all_show_the_store(before + after, servers[0])

            await redis_server.kill()
            emptied = await admin.request("PATCH", "/api/teachers/4/", json_body={"subject": 4})
            assert emptied.status == 200, emptied.body
            await redis_server.start()
            for server in servers:
                await server.wait_for_line("redis pub/sub reconnected", timeout=15)
            resynced = await open_pages(servers)
            await wait_all_show_the_store(before + after + resynced, servers[0])
        finally:
            await stream.stop()
            await close_all([client for client, _ in before + after + resynced])
