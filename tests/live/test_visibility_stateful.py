"""Results visibility under any interleaving, hunted by a Hypothesis state machine.

The machine drives the real server over real sockets (embedded, and two processes on one real
redis-server, the sockets spread over both) with the rules that change who sees what: votes,
switches and withdrawals by three users (over REST, or the socket's `vote` op), an admin setting
a subject's visibility (each of the four) and its state (open, closed), sockets of those users,
of a viewer token and of the admin subscribing and unsubscribing (subject:N, teacher:N,
dashboard) and reconnecting. The seed's catalog stays as it is: subject 1 has teachers 1-3,
subject 2 teachers 4-6. A model (`World`) keeps the votes, visibilities and states, so it knows
every count and who may see it (services/visibility.py has the rule).

Each example starts from the same state (subjects open, no votes, settled: so Hypothesis can
replay and shrink it), then with a visibility drawn for each subject.

Three properties:

- REST is exact. Every vote answer (REST and the socket's ack), and `GET /api/teachers/N/`,
  `/api/subjects/N/teachers/` and `/api/stats` by each user, anyone and the admin, is checked at
  once against the model: the counts where the reader may see them now, null where not, and a
  `votes_total` of only what they may see. REST answers come from the store: no delay allowed.
- No frame holds a count its socket may not see, by the rule chosen here. Sockets hear of
  changes asynchronously, so "may not see" is taken conservatively. The run is cut into
  intervals by settle points. For each person and subject the machine keeps whether the model
  let them see it at any step of the current interval (its start included); a frame of the
  interval with a non-null count of subject S (a snapshot's or `votes` teacher, a dashboard
  subject, a vote op's ack, a catalog teacher record) is a violation only if the person could
  see S at no step of it. Frames are checked after every rule, and at teardown. A dashboard
  frame's `votes_total` must also be the sum of the counts the socket then shows, so that no
  withheld count hides inside the total.
- Convergence. At each settle point (a rule, and the end of every example), within a timeout,
  every subscribed channel of every socket shows, folded from its frames (a snapshot is the
  whole channel, `votes` move counts by version), the model's counts where its person may see
  them and null where not; the model's counts are the store's.

A settle point must also be a barrier: no frame sent after it may carry sight that the model
left before it, or the rule above would blame the server for a late message it answered
correctly. So settling waits until each process has handled every change: probes (a socket
per user, viewer and admin on each process, subscribed to both subjects for the whole run)
must show subject names the settle has just set (catalog changes are handled in order), the
admin's probes the store's versions of every teacher (every vote heard), and each user's probes
the sight the model gives them (the sight those votes left, rechecked with the store). Then
every socket is sent a ping; the frames before its pong belong to the interval that ends, those
after it to the next (a socket's frames come in order, and no rule runs meanwhile).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.harness.machine import MachineHarness
from tests.harness.redis_server import RedisServer
from tests.harness.server import JsonClient, LiveServer, Response, UserClient, make_config, sign_up, sign_up_admin
from tests.harness.server import viewer_token as new_viewer_token
from tests.harness.ws_client import LiveClient

TEACHERS = {subject: tuple(range(3 * subject - 2, 3 * subject + 1)) for subject in range(1, 6)}
"""The seed's five subjects and their teachers; the machine changes no record."""
SUBJECT_OF = {teacher: subject for subject, teachers in TEACHERS.items() for teacher in teachers}
SUBJECTS = (1, 2)
"""Those the rules vote in and change (the other three stay public: the dashboard shows them)."""
VOTED = TEACHERS[1] + TEACHERS[2]
USERS = ("u0", "u1", "u2")
VIEWER, ADMIN = "viewer", "admin"
VISIBILITIES = ("always", "after_vote", "after_close", "hidden")
CHANNELS = ("dashboard", *(f"subject:{no}" for no in SUBJECTS), *(f"teacher:{no}" for no in VOTED))
SLOTS = (("u0", 0), ("u0", 1), ("u1", 0), ("u1", 1), ("u2", 1), (VIEWER, 0), (ADMIN, 1))
"""Who each socket belongs to, and the process it talks to (one process embedded: both are 0)."""
SETTLE_TIMEOUT = 5.0

Counts = tuple[int | None, int | None]


@dataclass
class World:
    """The model: what the store holds and who may see it. It outlives an example, as the server
    does; each example first brings both back to the same state (`_reset`)."""

    base: dict[int, tuple[int, int]]
    """Each teacher's counts before the run."""
    visibility: dict[int, str] = field(default_factory=lambda: dict.fromkeys(TEACHERS, "always"))
    closed: dict[int, bool] = field(default_factory=lambda: dict.fromkeys(TEACHERS, False))
    votes: dict[str, dict[int, str]] = field(default_factory=lambda: {user: {} for user in USERS})

    def counts(self, teacher: int) -> tuple[int, int]:
        good, bad = self.base[teacher]
        values = [votes.get(teacher) for votes in self.votes.values()]
        return good + values.count("good"), bad + values.count("bad")

    def totals(self, subject: int) -> tuple[int, int]:
        counts = [self.counts(teacher) for teacher in TEACHERS[subject]]
        return sum(good for good, _ in counts), sum(bad for _, bad in counts)

    def sees(self, actor: str, subject: int) -> bool:
        visibility = self.visibility[subject]
        if actor == ADMIN or visibility == "always":
            return True
        if visibility == "after_close":
            return self.closed[subject]
        if visibility == "after_vote":
            return any(SUBJECT_OF[teacher] == subject for teacher in self.votes.get(actor, {}))
        return False

    def shown(self, actor: str, teacher: int) -> Counts:
        return self.counts(teacher) if self.sees(actor, SUBJECT_OF[teacher]) else (None, None)

    def sight(self) -> dict[tuple[str, int], bool]:
        return {(actor, subject): self.sees(actor, subject) for actor, _ in SLOTS for subject in TEACHERS}


class Harness(MachineHarness):
    """The servers, their loop, the actors' tokens and the model, shared by every example."""

    def __init__(self, tmp_path: Path, mode: str) -> None:
        super().__init__(tmp_path, mode)
        self.servers: list[LiveServer] = []
        self.clients: dict[str, UserClient] = {}
        self.tokens: dict[str, str] = {}
        self.world = World({})
        self.probes: list[Socket] = []
        self.seen: dict[tuple[str, int], bool] = {}
        """Per (actor, subject): whether the model let them see it at any step since the last settle."""
        self.marks = 0

    async def start(self) -> None:
        overrides: dict[str, Any] = {
            "ws__coalesce_ms": 20, "ws__rate_limit": 10_000, "ws__rate_burst": 10_000,
            "auth__access_ttl": 86_400, "auth__viewer_ttl": 86_400,  # a long run outlives the defaults
        }
        if self.mode == "redis":
            self.redis = await RedisServer(self.tmp_path / "redis").start()
            overrides["redis__url"] = self.redis.url
        for _ in range(2 if self.redis is not None else 1):  # two processes of one host: one SQLite file
            self.servers.append(await LiveServer(make_config(self.tmp_path / "host", **overrides)).start())
        server = self.servers[0]
        for user in USERS:
            self.clients[user] = await sign_up(server, f"voter_{user}")
        self.clients[ADMIN] = await sign_up_admin(server)
        self.tokens = {actor: client.access_token for actor, client in self.clients.items()}
        self.tokens[VIEWER] = await new_viewer_token(server)
        self.world = World({no: (await self.store_teacher(no))[:2] for no in SUBJECT_OF})
        self.seen = self.world.sight()
        for process in range(len(self.servers)):
            for actor in (*USERS, VIEWER, ADMIN):
                probe = await self.connect(actor, process)
                for subject in SUBJECTS:
                    start = len(probe.client.messages)
                    _, answer = await reply(probe.client, probe.client.send("subscribe", channel=f"subject:{subject}"))
                    assert answer["type"] == "ack", answer
                    probe.channels[f"subject:{subject}"] = View(f"subject:{subject}", start)
                self.probes.append(probe)

    async def connect(self, actor: str, process: int) -> Socket:
        client = await LiveClient.connect(self.server(process).base_url, self.tokens[actor])
        await _welcomed(client)
        return Socket(actor, client)

    async def store_teacher(self, teacher: int) -> tuple[int, int, int]:
        """Counts and version, as the store has them."""
        body = _ok(await self.clients[ADMIN].get(f"/api/teachers/{teacher}/"))
        return body["good_count"], body["bad_count"], body["version"]

    def server(self, process: int) -> LiveServer:
        return self.servers[process % len(self.servers)]

    async def stop(self) -> None:
        for probe in self.probes:
            await probe.client.close()
        for server in reversed(self.servers):
            await server.stop()
        if self.redis is not None:
            await self.redis.stop()


@dataclass
class Socket:
    """One open socket: whose it is, what each of its channels (acked) shows, and how far its frames
    have been checked."""

    actor: str
    client: LiveClient
    channels: dict[str, View] = field(default_factory=dict)
    checked: int = 0
    totals: dict[int, Counts] = field(default_factory=dict)
    """The dashboard's totals as the frames checked so far left them."""


async def reply(client: LiveClient, op_id: str, since: int = 0, timeout: float = 5.0) -> tuple[int, Any]:
    """The reply to an op sent once the socket had `since` messages, and where it is among them
    (left there: every frame a socket receives is checked)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = next(((index, m) for index, m in enumerate(client.messages[since:], since) if m.get("id") == op_id),
                     None)
        if found is not None:
            return found
        if client.closed or loop.time() > deadline:
            raise AssertionError(f"no reply to {op_id} (closed: {client.close_code}): {client.messages[-5:]}")
        await asyncio.sleep(0.002)


def counted(message: dict[str, Any]) -> list[int]:
    """The subjects of which a frame holds a non-null count."""
    items: list[tuple[int, Any, Any]] = []
    kind, channel = message.get("type"), message.get("channel")
    if kind in ("snapshot", "votes") and channel == "dashboard":
        items = [(s["no"], s["good_count"], s["bad_count"]) for s in message["subjects"]]
    elif kind in ("snapshot", "votes"):
        items = [(SUBJECT_OF[t["no"]], t["good_count"], t["bad_count"])
                 for t in message.get("teachers", []) + message.get("updates", [])]
    elif kind == "ack" and "teacher" in message:  # a vote op's answer
        items = [(SUBJECT_OF[message["teacher"]], message["good_count"], message["bad_count"])]
    elif kind == "catalog" and message.get("kind") == "teacher" and message.get("record"):
        record = message["record"]
        items = [(record["subject"], record["good_count"], record["bad_count"])]
    return sorted({subject for subject, good, bad in items if good is not None or bad is not None})


class View:
    """What a page of one channel shows, folded from its socket's frames as they come (from the
    subscription on): per teacher (per subject on the dashboard) good, bad and version (0 on the
    dashboard), and the subject's name. A snapshot is the whole channel, a `votes` message moves
    a teacher's counts to a newer version (the dashboard's, in order), a catalog event renames."""

    def __init__(self, channel: str, start: int) -> None:
        self.channel = channel
        self.upto = start
        self.shown: dict[int, tuple[Any, Any, int]] = {}
        self.name: str | None = None

    def read(self, messages: list[dict[str, Any]]) -> View:
        for message in messages[self.upto:]:
            if message.get("channel") == self.channel:
                self._apply(message)
        self.upto = len(messages)
        return self

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "catalog" and message.get("kind") == "subject":
            self.name = (message.get("record") or {}).get("name", self.name)
        if kind not in ("snapshot", "votes"):
            return
        if kind == "snapshot":
            self.shown = {}
            self.name = message["subject"]["name"] if "subject" in message else self.name
        if self.channel == "dashboard":
            self.shown.update({s["no"]: (s["good_count"], s["bad_count"], 0) for s in message["subjects"]})
            return
        for item in message.get("teachers", []) + message.get("updates", []):
            known = self.shown.get(item["no"])
            if kind == "snapshot" or known is None or known[2] < item["version"]:
                self.shown[item["no"]] = (item["good_count"], item["bad_count"], item["version"])


def total_withholds(shown: dict[int, Counts], message: dict[str, Any]) -> str | None:
    """A dashboard frame, applied to the totals its socket shows (`shown`): its votes_total must be
    the sum of the counts then shown, so that no withheld count hides in it."""
    if message["type"] == "snapshot":
        shown.clear()
    shown.update({s["no"]: (s["good_count"], s["bad_count"]) for s in message["subjects"]})
    visible = sum(good + bad for good, bad in shown.values() if good is not None and bad is not None)
    return None if message["votes_total"] == visible else f"votes_total with {shown} shown: {message}"


def machine_for(harness: Harness) -> type[RuleBasedStateMachine]:
    world = harness.world

    class VisibilityMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.sockets: list[Socket | None] = [None] * len(SLOTS)
            harness.run(self._reset())

        async def _reset(self) -> None:
            """Every example starts from the same state (so that Hypothesis can replay and shrink
            one): subjects open and public, no votes; settled, so no change before leaks into it."""
            for subject in SUBJECTS:
                if world.closed[subject]:
                    assert (await self._patch(subject, {"state": "open"}))["state"] == "open"
                    world.closed[subject] = False
                    self._saw()
            for user, votes in world.votes.items():
                for teacher in list(votes):
                    await self._vote(user, teacher, None, by_socket=False)
            for subject in SUBJECTS:
                if world.visibility[subject] != "always":
                    await self._patch(subject, {"visibility": "always"})
                    world.visibility[subject] = "always"
                    self._saw()
            await self._settle()

        @initialize(visibilities=st.tuples(*(st.sampled_from(VISIBILITIES) for _ in SUBJECTS)))
        def start_with(self, visibilities: tuple[str, ...]) -> None:
            """Each example starts with some visibility, so that most go beyond `always`."""
            for subject, visibility in zip(SUBJECTS, visibilities, strict=True):
                self.set_visibility(subject, visibility)

        # -- rules ----------------------------------------------------------------

        @rule(user=st.sampled_from(USERS), teacher=st.sampled_from(VOTED), value=st.sampled_from(["good", "bad", None]),
              by_socket=st.booleans())
        def vote(self, user: str, teacher: int, value: str | None, by_socket: bool) -> None:
            harness.run(self._vote(user, teacher, value, by_socket))

        @rule(which=st.integers(0, 50), withdraw=st.booleans(), by_socket=st.booleans())
        def change_a_vote(self, which: int, withdraw: bool, by_socket: bool) -> None:
            """One of the votes there are, withdrawn or switched: often a user's last in a subject."""
            votes = sorted((user, teacher, value) for user, cast in world.votes.items()
                           for teacher, value in cast.items())
            if votes:
                user, teacher, value = votes[which % len(votes)]
                other = None if withdraw else {"good": "bad", "bad": "good"}[value]
                harness.run(self._vote(user, teacher, other, by_socket))

        async def _vote(self, user: str, teacher: int, value: str | None, by_socket: bool) -> None:
            subject = SUBJECT_OF[teacher]
            refused = world.closed[subject] and world.votes[user].get(teacher) != value
            if by_socket:
                slot = next(index for index, (actor, _) in enumerate(SLOTS) if actor == user)
                socket = await self._socket(slot)
                since = len(socket.client.messages)
                _, answer = await reply(socket.client, socket.client.send("vote", teacher=teacher, value=value), since)
                if refused:
                    assert (answer["type"], answer.get("code")) == ("error", "voting_closed"), answer
                    return
                assert answer["type"] == "ack", answer
            else:
                client = harness.clients[user]
                path = f"/api/teachers/{teacher}/vote"
                response = await (client.request("DELETE", path) if value is None else
                                  client.request("PUT", path, json_body={"value": value}))
                if refused:
                    assert response.status == 409 and response.json()["code"] == "voting_closed", response.body
                    return
                assert response.status == 200, response.body
                answer = response.json()
            if value is None:
                world.votes[user].pop(teacher, None)
            else:
                world.votes[user][teacher] = value
            self._saw()
            assert answer["value"] == value, answer
            assert (answer["good_count"], answer["bad_count"]) == world.shown(user, teacher), (answer, world)

        @rule(subject=st.sampled_from(SUBJECTS), visibility=st.sampled_from(VISIBILITIES))
        def set_visibility(self, subject: int, visibility: str) -> None:
            body = harness.run(self._patch(subject, {"visibility": visibility}))
            assert body["visibility"] == visibility, body
            world.visibility[subject] = visibility
            self._saw()

        @rule(subject=st.sampled_from(SUBJECTS), closed=st.booleans())
        def set_state(self, subject: int, closed: bool) -> None:
            state = "closed" if closed else "open"
            body = harness.run(self._patch(subject, {"state": state}))
            assert body["state"] == state, body
            world.closed[subject] = closed
            self._saw()

        async def _patch(self, subject: int, change: dict[str, str]) -> dict[str, Any]:
            response = await harness.clients[ADMIN].request("PATCH", f"/api/subjects/{subject}/", json_body=change)
            assert response.status == 200, response.body
            return dict(response.json())

        @rule(slot=st.integers(0, len(SLOTS) - 1), channel=st.sampled_from(CHANNELS), subscribe=st.booleans())
        def subscription(self, slot: int, channel: str, subscribe: bool) -> None:
            harness.run(self._subscription(slot, channel, subscribe))

        async def _subscription(self, slot: int, channel: str, subscribe: bool) -> None:
            socket = await self._socket(slot) if subscribe else self.sockets[slot]
            if socket is None:
                return
            start = len(socket.client.messages)
            op = "subscribe" if subscribe else "unsubscribe"
            _, answer = await reply(socket.client, socket.client.send(op, channel=channel), start)
            assert answer["type"] == "ack", answer
            if subscribe:
                socket.channels[channel] = View(channel, start)
            else:
                socket.channels.pop(channel, None)

        @rule(slot=st.integers(0, len(SLOTS) - 1))
        def reconnect(self, slot: int) -> None:
            harness.run(self._reconnect(slot))

        async def _reconnect(self, slot: int) -> None:
            socket = self.sockets[slot]
            if socket is None:
                return
            await socket.client.close()
            self._check_frames(socket)
            self.sockets[slot] = None
            for channel in socket.channels:
                await self._subscription(slot, channel, True)

        @rule(teacher=st.sampled_from(VOTED))
        def read(self, teacher: int) -> None:
            harness.run(self._read(teacher))

        async def _read(self, teacher: int) -> None:
            """Over REST, by each user, anyone and the admin: a teacher, the teachers of the subjects
            the rules change, and the stats, each exactly what the reader may see now."""
            for reader in (*USERS, ADMIN, None):
                client: JsonClient | UserClient = harness.servers[-1] if reader is None else harness.clients[reader]
                actor = reader or VIEWER  # anyone sees what a viewer token sees: nobody's votes
                body = _ok(await client.get(f"/api/teachers/{teacher}/"))
                assert (body["good_count"], body["bad_count"]) == world.shown(actor, teacher), (reader, body, world)
                for subject in SUBJECTS:
                    listed = _ok(await client.get(f"/api/subjects/{subject}/teachers/"))
                    want = {no: world.shown(actor, no) for no in TEACHERS[subject]}
                    assert {t["no"]: (t["good_count"], t["bad_count"]) for t in listed} == want, (reader, listed, world)
                stats = _ok(await client.get("/api/stats"))
                totals = {no: world.totals(no) if world.sees(actor, no) else (None, None) for no in TEACHERS}
                assert {s["no"]: (s["good_count"], s["bad_count"]) for s in stats["subjects"]} == totals, stats
                assert stats["votes_total"] == sum(good + bad for good, bad in totals.values() if good is not None)

        @rule()
        def settle(self) -> None:
            harness.run(self._settle())

        async def _settle(self) -> None:
            """The store is the model; every process has heard every change and every socket
            converged; then a ping closes the interval."""
            versions = {}
            for teacher in VOTED:
                *counts, versions[teacher] = await harness.store_teacher(teacher)
                assert tuple(counts) == world.counts(teacher), (teacher, counts, world)
            marks = await self._mark_subjects()
            await self._converged(versions, marks)
            sockets = self._all_sockets()
            pings = [(len(socket.client.messages), socket.client.send("ping")) for socket in sockets]
            for socket, (since, op_id) in zip(sockets, pings, strict=True):
                index, _ = await reply(socket.client, op_id, since)
                self._check_frames(socket, index + 1)
            harness.seen = world.sight()

        async def _mark_subjects(self) -> dict[str, str]:
            """Rename each subject: once a process's probes show the new names, that process has
            handled every catalog change before (it handles them in order)."""
            harness.marks += 1
            marks = {}
            for subject in SUBJECTS:
                marks[f"subject:{subject}"] = name = f"subject {subject} mark {harness.marks}"
                assert (await self._patch(subject, {"name": name}))["name"] == name
            return marks

        # -- invariants -----------------------------------------------------------

        @invariant()
        def no_frame_holds_a_count_it_may_not(self) -> None:
            for socket in self._all_sockets():
                self._check_frames(socket)

        def _all_sockets(self) -> list[Socket]:
            return harness.probes + [socket for socket in self.sockets if socket is not None]

        def _check_frames(self, socket: Socket, end: int | None = None) -> None:
            """The socket's frames not checked yet (up to `end`) against this interval's sight."""
            messages = socket.client.messages
            end = len(messages) if end is None else end
            for message in messages[socket.checked:end]:
                leaked = [subject for subject in counted(message) if not harness.seen[socket.actor, subject]]
                assert not leaked, f"{socket.actor} was sent counts of subject {leaked}: {message}; {world}"
                if message.get("channel") == "dashboard" and message["type"] in ("snapshot", "votes"):
                    problem = total_withholds(socket.totals, message)
                    assert problem is None, f"{socket.actor}: {problem}"
            socket.checked = max(socket.checked, end)

        def _saw(self) -> None:
            """A step of the model: whoever may see something now saw it in this interval."""
            for key, sees in world.sight().items():
                harness.seen[key] = harness.seen[key] or sees

        async def _converged(self, versions: dict[int, int], marks: dict[str, str]) -> None:
            """Until every socket's channels show what the model lets its person see, the probes
            the new subject names, and the admin's probes the store's versions: those have seen
            every vote, and the users' probes then show the sight every vote left."""
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SETTLE_TIMEOUT
            while True:
                stale = [
                    (socket.actor, channel, have, want)
                    for socket in self._all_sockets() for channel, view in socket.channels.items()
                    if (have := self._shown(socket, view)) != (want := self._wanted(socket, channel, versions))
                ] + [
                    (probe.actor, channel, name, marks[channel])
                    for probe in harness.probes for channel, view in probe.channels.items()
                    if (name := view.read(probe.client.messages).name) != marks[channel]
                ]
                if not stale:
                    return
                if loop.time() > deadline:
                    raise AssertionError(f"not converged within {SETTLE_TIMEOUT} s: {stale[:3]}; {world}")
                await asyncio.sleep(0.01)

        def _shown(self, socket: Socket, view: View) -> dict[int, tuple[Any, ...]]:
            shown = view.read(socket.client.messages).shown
            if socket.actor == ADMIN and socket in harness.probes:
                return dict(shown)
            return {no: (good, bad) for no, (good, bad, _) in shown.items()}

        def _wanted(self, socket: Socket, channel: str, versions: dict[int, int]) -> dict[int, tuple[Any, ...]]:
            kind, _, number = channel.partition(":")
            if kind == "dashboard":
                return {no: world.totals(no) if world.sees(socket.actor, no) else (None, None) for no in TEACHERS}
            teachers = TEACHERS[int(number)] if kind == "subject" else (int(number),)
            if socket.actor == ADMIN and socket in harness.probes:
                return {no: (*world.counts(no), versions[no]) for no in teachers}
            return {no: world.shown(socket.actor, no) for no in teachers}

        # -- sockets --------------------------------------------------------------

        async def _socket(self, slot: int) -> Socket:
            socket = self.sockets[slot]
            if socket is None:
                socket = self.sockets[slot] = await harness.connect(*SLOTS[slot])
            return socket

        def teardown(self) -> None:
            harness.run(self._teardown())

        async def _teardown(self) -> None:
            """Every example ends settled; then its sockets close (the probes stay for the next)."""
            try:
                await self._settle()
            finally:
                for socket in self.sockets:
                    if socket is not None:
                        await socket.client.close()

    return VisibilityMachine


async def _welcomed(client: LiveClient, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any(m.get("type") == "welcome" for m in client.messages):
        assert not client.closed and loop.time() < deadline, client.messages
        await asyncio.sleep(0.002)


def _ok(response: Response) -> Any:
    assert response.status == 200, response.body
    return response.json()


@pytest.mark.parametrize("mode", ["embedded", "redis"])
def test_no_count_reaches_whoever_may_not_see_it(tmp_path: Path, mode: str) -> None:
    harness = Harness(tmp_path, mode)
    harness.run_machine(machine_for, budget=0.5, steps=20)
