"""What live sockets show against what the store holds, and waiting until they agree.

A socket's view is built from its messages: per teacher, the counts of the highest version seen
in its channel's snapshots and votes; on the dashboard, the last totals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tests.harness.server import JsonClient, wait_for
from tests.harness.ws_client import LiveClient, welcomed

SUBJECT = 1
TEACHERS = (1, 2, 3)
"""The seeded first subject and its three teachers."""
CHANNEL = f"subject:{SUBJECT}"
"""Its live channel."""


Counts = tuple[int, int, int]
"""good_count, bad_count, version"""


class View:
    """What a client shows, kept up to date message by message (cheap for long streams)."""

    def __init__(self) -> None:
        self.teachers: dict[str, dict[int, Counts]] = {}
        self.subjects: dict[int, tuple[int, int]] = {}
        self.votes_total: int | None = None

    def feed(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if message.get("type") not in ("snapshot", "votes") or not isinstance(channel, str):
            return
        if channel == "dashboard":
            for item in message["subjects"]:
                self.subjects[item["no"]] = (item["good_count"], item["bad_count"])
            self.votes_total = message["votes_total"]
            return
        view = self.teachers.setdefault(channel, {})
        for item in message.get("teachers", []) + message.get("updates", []):
            if item["no"] not in view or view[item["no"]][2] < item["version"]:
                view[item["no"]] = (item["good_count"], item["bad_count"], item["version"])


def teacher_view(messages: Iterable[dict[str, Any]], channel: str) -> dict[int, Counts]:
    """Per teacher, the counts of the highest version seen in this channel's snapshots and votes."""
    view: dict[int, Counts] = {}
    for message in messages:
        if message.get("channel") != channel or message.get("type") not in ("snapshot", "votes"):
            continue
        for item in message.get("teachers", []) + message.get("updates", []):
            if item["no"] not in view or view[item["no"]][2] < item["version"]:
                view[item["no"]] = (item["good_count"], item["bad_count"], item["version"])
    return view


def dashboard_view(messages: Iterable[dict[str, Any]]) -> tuple[dict[int, tuple[int, int]], int | None]:
    """Totals per subject and overall as the last dashboard message left them (they carry no
    version: a socket's messages come in order, and each one holds the latest state)."""
    subjects: dict[int, tuple[int, int]] = {}
    total: int | None = None
    for message in messages:
        if message.get("channel") == "dashboard" and message.get("type") in ("snapshot", "votes"):
            for item in message["subjects"]:
                subjects[item["no"]] = (item["good_count"], item["bad_count"])
            total = message["votes_total"]
    return subjects, total


async def store_counts(server: JsonClient, teachers: Sequence[int] = TEACHERS) -> dict[int, Counts]:
    counts: dict[int, Counts] = {}
    for no in teachers:
        response = await server.get(f"/api/teachers/{no}/")
        assert response.status == 200, response.body
        teacher = response.json()
        counts[no] = (teacher["good_count"], teacher["bad_count"], teacher["version"])
    return counts


async def store_totals(server: JsonClient) -> tuple[dict[int, tuple[int, int]], int]:
    """Totals per subject and overall, summed from the store's teachers (no Redis involved)."""
    response = await server.get("/api/subjects/")
    assert response.status == 200, response.body
    totals: dict[int, tuple[int, int]] = {}
    for subject in response.json():
        teachers = await server.get(f"/api/subjects/{subject['no']}/teachers/")
        assert teachers.status == 200, teachers.body
        rows = teachers.json()
        totals[subject["no"]] = (sum(t["good_count"] for t in rows), sum(t["bad_count"] for t in rows))
    return totals, sum(good + bad for good, bad in totals.values())


async def subscribe(client: LiveClient, channel: str, timeout: float = 5.0) -> dict[str, Any]:
    """Subscribe, check the ack, and wait for the snapshot (left in client.messages for the view)."""
    ack = await client.request("subscribe", channel=channel, timeout=timeout)
    assert ack["type"] == "ack" and ack["channel"] == channel, ack

    async def snapshot() -> dict[str, Any] | None:
        return next((m for m in client.messages if m.get("type") == "snapshot" and m.get("channel") == channel), None)

    return await wait_for(snapshot, timeout, interval=0.01)


async def close_all(clients: Iterable[LiveClient]) -> None:
    await asyncio.gather(*(client.close() for client in clients if not client.closed))
    for client in clients:
        if client.closed:
            await client.wait_closed()


def votes_messages(messages: Sequence[dict[str, Any]], channel: str) -> int:
    """How many `votes` messages of this channel there are among `messages`."""
    return sum(1 for m in messages if m.get("type") == "votes" and m.get("channel") == channel)


# -- the whole store, and waiting until the sockets show it ---------------------------------


State = dict[int, tuple[int, int, int, int]]
"""Per teacher: good_count, bad_count, version, subject."""


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

    async def wait_converged(self, store: JsonClient, timeout: float = 15.0) -> State:
        """Until every socket shows the store's counts on its channel; returns the store's state."""
        return await showing_the_store([(client, channel, f"process {where}") for client, channel, where in self.items],
                                       store, timeout)


async def wait_converged(subscribers: Sequence[tuple[LiveClient, str]], store: JsonClient, timeout: float = 10.0,
                         teachers: Sequence[int] = TEACHERS) -> dict[int, Counts]:
    """Until every (client, channel) shows what the store holds; returns the store's counts of `teachers`."""
    state = await showing_the_store([(client, channel, f"socket {index}") for index, (client, channel)
                                     in enumerate(subscribers)], store, timeout)
    return {no: state[no][:3] for no in teachers}


async def showing_the_store(sockets: Sequence[tuple[LiveClient, str, str]], store: JsonClient, timeout: float) -> State:
    """Until each (client, channel, label) shows the store's counts on its channel: every teacher
    of a subject: channel, its teacher on a teacher: channel, every subject's totals and the
    votes total on the dashboard. Fails with the differences; returns the store's state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = await store_state(store)
        totals = await store_totals(store) if any(channel == "dashboard" for _, channel, _ in sockets) else None
        stale = []
        for client, channel, label in sockets:
            if channel == "dashboard":
                shown: Any = dashboard_view(client.messages)
                wanted: Any = totals
            else:
                shown, wanted = teacher_view(client.messages, channel), channel_teachers(state, channel)
            if shown != wanted:
                stale.append((label, channel, shown, wanted))
        if not stale:
            return state
        if loop.time() > deadline:
            closed = [(label, channel, client.close_code) for client, channel, label in sockets if client.closed]
            raise AssertionError(
                f"{len(stale)} of {len(sockets)} sockets did not converge within {timeout} s"
                f" (closed: {closed}); first ones (socket, channel, shown, store): {stale[:3]}"
            )
        await asyncio.sleep(0.05)
