"""Hub: this process's sockets per channel, and what each channel shows.

No Redis here: count changes arrive on broker feeds (services/live/feeds.py)
through the EventBus, and the hub only fans them out.

Guarantees:
- Encode once, send many: a broadcast is serialized and framed once, and the
  same bytes are written to every socket of the channel.
- Coalescing: at most one `votes` message per channel per `ws.coalesce_ms`,
  carrying the latest state of every teacher that changed; the first change
  after a quiet period goes out at once.
- Slow sockets: the rule of services/live/peer.py; a socket that drained gets a
  snapshot of what it missed (`catch_up`).
- Presence: each subject channel, and the dashboard, is told how many people
  watch each subject across every process (services/live/presence.py brings
  the figures), in its snapshot and whenever the figure changes.
- Convergence: the board keeps the highest version of every teacher seen (a
  vote, a move and a rename each bump it, so a late message never undoes a
  newer one), a snapshot is built from the store and the board together after
  the channel's feed is active, news found by a store read goes out to the open
  channels as a broker message would, and after any broker gap every channel is
  sent a fresh snapshot from the store.
- The catalog is live too: a snapshot carries the records it shows (the
  subject, its teachers; the dashboard's subjects), so it is the whole state of
  its channel. A created, moved or renamed teacher joins the board, a deleted
  one leaves it (and its late votes are dropped), the dashboard's totals follow,
  a `teacher:N` channel follows its teacher to another subject's feed, and the
  channel of a deleted record is closed, so that subscribing again is
  `not_found`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import orjson

from services.backends.presence import PresenceCount
from services.backends.store import Store
from services.config import WsConfig
from services.errors import Invalid, NotFound
from services.events import CATALOG, REVOKED, EventBus, subject_votes
from services.live.event_stream import Events, EventStreamPeer
from services.live.feeds import Feeds
from services.live.messages import (
    CLOSE_GOING_AWAY,
    CLOSE_REVOKED,
    DASHBOARD,
    counts_json,
    frame,
    parse_channel,
    subject_of_channel,
    sum_by_subject,
    totals,
)
from services.live.peer import Backpressure, Peer, Person, Transport
from services.live.resumption import Resumption
from services.live.sight import NOTHING, Sight
from services.live.windows import WindowWatch
from services.metrics import Metrics
from services.models import Counts, Subject, Teacher, iso_utc, state_of, utc_now

log = logging.getLogger("livevote.hub")

PROFILE = ("name", "sex", "birth", "photo", "intro")
"""A teacher's fields besides its number, subject and counts: what a snapshot adds to show it."""


class Channel:
    """Sockets of one channel, the broker feed it needs, and the changes waiting for the next
    coalescing tick."""

    __slots__ = ("name", "feed", "opened_at", "peers", "pending", "regrouped", "cooling", "watching")

    def __init__(self, name: str, feed: str, opened_at: int) -> None:
        self.name = name
        self.feed = feed
        self.opened_at = opened_at
        """The board's change when it opened: an event stream's mark older than that cannot resume it."""
        self.peers: set[Peer] = set()
        self.pending: dict[int, Counts] = {}
        self.regrouped: set[int] = set()
        """Subjects whose totals changed by a teacher leaving them (the dashboard's only)."""
        self.cooling = False
        self.watching: Any = None
        """What this channel's sockets were last told about watchers."""


class Hub:
    def __init__(self, store: Store, events: EventBus, ws: WsConfig, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._events = events
        self._feeds = Feeds(events, store, self._on_votes, self._on_gap)
        self._revoked_frame = frame("revoked", reason="session ended")
        self._coalesce = ws.coalesce_ms / 1000
        self.backpressure = Backpressure(ws.max_pending, ws.stall_timeout, self.catch_up)
        self._channels: dict[str, Channel] = {}
        self._board: dict[int, Counts] = {}
        self._profiles: dict[int, tuple[int, dict[str, Any]]] = {}
        """Per teacher on the board: its record's version, and its name, sex, birth, photo, intro."""
        self._removed: set[int] = set()
        """Teachers deleted: their late votes are dropped (numbers are never reused)."""
        self._subjects: dict[int, dict[str, Any]] = {}
        self._catalog_generation = 0
        """Bumped by every catalog event: a store read begun before one may be out of date."""
        self._peers_by_sid: dict[str, set[Peer]] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watching: dict[int, int] = {}
        """People watching each subject, across every process, as last reported."""
        self._windows = WindowWatch(self._window_passed)
        self._sight = Sight(store)
        self._resumption = Resumption()
        self._stream_events = Events(self._resumption)

    @property
    def peer_count(self) -> int:
        return sum(len(peers) for peers in self._peers_by_sid.values())

    @property
    def mark(self) -> bytes:
        """What an event stream's next event would carry as its id (services/live/resumption.py)."""
        return self._resumption.mark

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    async def start(self) -> None:
        await self._events.listen(REVOKED, self._on_revoked)
        await self._events.listen(CATALOG, self._on_catalog)
        self._feeds.start()

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        self._windows.stop()
        for peers in list(self._peers_by_sid.values()):
            for peer in list(peers):
                peer.transport.close(code, reason)

    # -- membership ---------------------------------------------------------

    def join(self, transport: Transport, sid: str, person: Person, admin: bool = False, stream: bool = False) -> Peer:
        """A new socket of session `sid` (revoking that session closes it), watched by `person`;
        an event `stream` (services/live/event_stream.py) rather than a WebSocket."""
        if stream:
            peer: Peer = EventStreamPeer(transport, sid, self.backpressure, person, admin, self._stream_events)
        else:
            peer = Peer(transport, sid, self.backpressure, person, admin)
        self._add(peer)
        return peer

    def _add(self, peer: Peer) -> None:
        self._peers_by_sid.setdefault(peer.sid, set()).add(peer)

    def move(self, peer: Peer, sid: str) -> None:
        """The socket now belongs to session `sid`: revoking that one closes it."""
        self._forget_sid(peer)
        peer.sid = sid
        self._add(peer)

    def _forget_sid(self, peer: Peer) -> None:
        peers = self._peers_by_sid.get(peer.sid, set())
        peers.discard(peer)
        if not peers:
            self._peers_by_sid.pop(peer.sid, None)

    async def remove(self, peer: Peer) -> None:
        self._forget_sid(peer)
        for name in list(peer.channels):
            self._leave(peer, name)
        await self._feeds.sync()

    async def subscribe(self, peer: Peer, name: str, limit: int, since: str | None = None) -> list[bytes]:
        """Join a channel; returns its snapshot frame, to be sent right after the ack, or for an
        event stream coming back from the mark `since`, what changed after it when the hub can
        tell (services/live/resumption.py).

        The first socket of a channel reads the store once the channel's feed is
        listened to; between that read and joining there is no await, so every
        change that arrived meanwhile is already on the board and in the
        snapshot. Later sockets are served from the board, which the feed has
        kept current since (a broker gap re-reads every channel), so a
        reconnect storm costs no reads. The snapshot is built after the last
        await, since the socket hears the channel's news from its join on: a
        record removed meanwhile must not come back in an older snapshot.
        """
        kind, number = parse_channel(name)
        if name not in peer.channels and len(peer.channels) >= limit:
            raise Invalid(f"A socket may hold at most {limit} subscriptions.")
        try:
            channel = self._channels.get(name) or await self._open_channel(name, kind, number)
            channel.peers.add(peer)
            peer.channels.add(name)
        finally:
            await self._feeds.sync()
        hidden = self._sight.withheld(peer, self._private_shown(channel))
        seen = self._resumption.since(since)
        if seen is None or channel.opened_at > seen:
            return [self._snapshot_frame(channel, hidden)]
        return self._changes_after(channel, seen, hidden)

    async def _open_channel(self, name: str, kind: str, number: int | None) -> Channel:
        """The first subscriber reads the store; those arriving meanwhile wait for that one read,
        and those arriving later join the channel it opened. A read that a broker gap or a
        catalog change overtook is done again. The feed is held meanwhile, so that it stays
        however the other channels come and go."""
        feed = await self._feeds.feed_of(kind, number)
        self._feeds.hold(feed)
        try:
            await self._feeds.sync()
            while (channel := self._channels.get(name)) is None:  # opened meanwhile: no read of ours
                generation = self._generation
                loading = self._loading.get(name) or self._load(name, kind, number)
                await asyncio.shield(loading)
                if generation == self._generation and name not in self._channels:
                    channel = self._channels[name] = Channel(name, feed, self._resumption.seq)
                    self._feeds.hold(feed)
            return channel
        finally:
            self._feeds.release(feed)

    @property
    def _generation(self) -> tuple[int, int]:
        return self._feeds.generation, self._catalog_generation

    def _load(self, name: str, kind: str, number: int | None) -> asyncio.Future[None]:
        loading = self._loading[name] = asyncio.ensure_future(self._read(kind, number))

        def forget(done: asyncio.Future[None]) -> None:
            if self._loading.get(name) is done:
                del self._loading[name]

        loading.add_done_callback(forget)
        return loading

    async def unsubscribe(self, peer: Peer, name: str) -> None:
        parse_channel(name)
        self._leave(peer, name)
        await self._feeds.sync()

    def _leave(self, peer: Peer, name: str) -> None:
        peer.channels.discard(name)
        channel = self._channels.get(name)
        if channel is not None:
            channel.peers.discard(peer)
            if not channel.peers:
                del self._channels[name]
                self._resumption.sent(channel)
                self._feeds.release(channel.feed)

    def _close_channel(self, name: str) -> None:
        """The channel's record was deleted: its sockets were told, and a new subscribe reads the
        store again (and is `not_found`)."""
        channel = self._channels.pop(name, None)
        if channel is None:
            return
        for peer in channel.peers:
            peer.channels.discard(name)
        channel.peers.clear()
        channel.pending.clear()
        self._resumption.sent(channel)
        self._feeds.release(channel.feed)
        self._spawn(self._feeds.sync())

    # -- state --------------------------------------------------------------

    async def _read(self, kind: str, number: int | None) -> None:
        """The channel's records from the store, onto the board; NotFound for an unknown record.
        A read that a catalog event overtook is done again before it is used. A teacher the
        board files under the subject read but the store does not list there has moved or gone:
        it is read on its own."""
        while True:
            generation = self._catalog_generation
            subjects, teachers = await self._records_of(kind, number)
            if generation == self._catalog_generation:
                break
        for subject in subjects:
            self._subjects[subject.no] = dict(subject.to_json())
        if kind == DASHBOARD:
            for no in set(self._subjects) - {subject.no for subject in subjects}:
                del self._subjects[no]
        if subjects:
            self._subjects_changed()
            shown = {subject.no for subject in subjects} if kind == DASHBOARD else {subjects[0].no}
            if after_vote := self._sight.after_vote(shown):
                for voted_in, user in (await self._sight.read_voters(after_vote, again=True))[1]:
                    self._spawn(self._recheck(voted_in, user))
        for teacher in teachers:
            self._merge_teacher(dict(teacher.to_json()))
        if kind == "teacher":
            return
        listed = {teacher.no for teacher in teachers}
        for no in [no for no, counts in self._board.items() if no not in listed and number in (None, counts.subject)]:
            try:
                self._merge_teacher(dict((await self._store.get_teacher(no)).to_json()))
            except NotFound:
                self._gone("teacher", no)

    async def _records_of(self, kind: str, number: int | None) -> tuple[list[Subject], list[Teacher]]:
        if kind == "teacher":
            assert number is not None
            while True:  # with its subject, for who may see its counts
                teacher = await self._store.get_teacher(number)
                try:
                    return [await self._store.get_subject(teacher.subject)], [teacher]
                except NotFound:  # it moved, and the subject it left was deleted: read it again
                    continue
        if kind == "subject":
            assert number is not None
            subjects = [await self._store.get_subject(number)]
        else:
            subjects = (await self._store.list_subjects()).items
        return subjects, (await self._store.list_teachers(number)).items

    def _merge_teacher(self, record: dict[str, Any]) -> None:
        """A teacher's record, from the store or a catalog event: the newer version wins."""
        no, version = record["no"], record["version"]
        if no in self._removed:
            return
        known = self._profiles.get(no)
        if known is None or known[0] <= version:
            self._profiles[no] = version, {key: record[key] for key in PROFILE}
        self._apply(Counts(no, record["subject"], record["good_count"], record["bad_count"], version))

    def _remove_teacher(self, no: int) -> None:
        self._removed.add(no)
        self._resumption.forget(no)
        self._profiles.pop(no, None)
        known = self._board.pop(no, None)
        if known is not None:
            self._regroup(known.subject)
        self._close_channel(f"teacher:{no}")

    def _apply(self, counts: Counts) -> None:
        """Keep the higher version; news goes out to the open channels that show it, whether it
        came from the broker or from a store read that overtook the broker's message."""
        known = self._board.get(counts.no)
        if (known is not None and known.version >= counts.version) or counts.no in self._removed:
            return
        self._board[counts.no] = counts
        self._resumption.changed(counts.no)
        if known is not None and known.subject != counts.subject:
            self._resumption.reset()
            self._regroup(known.subject)
            teacher = self._channels.get(f"teacher:{counts.no}")
            if teacher is not None:
                self._follow(teacher, counts.subject)
        for name in (f"subject:{counts.subject}", f"teacher:{counts.no}", DASHBOARD):
            channel = self._channels.get(name)
            if channel is not None:
                channel.pending[counts.no] = counts
                self._resumption.waiting(channel)
                if not channel.cooling:
                    self._flush(channel)

    def _regroup(self, subject: int) -> None:
        """A teacher left `subject`: the dashboard's totals of it change."""
        channel = self._channels.get(DASHBOARD)
        if channel is not None:
            channel.regrouped.add(subject)
            self._resumption.waiting(channel)
            if not channel.cooling:
                self._flush(channel)

    def _follow(self, channel: Channel, subject: int) -> None:
        """A teacher's channel moves with it to its new subject's feed, then reads it once more
        for the votes that feed carried before it was listened to."""
        feed = subject_votes(subject)
        if channel.feed == feed:
            return
        self._feeds.hold(feed)
        self._feeds.release(channel.feed)
        channel.feed = feed
        self._spawn(self._refresh(channel.name))

    async def _refresh(self, name: str) -> None:
        await self._feeds.sync()
        kind, number = parse_channel(name)
        with contextlib.suppress(NotFound):  # deleted meanwhile: its catalog event closes the channel
            await self._read(kind, number)

    def _latest(self, channel: Channel) -> list[Counts]:
        """The teachers a channel shows, by number."""
        if channel.name == DASHBOARD:
            shown: Iterable[Counts] = self._board.values()
        elif (subject := subject_of_channel(channel.name)) is not None:
            shown = (counts for counts in self._board.values() if counts.subject == subject)
        else:
            _, number = parse_channel(channel.name)
            shown = [self._board[number]] if number in self._board else []
        return sorted(shown, key=lambda counts: counts.no)

    def _subject_names(self) -> dict[int, str]:
        return {no: subject["name"] for no, subject in self._subjects.items()}

    def _teacher_json(self, counts: Counts, withheld: bool = False) -> dict[str, Any]:
        _, profile = self._profiles.get(counts.no, (0, {}))
        shown: dict[str, int | None] = {**counts_json(counts)}
        if withheld:
            shown.update(good_count=None, bad_count=None)
        return {"no": counts.no, **profile, "subject": counts.subject, **shown}

    def _subject_json(self, no: int) -> dict[str, Any]:
        """A subject's record with its voting state as of now; {} while it is not known."""
        record = self._subjects.get(no)
        return {} if record is None else {**record, "state": state_of(record)}

    def _snapshot_frame(self, channel: Channel, hidden: frozenset[int] = NOTHING) -> bytes:
        """The channel's whole state, less the counts of the `hidden` subjects."""
        message: dict[str, Any] = {"channel": channel.name, "now": iso_utc(utc_now())}
        if channel.name == DASHBOARD:
            summed = totals(sum_by_subject(self._latest(channel), self._subject_names()), hidden=hidden)
            message["subjects"] = [{**self._subject_json(s["no"]), **s} for s in summed["subjects"]]
            message["votes_total"] = summed["votes_total"]
        else:
            subject = subject_of_channel(channel.name)
            if subject is not None and subject in self._subjects:
                message["subject"] = self._subject_json(subject)
            message["teachers"] = [self._teacher_json(counts, counts.subject in hidden)
                                   for counts in self._latest(channel)]
        watching = self._watching_of(channel.name)
        if watching is not None:
            message["watching"] = channel.watching = watching
        return frame("snapshot", **message)

    # -- presence -------------------------------------------------------------

    def presence_count(self) -> PresenceCount:
        """This process's part: open sockets, and the people on each subject channel (a user with
        three tabs, or one viewer token on a thousand sockets, is one)."""
        by_subject = {
            number: len({peer.person for peer in channel.peers}) for name, channel in self._channels.items()
            if (number := subject_of_channel(name)) is not None
        }
        return PresenceCount(self.peer_count, by_subject)

    def show_presence(self, by_subject: Mapping[int, int]) -> None:
        """Every process's watchers per subject: each channel that shows them hears of a change."""
        self._watching = dict(by_subject)
        for channel in list(self._channels.values()):
            value = self._watching_of(channel.name)
            if value is None or value == channel.watching:
                continue
            channel.watching = value
            watching = frame("watching", channel=channel.name, watching=value)
            for peer in list(channel.peers):
                peer.send(watching, channel.name)

    def _watching_of(self, name: str) -> int | dict[str, int] | None:
        """A subject channel's watchers, the dashboard's per subject; None for a teacher channel."""
        if name == DASHBOARD:
            return {str(subject): count for subject, count in sorted(self._watching.items())}
        subject = subject_of_channel(name)
        return None if subject is None else self._watching.get(subject, 0)

    # -- fan-out ------------------------------------------------------------

    def _on_votes(self, _channel: str, data: bytes) -> None:
        """Counts that changed; a vote's message also names its voter, for after_vote sight."""
        self._metrics.feed_messages.inc()
        fields = orjson.loads(data)
        voter, cast = fields.pop("voter", None), fields.pop("cast", None)
        counts = Counts(**fields)
        self._apply(counts)
        if voter is not None:
            gained = self._sight.voted(counts.subject, voter, cast)
            if gained is None:
                self._spawn(self._recheck(counts.subject, voter))
            elif gained:
                self._resend(counts.subject, voter)

    async def _recheck(self, subject: int, user: int) -> None:
        """A withdrawal in an after_vote subject: the user's pages lose sight if it was their last."""
        try:
            lost = await self._sight.recheck(subject, user)
        except Exception as exc:  # the next gap's re-read corrects it
            log.warning("could not check the votes of user %s in subject %s: %r", user, subject, exc)
            return
        if lost:
            self._resend(subject, user)

    def _flush(self, channel: Channel) -> None:
        if not channel.pending and not channel.regrouped:
            channel.cooling = False
            return
        changed, channel.pending = list(channel.pending.values()), {}
        regrouped, channel.regrouped = channel.regrouped, set()
        self._resumption.sent(channel)
        self._metrics.broadcasts.inc()
        self._send_each(
            channel, lambda hidden: self._votes_frame(channel, changed, regrouped, hidden), list(channel.peers),
            broadcast=True,
        )
        if self._coalesce:
            channel.cooling = True
            asyncio.get_running_loop().call_later(self._coalesce, self._flush, channel)

    def _votes_frame(
        self, channel: Channel, changed: list[Counts], regrouped: set[int], hidden: frozenset[int]
    ) -> bytes | None:
        """The `changed` teachers' counts (the dashboard's totals of their subjects, and of the
        `regrouped` ones), less the `hidden` subjects'; None when that leaves nothing."""
        message: dict[str, Any] = {"channel": channel.name}
        if channel.name == DASHBOARD:
            only = (regrouped | {counts.subject for counts in changed}) - hidden
            if not only:
                return None
            summed = sum_by_subject(self._latest(channel), self._subject_names())
            message.update(totals(summed, only=only, hidden=hidden))
        else:
            message["updates"] = [counts_json(c) for c in changed if c.subject not in hidden]
            if not message["updates"]:
                return None
        return frame("votes", **message)

    def _changes_after(self, channel: Channel, seen: int, hidden: frozenset[int]) -> list[bytes]:
        """What changed on the channel after the change `seen`, for a stream that comes back: the
        teachers' latest counts, and the watchers as they are now."""
        frames = []
        changed = self._resumption.changed_after(seen, self._latest(channel))
        votes = self._votes_frame(channel, changed, set(), hidden) if changed else None
        if votes is not None:
            frames.append(votes)
        watching = self._watching_of(channel.name)
        if watching is not None:
            frames.append(frame("watching", channel=channel.name, watching=watching))
        return frames

    def _send_each(
        self, channel: Channel, build: Callable[[frozenset[int]], bytes | None], peers: list[Peer], broadcast: bool,
        private: set[int] | None = None,
    ) -> None:
        """One frame per visibility class among `peers` (by the `private` subjects, by default
        those the channel shows): while every subject is public (the usual case) that is one
        frame for all, with no question per socket."""
        private = self._private_shown(channel) if private is None else private
        classes: dict[frozenset[int], list[Peer]] = {NOTHING: peers}
        if private:
            classes = {}
            for peer in peers:
                classes.setdefault(self._sight.withheld(peer, private), []).append(peer)
        for hidden, members in classes.items():
            data = build(hidden)
            if data is not None:
                for peer in members:
                    peer.send(data, channel.name if broadcast else None)

    def _private_shown(self, channel: Channel) -> set[int]:
        """The subjects the channel shows whose counts not everyone may see now."""
        if not self._sight.private:
            return set()
        if channel.name == DASHBOARD:
            return set(self._sight.private)
        return self._sight.shown(self._subjects_of(channel))

    def _send_snapshots(self, channel: Channel, peers: list[Peer] | None = None) -> None:
        """A fresh snapshot to the channel's sockets (or these of them), one per visibility class."""
        self._send_each(channel, lambda hidden: self._snapshot_frame(channel, hidden),
                        list(channel.peers) if peers is None else peers, broadcast=False)

    def _resend(self, subject: int, user: int | None = None) -> None:
        """Who may see the subject's counts changed (for everyone, or for one user): the channels
        that show it send their sockets (that user's) a snapshot of what they may see now."""
        self._resumption.reset()
        for channel in list(self._channels.values()):
            if channel.name != DASHBOARD and subject not in self._subjects_of(channel):
                continue
            peers = [peer for peer in channel.peers if user is None or peer.person == user]
            if peers:
                self._send_snapshots(channel, peers)

    def _subjects_of(self, channel: Channel) -> set[int]:
        """The subject a subject's or a teacher's channel shows (none for a teacher not on the board)."""
        subject = subject_of_channel(channel.name)
        if subject is not None:
            return {subject}
        _, number = parse_channel(channel.name)
        known = self._board.get(number) if number is not None else None
        return set() if known is None else {known.subject}

    def _subjects_changed(self) -> list[int]:
        """The subjects' records changed: watch their windows, and resend where sight changed.
        Returns the after_vote subjects whose voters are still to be read."""
        self._windows.watch(self._subjects.values())
        for subject in self._sight.update(self._subjects.values()):
            self._resend(subject)
        return self._sight.unread_voters()

    async def _read_voters(self, subjects: list[int]) -> None:
        try:
            read, rechecks = await self._sight.read_voters(subjects)
        except Exception as exc:  # they stay unseen until the next gap's re-read
            log.warning("could not read the voters of subjects %s: %r", subjects, exc)
            return
        for subject in read:
            self._resend(subject)
        for subject, user in rechecks:
            self._spawn(self._recheck(subject, user))

    def catch_up(self, peer: Peer, missed: set[str]) -> None:
        """A socket that fell behind has drained: send it the latest state of what it missed."""
        for name in missed:
            channel = self._channels.get(name)
            if channel is not None and peer in channel.peers:
                self._metrics.catch_ups.inc()
                self._send_snapshots(channel, [peer])

    # -- events -------------------------------------------------------------

    def _on_catalog(self, _channel: str, data: bytes) -> None:
        """A subject or teacher was added, changed or removed. The board and the subjects follow;
        a teacher's change goes to its own channel and to every subject channel (it may have
        moved between subjects: each page keeps the teachers of its own subject); a subject's to
        its channel and the dashboard. A removed record's channel is closed once told."""
        self._catalog_generation += 1
        self._resumption.reset()
        event = orjson.loads(data)
        kind, record, removed = event["kind"], event.get("record"), event.get("removed")
        number = record["no"] if record is not None else removed
        if kind == "subject" and record is not None:
            self._subjects[number] = record
        elif kind == "subject":
            self._subjects.pop(number, None)
        elif record is not None:
            self._merge_teacher(record)
        audience = DASHBOARD if kind == "subject" else "subject:"
        counted = self._sight.shown([record["subject"]]) if kind == "teacher" and record is not None else set()
        for channel in list(self._channels.values()):
            if channel.name == f"{kind}:{number}" or channel.name.startswith(audience):

                def catalog(hidden: frozenset[int], name: str = channel.name) -> bytes:
                    if hidden:  # a teacher's record, of a subject whose counts these sockets may not see
                        return frame("catalog", channel=name, **{**event, "record": _withheld(event["record"])})
                    return frame("catalog", channel=name, **event)

                self._send_each(channel, catalog, list(channel.peers), broadcast=False, private=counted)
        if kind == "subject" and (unread := self._subjects_changed()):
            self._spawn(self._read_voters(unread))
        if kind == "teacher" and removed is not None:
            self._remove_teacher(removed)
        elif removed is not None:
            self._close_channel(f"subject:{removed}")

    def _window_passed(self, no: int) -> None:
        """A scheduled opening or closing of subject `no` passed: its pages hear the subject as
        after an admin's change, with the state it has now."""
        record = self._subject_json(no)
        if not record:
            return
        self._resumption.reset()
        for name in (f"subject:{no}", DASHBOARD):
            channel = self._channels.get(name)
            if channel is not None:
                catalog = frame("catalog", channel=name, kind="subject", record=record)
                for peer in list(channel.peers):
                    peer.send(catalog)
        self._subjects_changed()  # an after_close subject that closed shows its counts now

    def _on_revoked(self, _channel: str, data: bytes) -> None:
        for sid in orjson.loads(data)["sids"]:
            for peer in list(self._peers_by_sid.get(sid, ())):
                self.revoke(peer)

    def revoke(self, peer: Peer) -> None:
        """Tell the socket its session ended, and close it 4003."""
        peer.send(self._revoked_frame)
        peer.transport.close(CLOSE_REVOKED, "session revoked")

    def _on_gap(self) -> None:
        self._resumption.reset()
        self._loading.clear()
        self._spawn(self._resnapshot())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _gone(self, kind: str, number: int) -> None:
        """A record was deleted without its event reaching this process (a gap), or before the
        event came: the sockets of its channel hear it as they would have, then it closes."""
        self._resumption.reset()
        name = f"{kind}:{number}"
        channel = self._channels.get(name)
        if channel is not None:
            removed = frame("catalog", channel=name, kind=kind, removed=number)
            for peer in list(channel.peers):
                peer.send(removed)
        if kind == "teacher":
            self._remove_teacher(number)  # which closes its channel
        else:
            self._close_channel(name)

    async def _resnapshot(self) -> None:
        """After a broker gap: every channel gets a fresh snapshot from the store, records
        included, so that what changed meanwhile shows (channels still being opened read it
        again: see _open_channel). A channel whose record is gone is told so and closed."""
        self._metrics.resyncs.inc()
        for name, channel in list(self._channels.items()):
            kind, number = parse_channel(name)
            try:
                await self._read(kind, number)
            except NotFound:
                assert number is not None  # only a record's channel can be not found
                self._gone(kind, number)
                continue
            except Exception:
                log.exception("could not refresh channel %s after a broker gap", name)
                continue
            if self._channels.get(name) is channel:
                self._send_snapshots(channel)


def _withheld(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "good_count": None, "bad_count": None}
