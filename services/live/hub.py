"""Hub: this process's sockets per channel. No Redis here: changes arrive through
the EventBus, and the hub only fans them out.

Guarantees:
- Encode once, send many: a broadcast is serialized and framed once, and the
  same bytes are written to every socket of the channel.
- Coalescing: at most one `votes` message per channel per `ws.coalesce_ms`,
  carrying the latest state of every teacher that changed; the first change
  after a quiet period goes out at once.
- Counts are state, not a log: a socket whose unsent output passes
  `ws.max_pending` is skipped, and once it drains it gets a snapshot of the
  latest state of what it missed; one stuck past `ws.stall_timeout` is closed
  4008. Memory per socket stays bounded either way.
- Feeds: each channel needs one broker feed (its subject's, or every
  subject's for the dashboard), listened to only while a channel or a
  subscribe under way holds it.
- Watching: each subject channel, and the dashboard, is told how many sockets
  watch each subject across every process (services/live/presence.py brings the
  census), in its snapshot and whenever the figure changes.
- Convergence: the board keeps the highest version of every teacher seen, a
  snapshot is built from the store and the board together after the channel's
  feed is active, news found by a store read goes out to the open channels as
  a broker message would, and after any broker gap every channel is sent a
  fresh snapshot from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import orjson

from services.backends.presence import Census
from services.backends.store import Store
from services.config import WsConfig
from services.errors import Invalid
from services.events import ALL_VOTES, CATALOG, REVOKED, EventBus, subject_votes
from services.metrics import Metrics
from services.models import Counts
from services.schemas import canonical_int

log = logging.getLogger("livevote.hub")

DASHBOARD = "dashboard"
CLOSE_GOING_AWAY = 1001
CLOSE_REVOKED = 4003
CLOSE_TOO_SLOW = 4008


class BadChannel(Invalid):
    """A channel name that is not subject:{no}, teacher:{no} or dashboard."""


class Sink(Protocol):
    """A raw byte sink: what the kernel takes of `data` at once (OSError when it takes none)."""

    def send(self, data: bytes, /) -> int: ...


class Transport(Protocol):
    def sink(self) -> Sink | None:
        """The socket itself, while the connection is open and nothing is queued before it."""

    def write_frame(self, frame: bytes) -> bool:
        """Queue a frame behind what is queued; once the socket is closing, drop it (False)."""

    def drained(self) -> asyncio.Future[None]:
        """Resolves once everything queued so far is flushed (or the socket closed)."""

    def close(self, code: int, reason: str) -> None: ...


class Peer:
    """One socket as the hub sees it: its channels and whether it fell behind.

    A frame goes straight to the socket's send() while nothing is queued before
    it: a broadcast to a socket that keeps up is one system call, and touches
    the Peer and the socket alone (at 10,000 sockets, every other object is a
    cache miss). What the kernel does not take is queued in the transport, in
    order, and counts against `ws.max_pending`, replies as well as broadcasts.
    Past it the socket is behind: broadcasts are skipped (the channels noted),
    a timer closes it 4008 unless it drains within `ws.stall_timeout`, and once
    it drains it gets a snapshot of what it missed.
    """

    __slots__ = ("transport", "sid", "channels", "direct", "_hub", "_queued", "_missed", "_stall_timer")

    def __init__(self, transport: Transport, sid: str, hub: Hub) -> None:
        self.transport = transport
        self.sid = sid
        self.channels: set[str] = set()
        self.direct = transport.sink()
        """The socket, while frames may go straight to it; None once one was queued, or when
        the transport wrote on its own (a pong, the close frame)."""
        self._hub = hub
        self._queued = 0
        """Bytes queued since the transport was last seen clear (an upper bound on its backlog)."""
        self._missed: set[str] | None = None
        """Channels skipped while behind; None while the socket keeps up."""
        self._stall_timer: asyncio.TimerHandle | None = None

    @property
    def behind(self) -> bool:
        return self._missed is not None

    def send(self, frame: bytes, channel: str | None = None) -> None:
        """Write a frame. A broadcast names its `channel`: it is skipped while the socket is
        behind, the channel noted. Without one (replies, snapshots, tokens) it is never dropped.
        This runs once per socket per broadcast: the common case reads `direct` and sends."""
        sink = self.direct
        if sink is None:
            if channel is not None and self._missed is not None:
                self._missed.add(channel)
                return
            sink = self.transport.sink()
            if sink is not None:
                self._queued = 0
                asyncio.get_running_loop().call_soon(self._clear)
        if sink is not None:
            try:
                sent = sink.send(frame)
            except OSError:
                sent = 0
            if sent == len(frame):
                return
            frame = frame[sent:]
        self._queue(frame)

    def _queue(self, frame: bytes) -> None:
        """A queued write is also how a socket that failed gets closed: the transport sees it."""
        self.direct = None
        if not self.transport.write_frame(frame):
            return
        self._queued += len(frame)
        if self._queued > self._hub.max_pending and self._missed is None:
            self._fall_behind()

    def _clear(self) -> None:
        """Frames go straight to the socket again if it is still clear once the callbacks
        already due have run: the transport may write from one of them (a pong it held back)."""
        self.direct = self.transport.sink()

    def _fall_behind(self) -> None:
        self._missed = set()
        self._stall_timer = asyncio.get_running_loop().call_later(self._hub.stall_timeout, self._stalled)
        self.transport.drained().add_done_callback(self._drained)

    def _stalled(self) -> None:
        self.transport.close(CLOSE_TOO_SLOW, "too slow")

    def _drained(self, flushed: asyncio.Future[None]) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        missed, self._missed, self._stall_timer = self._missed or set(), None, None
        if not flushed.cancelled() and flushed.exception() is None:
            self._hub.catch_up(self, missed)


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


def parse_channel(name: object) -> tuple[str, int | None]:
    if name == DASHBOARD:
        return DASHBOARD, None
    if isinstance(name, str):
        kind, _, digits = name.partition(":")
        number = canonical_int(digits)
        if kind in ("subject", "teacher") and number is not None:
            return kind, number
    raise BadChannel("Channels are subject:{no}, teacher:{no} and dashboard.")


def subject_of_channel(name: str) -> int | None:
    """N for an open channel named subject:N (names are canonical once open)."""
    return int(name[len("subject:"):]) if name.startswith("subject:") else None


def counts_json(counts: Counts) -> dict[str, int]:
    return {"no": counts.no, "good_count": counts.good_count, "bad_count": counts.bad_count, "version": counts.version}


class Hub:
    def __init__(
        self, store: Store, events: EventBus, frame: Callable[[bytes], bytes], ws: WsConfig, metrics: Metrics
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._events = events
        self._frame = frame
        self._revoked_frame = frame(orjson.dumps({"type": "revoked", "reason": "session ended"}))
        self._coalesce = ws.coalesce_ms / 1000
        self.max_pending = ws.max_pending
        self.stall_timeout = ws.stall_timeout
        self._channels: dict[str, Channel] = {}
        self._board: dict[int, Counts] = {}
        self._subject_names: dict[int, str] = {}
        self._peers_by_sid: dict[str, set[Peer]] = {}
        self._feed_holds: Counter[str] = Counter()
        """Per broker feed, the open channels and the subscribes under way that need it."""
        self._feeds: set[str] = set()
        """The feeds listened to at the broker."""
        self._syncing = asyncio.Lock()
        self._loading: dict[str, asyncio.Future[list[Counts]]] = {}
        self._generation = 0
        """Bumped by every broker gap: a store read begun before one may miss its votes."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._watching: dict[int, int] = {}
        """Sockets watching each subject, across every process, as last reported."""

    @property
    def peer_count(self) -> int:
        return sum(len(peers) for peers in self._peers_by_sid.values())

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    async def start(self) -> None:
        await self._events.listen(REVOKED, self._on_revoked)
        await self._events.listen(CATALOG, self._on_catalog)
        self._events.listen_resync(self._on_resync)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        for peers in list(self._peers_by_sid.values()):
            for peer in list(peers):
                peer.transport.close(code, reason)

    # -- membership ---------------------------------------------------------

    def add(self, peer: Peer) -> None:
        self._peers_by_sid.setdefault(peer.sid, set()).add(peer)

    def move(self, peer: Peer, sid: str) -> None:
        """The socket now belongs to session `sid`: revoking that one closes it."""
        self._forget_sid(peer)
        peer.sid = sid
        self.add(peer)

    def _forget_sid(self, peer: Peer) -> None:
        peers = self._peers_by_sid.get(peer.sid, set())
        peers.discard(peer)
        if not peers:
            self._peers_by_sid.pop(peer.sid, None)

    async def remove(self, peer: Peer) -> None:
        self._forget_sid(peer)
        for name in list(peer.channels):
            self._leave(peer, name)
        await self._sync_feeds()

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
            await self._sync_feeds()

    async def _open_channel(self, name: str, kind: str, number: int | None) -> Channel:
        """The first subscriber reads the store; those arriving meanwhile wait for that one read.
        A read that a broker gap overtook is done again. The feed is held meanwhile, so that it
        stays however the other channels come and go."""
        feed = await self._feed_of(kind, number)
        self._feed_holds[feed] += 1
        try:
            await self._sync_feeds()
            while True:
                generation = self._generation
                loading = self._loading.get(name) or self._load(name, kind, number)
                snapshot = await asyncio.shield(loading)
                if generation == self._generation:
                    break
            channel = self._channels.get(name)
            if channel is None:
                channel = self._channels[name] = Channel(name, feed)
                self._feed_holds[feed] += 1
            channel.teachers.update(counts.no for counts in snapshot)
            return channel
        finally:
            self._release(feed)

    async def _feed_of(self, kind: str, number: int | None) -> str:
        """Where a channel's changes come from; a teacher's feed is its subject's."""
        if kind == "dashboard":
            return ALL_VOTES
        assert number is not None
        return subject_votes(number if kind == "subject" else (await self._store.get_teacher(number)).subject)

    def _load(self, name: str, kind: str, number: int | None) -> asyncio.Future[list[Counts]]:
        loading = self._loading[name] = asyncio.ensure_future(self._snapshot(name, kind, number))

        def forget(done: asyncio.Future[list[Counts]]) -> None:
            if self._loading.get(name) is done:
                del self._loading[name]

        loading.add_done_callback(forget)
        return loading

    async def unsubscribe(self, peer: Peer, name: str) -> None:
        parse_channel(name)
        self._leave(peer, name)
        await self._sync_feeds()

    def _leave(self, peer: Peer, name: str) -> None:
        peer.channels.discard(name)
        channel = self._channels.get(name)
        if channel is not None:
            channel.peers.discard(peer)
            if not channel.peers:
                del self._channels[name]
                self._release(channel.feed)

    def _release(self, feed: str) -> None:
        self._feed_holds[feed] -= 1
        if self._feed_holds[feed] <= 0:
            del self._feed_holds[feed]

    async def _sync_feeds(self) -> None:
        """Listen to the feeds held, and to nothing else; ALL_VOTES alone when a dashboard holds
        it, since it carries every subject. A new feed is active before an old one is dropped, so
        a switch loses nothing; duplicates meanwhile are dropped by version. One sync at a time,
        each until nothing is left to do: when it returns, every feed held at the call is active."""
        async with self._syncing:
            while True:
                wanted = {ALL_VOTES} if ALL_VOTES in self._feed_holds else set(self._feed_holds)
                added, dropped = wanted - self._feeds, self._feeds - wanted
                if not added and not dropped:
                    return
                await asyncio.gather(*(self._events.listen(feed, self._on_votes) for feed in added))
                self._feeds |= added
                for feed in dropped:
                    self._feeds.discard(feed)
                    await self._events.unlisten(feed, self._on_votes)

    # -- state --------------------------------------------------------------

    async def _snapshot(self, name: str, kind: str, number: int | None) -> list[Counts]:
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
            self._subject_names = {totals.no: totals.name for totals in await self._store.subject_totals()}
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

    def _snapshot_frame(self, channel: Channel) -> bytes:
        latest = [self._board[no] for no in sorted(channel.teachers) if no in self._board]
        message: dict[str, Any] = {"type": "snapshot", "channel": channel.name}
        if channel.name == DASHBOARD:
            message.update(self._dashboard(latest))
        else:
            message["teachers"] = [counts_json(counts) for counts in latest]
        watching = self._watching_of(channel.name)
        if watching is not None:
            message["watching"] = channel.watching = watching
        return self._frame(orjson.dumps(message))

    # -- watching -------------------------------------------------------------

    def census(self) -> Census:
        """This process's part: open sockets, and the sockets of each subject channel."""
        watching = {
            number: len(channel.peers) for name, channel in self._channels.items()
            if (number := subject_of_channel(name)) is not None
        }
        return Census(self.peer_count, watching)

    def show_watching(self, watching: Mapping[int, int]) -> None:
        """Every process's watchers per subject: each channel that shows them hears of a change."""
        self._watching = dict(watching)
        for channel in list(self._channels.values()):
            value = self._watching_of(channel.name)
            if value is None or value == channel.watching:
                continue
            channel.watching = value
            frame = self._frame(orjson.dumps({"type": "watching", "channel": channel.name, "watching": value}))
            for peer in list(channel.peers):
                peer.send(frame, channel.name)

    def _watching_of(self, name: str) -> int | dict[str, int] | None:
        """A subject channel's watchers, the dashboard's per subject; None for a teacher channel."""
        if name == DASHBOARD:
            return {str(subject): count for subject, count in sorted(self._watching.items())}
        subject = subject_of_channel(name)
        return None if subject is None else self._watching.get(subject, 0)

    def _dashboard(self, latest: Iterable[Counts], only: set[int] | None = None) -> dict[str, Any]:
        """Totals per subject (all of them, or `only` those) and overall, summed from teacher counts."""
        totals = {no: [0, 0] for no in self._subject_names}
        for counts in latest:
            subject = totals.setdefault(counts.subject, [0, 0])
            subject[0] += counts.good_count
            subject[1] += counts.bad_count
        return {
            "subjects": [
                {"no": no, "name": self._subject_names.get(no, f"#{no}"), "good_count": good, "bad_count": bad}
                for no, (good, bad) in sorted(totals.items()) if only is None or no in only
            ],
            "votes_total": sum(good + bad for good, bad in totals.values()),
        }

    # -- fan-out ------------------------------------------------------------

    def _on_votes(self, _channel: str, data: bytes) -> None:
        self._metrics.feed_messages.inc()
        self._apply(Counts(**orjson.loads(data)))

    def _flush(self, channel: Channel) -> None:
        if not channel.pending:
            channel.cooling = False
            return
        changed, channel.pending = channel.pending, {}
        message: dict[str, Any] = {"type": "votes", "channel": channel.name}
        if channel.name == DASHBOARD:
            board = (self._board[no] for no in channel.teachers if no in self._board)
            message.update(self._dashboard(board, only={counts.subject for counts in changed.values()}))
        else:
            message["updates"] = [counts_json(counts) for counts in changed.values()]
        frame = self._frame(orjson.dumps(message))
        self._metrics.broadcasts.inc()
        for peer in list(channel.peers):
            peer.send(frame, channel.name)
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
                message = {"type": "catalog", "channel": channel.name, **event}
                frame = self._frame(orjson.dumps(message))
                for peer in list(channel.peers):
                    peer.send(frame)

    def _on_revoked(self, _channel: str, data: bytes) -> None:
        for sid in orjson.loads(data)["sids"]:
            for peer in list(self._peers_by_sid.get(sid, ())):
                self.revoke(peer)

    def revoke(self, peer: Peer) -> None:
        """Tell the socket its session ended, and close it 4003."""
        peer.send(self._revoked_frame)
        peer.transport.close(CLOSE_REVOKED, "session revoked")

    def _on_resync(self) -> None:
        self._generation += 1
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
                channel.teachers.update(counts.no for counts in await self._snapshot(name, kind, number))
            except Exception:
                log.exception("could not refresh channel %s after a broker gap", name)
                continue
            frame = self._snapshot_frame(channel)
            for peer in list(channel.peers):
                peer.send(frame)
