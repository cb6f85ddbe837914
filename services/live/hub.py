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
- Convergence: the board keeps the highest version of every teacher seen, a
  snapshot is built from the store and the board together after the channel's
  feed is active, news found by a store read goes out to the open channels as
  a broker message would, and after any broker gap every channel is sent a
  fresh snapshot from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from services.backends.presence import PresenceCount
from services.backends.store import Store
from services.config import WsConfig
from services.errors import Invalid
from services.events import CATALOG, REVOKED, EventBus
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
from services.metrics import Metrics
from services.models import Counts

log = logging.getLogger("livevote.hub")


class Channel:
    """Sockets of one channel, the broker feed it needs, and the changes waiting for the next
    coalescing tick."""

    __slots__ = ("name", "feed", "peers", "teachers", "pending", "cooling", "watching")

    def __init__(self, name: str, feed: str) -> None:
        self.name = name
        self.feed = feed
        self.peers: set[Peer] = set()
        self.teachers: set[int] = set()
        self.pending: dict[int, Counts] = {}
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
        self._subject_names: dict[int, str] = {}
        self._peers_by_sid: dict[str, set[Peer]] = {}
        self._loading: dict[str, asyncio.Future[list[Counts]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watching: dict[int, int] = {}
        """People watching each subject, across every process, as last reported."""

    @property
    def peer_count(self) -> int:
        return sum(len(peers) for peers in self._peers_by_sid.values())

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    async def start(self) -> None:
        await self._events.listen(REVOKED, self._on_revoked)
        await self._events.listen(CATALOG, self._on_catalog)
        self._feeds.start()

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        for peers in list(self._peers_by_sid.values()):
            for peer in list(peers):
                peer.transport.close(code, reason)

    # -- membership ---------------------------------------------------------

    def join(self, transport: Transport, sid: str, person: Person) -> Peer:
        """A new socket of session `sid` (revoking that session closes it), watched by `person`."""
        peer = Peer(transport, sid, self.backpressure, person)
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

    async def subscribe(self, peer: Peer, name: str, limit: int) -> bytes:
        """Join a channel; returns its snapshot frame, to be sent right after the ack.

        The first socket of a channel reads the store once the channel's feed is
        listened to; between that read and joining there is no await, so every
        change that arrived meanwhile is already on the board and in the
        snapshot. Later sockets are served from the board, which the feed has
        kept current since (a broker gap re-reads every channel), so a
        reconnect storm costs no reads.
        """
        kind, number = parse_channel(name)
        if name not in peer.channels and len(peer.channels) >= limit:
            raise Invalid(f"A socket may hold at most {limit} subscriptions.")
        try:
            channel = self._channels.get(name) or await self._open_channel(name, kind, number)
            channel.peers.add(peer)
            peer.channels.add(name)
            return self._snapshot_frame(channel)
        finally:
            await self._feeds.sync()

    async def _open_channel(self, name: str, kind: str, number: int | None) -> Channel:
        """The first subscriber reads the store; those arriving meanwhile wait for that one read.
        A read that a broker gap overtook is done again. The feed is held meanwhile, so that it
        stays however the other channels come and go."""
        feed = await self._feeds.feed_of(kind, number)
        self._feeds.hold(feed)
        try:
            await self._feeds.sync()
            while True:
                generation = self._feeds.generation
                loading = self._loading.get(name) or self._load(name, kind, number)
                snapshot = await asyncio.shield(loading)
                if generation == self._feeds.generation:
                    break
            channel = self._channels.get(name)
            if channel is None:
                channel = self._channels[name] = Channel(name, feed)
                self._feeds.hold(feed)
            channel.teachers.update(counts.no for counts in snapshot)
            return channel
        finally:
            self._feeds.release(feed)

    def _load(self, name: str, kind: str, number: int | None) -> asyncio.Future[list[Counts]]:
        loading = self._loading[name] = asyncio.ensure_future(self._snapshot(kind, number))

        def forget(done: asyncio.Future[list[Counts]]) -> None:
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
                self._feeds.release(channel.feed)

    # -- state --------------------------------------------------------------

    async def _snapshot(self, kind: str, number: int | None) -> list[Counts]:
        """Fresh counts from the store, merged onto the board; NotFound for an unknown record."""
        if kind == "teacher":
            assert number is not None
            teacher = await self._store.get_teacher(number)
            fresh = [Counts(teacher.no, teacher.subject, teacher.good_count, teacher.bad_count, teacher.version)]
        elif kind == "subject":
            assert number is not None
            await self._store.get_subject(number)
            fresh = await self._store.counts(number)
        else:
            self._subject_names = {subject.no: subject.name for subject in await self._store.subject_totals()}
            fresh = await self._store.counts()
        for counts in fresh:
            self._apply(counts)
        return [self._board[counts.no] for counts in fresh]

    def _apply(self, counts: Counts) -> None:
        """Keep the higher version; news goes out to the open channels that show it, whether it
        came from the broker or from a store read that overtook the broker's message."""
        known = self._board.get(counts.no)
        if known is not None and known.version >= counts.version:
            return
        self._board[counts.no] = counts
        for name in (f"subject:{counts.subject}", f"teacher:{counts.no}", DASHBOARD):
            channel = self._channels.get(name)
            if channel is not None:
                channel.teachers.add(counts.no)
                channel.pending[counts.no] = counts
                if not channel.cooling:
                    self._flush(channel)

    def _latest(self, channel: Channel) -> Iterable[Counts]:
        return (self._board[no] for no in sorted(channel.teachers) if no in self._board)

    def _snapshot_frame(self, channel: Channel) -> bytes:
        message: dict[str, Any] = {"channel": channel.name}
        if channel.name == DASHBOARD:
            message.update(totals(sum_by_subject(self._latest(channel), self._subject_names)))
        else:
            message["teachers"] = [counts_json(counts) for counts in self._latest(channel)]
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
        self._metrics.feed_messages.inc()
        self._apply(Counts(**orjson.loads(data)))

    def _flush(self, channel: Channel) -> None:
        if not channel.pending:
            channel.cooling = False
            return
        changed, channel.pending = channel.pending, {}
        message: dict[str, Any] = {"channel": channel.name}
        if channel.name == DASHBOARD:
            subjects = sum_by_subject(self._latest(channel), self._subject_names)
            message.update(totals(subjects, only={counts.subject for counts in changed.values()}))
        else:
            message["updates"] = [counts_json(counts) for counts in changed.values()]
        votes = frame("votes", **message)
        self._metrics.broadcasts.inc()
        for peer in list(channel.peers):
            peer.send(votes, channel.name)
        if self._coalesce:
            channel.cooling = True
            asyncio.get_running_loop().call_later(self._coalesce, self._flush, channel)

    def catch_up(self, peer: Peer, missed: set[str]) -> None:
        """A socket that fell behind has drained: send it the latest state of what it missed."""
        for name in missed:
            channel = self._channels.get(name)
            if channel is not None and peer in channel.peers:
                self._metrics.catch_ups.inc()
                peer.send(self._snapshot_frame(channel))

    # -- events -------------------------------------------------------------

    def _on_catalog(self, _channel: str, data: bytes) -> None:
        """A subject or teacher was added, changed or removed. A teacher's change goes to its own
        channel and to every subject channel (it may have moved between subjects: each page keeps
        the teachers of its own subject); a subject's to its channel and the dashboard."""
        event = orjson.loads(data)
        kind, record, removed = event["kind"], event.get("record"), event.get("removed")
        if kind == "subject":
            if record is not None:
                self._subject_names[record["no"]] = record["name"]
            else:
                self._subject_names.pop(removed, None)
        number = record["no"] if record is not None else removed
        audience = DASHBOARD if kind == "subject" else "subject:"
        for channel in list(self._channels.values()):
            if channel.name == f"{kind}:{number}" or channel.name.startswith(audience):
                catalog = frame("catalog", channel=channel.name, **event)
                for peer in list(channel.peers):
                    peer.send(catalog)

    def _on_revoked(self, _channel: str, data: bytes) -> None:
        for sid in orjson.loads(data)["sids"]:
            for peer in list(self._peers_by_sid.get(sid, ())):
                self.revoke(peer)

    def revoke(self, peer: Peer) -> None:
        """Tell the socket its session ended, and close it 4003."""
        peer.send(self._revoked_frame)
        peer.transport.close(CLOSE_REVOKED, "session revoked")

    def _on_gap(self) -> None:
        self._loading.clear()
        task = asyncio.ensure_future(self._resnapshot())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resnapshot(self) -> None:
        """After a broker gap: every channel gets a fresh snapshot from the store (channels
        still being opened read it again: see _open_channel)."""
        self._metrics.resyncs.inc()
        for name, channel in list(self._channels.items()):
            kind, number = parse_channel(name)
            try:
                channel.teachers.update(counts.no for counts in await self._snapshot(kind, number))
            except Exception:
                log.exception("could not refresh channel %s after a broker gap", name)
                continue
            snapshot = self._snapshot_frame(channel)
            for peer in list(channel.peers):
                peer.send(snapshot)
