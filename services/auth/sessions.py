"""Sessions: login, refresh-token rotation with reuse detection, and revocation.

A session is one login on one device. Its refresh token rotates on every use;
a replaced token presented again within `auth.reuse_grace` (two tabs refreshing
at once) gets a new access token and no new refresh token; any other reuse
means the token leaked, and the whole session is revoked. A revocation is
published on the REVOKED channel so that every process closes the session's
sockets and forgets the session at once.

Access tokens are checked against the session store, through a small memory of
what each process last learnt: an active session is re-checked after
CHECK_AGAIN_AFTER (1 s, so a revocation whose event was lost still takes effect
within a second), a revoked one is known at once from the event. Revocations announced while
this process was cut off from the broker never arrive: after every gap, the
sessions it knows as active are read again, and those revoked or expired are
handed to its listeners as if announced, so the hub closes their sockets. (A
session that is gone is left alone: a Redis restarted without persistence has
lost them all, and that is no revocation.) While the
session store is unreachable, a session this process last saw active stays
usable: nothing can be revoked during the outage either, since logout and
refresh need the store too. A session never seen is refused then (503).

A token is only as good as its user: every new access token (a refresh, asked
for or pushed over a socket) carries the role the store has now, an
administrator's route checks the role the store has now, and a user no longer in
the store ends all of their sessions the first time one of them is used.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from typing_extensions import TypedDict

from services.auth.accounts import AccountService
from services.auth.throttle import LoginThrottle
from services.auth.tokens import (
    AccessClaims,
    IssuedToken,
    TokenService,
    ViewerClaims,
    hash_refresh_token,
    new_refresh_token,
)
from services.backends.sessions import Outcome, SessionRecord, SessionStore
from services.cancellation import cancel_and_wait
from services.config import AuthConfig
from services.errors import Forbidden, Invalid, NotFound, Unauthorized, Unavailable
from services.events import PUBLISH_RETRY_DELAYS, REVOKED, EventBus
from services.models import User
from services.single_flight import SingleFlight

log = logging.getLogger("livevote.sessions")

INVALID_REFRESH = "The refresh token is invalid, expired or revoked."
ACCOUNT_GONE = "The account no longer exists."
CHECK_AGAIN_AFTER = 1.0
KNOWN_SESSIONS = 65536
RECHECK_BATCH = 256
"""Sessions read at once after a gap: many processes resyncing together must not flood the store."""


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: IssuedToken
    refresh_token: str | None
    """None when a grace-period replay got only a new access token."""
    refresh_expires_in: int | None
    user: User
    sid: str

    def to_json(self) -> TokenPairJson:
        return {
            "access_token": self.access.token,
            "token_type": "Bearer",
            "expires_in": self.access.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
            "user": self.user,
        }


class TokenPairJson(TypedDict):
    """The tokens of a login or a refresh; a grace replay gets no new refresh token (null)."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_token: str | None
    refresh_expires_in: int | None
    user: User


class SessionService:
    def __init__(
        self,
        sessions: SessionStore,
        accounts: AccountService,
        tokens: TokenService,
        events: EventBus,
        auth: AuthConfig,
        throttle: LoginThrottle,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._throttle = throttle
        self._accounts = accounts
        self._tokens = tokens
        self._events = events
        self._auth = auth
        self._clock = clock
        self._known: dict[str, tuple[bool, float]] = {}
        """sid -> (active, when this process learnt it), oldest first."""
        self._reads: SingleFlight[str, SessionRecord | None] = SingleFlight()
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._events.listen(REVOKED, self._on_revoked)
        self._events.listen_resync(self._on_gap)

    async def close(self) -> None:
        await asyncio.gather(*(cancel_and_wait(task) for task in list(self._background)))

    def _on_gap(self) -> None:
        self._track(self._recheck_active())

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        """Background work, kept referenced until it ends."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _recheck_active(self) -> None:
        active = [sid for sid, (is_active, _) in self._known.items() if is_active]
        ended: list[str] = []
        for start in range(0, len(active), RECHECK_BATCH):
            batch = active[start:start + RECHECK_BATCH]
            try:
                sessions = await asyncio.gather(*(self._sessions.get(sid) for sid in batch))
            except Unavailable as exc:
                log.warning("could not re-check sessions after a broker gap: %s", exc.detail)
                break
            now = self._clock()
            ended += [
                sid for sid, session in zip(batch, sessions, strict=True)
                if session is not None and not session.active(now)
            ]
        if ended:
            log.info("%d session(s) ended during a broker gap; closing their sockets", len(ended))
            self._events.on_message(REVOKED, orjson.dumps({"sids": ended}))

    def _on_revoked(self, _channel: str, data: bytes) -> None:
        self._remember(orjson.loads(data)["sids"], active=False)

    def _remember(self, sids: list[str], active: bool) -> None:
        now = self._clock()
        for sid in sids:
            self._known.pop(sid, None)
            self._known[sid] = (active, now)
        while len(self._known) > KNOWN_SESSIONS:
            del self._known[next(iter(self._known))]

    async def begin(self, user: User) -> TokenPair:
        """A new session for a user who just proved who they are."""
        now = self._clock()
        refresh_token = new_refresh_token()
        session = await self._sessions.create(
            uuid.uuid4().hex, user.id, hash_refresh_token(refresh_token), now,
            now + min(self._auth.refresh_ttl, self._auth.session_max_age), now + self._auth.session_max_age,
        )
        return self._pair(user, session.sid, refresh_token, session.expires_at - now)

    async def refresh(self, refresh_token: str, user_id: int | None = None) -> TokenPair:
        """Rotate the token; with `user_id` (a socket's user), another user's token is refused
        before anything of its session changes."""
        if user_id is not None:
            owner = await self._sessions.find(hash_refresh_token(refresh_token))
            if owner is not None and owner.user_id != user_id:
                raise Invalid("That refresh token belongs to another user.")
        now = self._clock()
        new_token = new_refresh_token()
        rotation = await self._sessions.rotate(
            hash_refresh_token(refresh_token), hash_refresh_token(new_token), now,
            self._auth.refresh_ttl, self._auth.reuse_grace,
        )
        session = rotation.session
        if rotation.outcome is Outcome.REUSED and session is not None:
            log.warning("refresh token reuse: session %s of user %s revoked", session.sid, session.user_id)
            await self._announce_revoked([session.sid])
        if session is None or rotation.outcome in (Outcome.REUSED, Outcome.INVALID):
            raise Unauthorized(INVALID_REFRESH)
        user = await self._user(session.user_id, fresh=True)
        if rotation.outcome is Outcome.GRACE:
            return self._pair(user, session.sid, None, None)
        return self._pair(user, session.sid, new_token, session.expires_at - now)

    async def logout(self, refresh_token: str) -> None:
        """End the session this token belongs to; unknown tokens are ignored."""
        session = await self._sessions.find(hash_refresh_token(refresh_token))
        if session is not None and await self._sessions.revoke(session.sid):
            await self._announce_revoked([session.sid])

    async def logout_all(self, user_id: int) -> None:
        sids = await self._sessions.revoke_user(user_id)
        if sids:
            await self._announce_revoked(sids)

    async def authenticate(self, access_token: str) -> AccessClaims:
        """Claims of a valid access token whose session is still active."""
        return await self._of_active_session(self._tokens.verify(access_token))

    async def authenticate_admin(self, access_token: str) -> AccessClaims:
        """Claims of an administrator's token, by the role the user has now, not the token's."""
        claims = self._tokens.verify(access_token)
        if not (await self._active_user(claims, fresh=True)).is_admin:
            raise Forbidden("This needs an administrator.")
        return claims

    async def reader(self, access_token: str) -> User:
        """The user of a valid token whose session is active, with their role as of FRESH_FOR."""
        return await self._active_user(self._tokens.verify(access_token))

    async def admit(self, access_token: str) -> AccessClaims | ViewerClaims:
        """The live channel's handshake: a user's token of an active session, or a viewer token."""
        claims = self._tokens.verify_any(access_token)
        return claims if isinstance(claims, ViewerClaims) else await self._of_active_session(claims)

    async def ticket(self, access_token: str) -> IssuedToken:
        """A single-use ticket that opens the live channel's event stream as this token would."""
        return self._tokens.mint_ticket(await self.admit(access_token))

    async def spend_ticket(self, ticket: str) -> AccessClaims | ViewerClaims:
        """The claims a ticket stands for, once: spent, it opens nothing more."""
        issued = self._tokens.verify_ticket(ticket)
        if not await self._sessions.spend(hash_refresh_token(issued.jti), self._clock(), issued.expires_at):
            raise Unauthorized("This ticket was spent already.")
        claims = issued.claims
        return claims if isinstance(claims, ViewerClaims) else await self._of_active_session(claims)

    async def viewer(self, client_ip: str) -> IssuedToken:
        """A viewer token for an anonymous page, within the address's budget."""
        await self._throttle.viewer(client_ip)
        return self._tokens.mint_viewer()

    async def _of_active_session(self, claims: AccessClaims) -> AccessClaims:
        await self._active_user(claims)
        return claims

    async def _active_user(self, claims: AccessClaims, fresh: bool = False) -> User:
        """The user of a token whose session is active, as read within FRESH_FOR or `fresh`."""
        if not await self.is_active(claims.sid):
            raise Unauthorized("The session has ended.")
        return await self._user(claims.user_id, fresh)

    async def _user(self, user_id: int, fresh: bool) -> User:
        """A user no longer in the store ends every session of theirs (their sockets close too)."""
        try:
            return await (self._accounts.current(user_id) if fresh else self._accounts.get(user_id))
        except NotFound:
            log.warning("user %s is no longer in the store: their sessions end", user_id)
            await self.logout_all(user_id)
            raise Unauthorized(ACCOUNT_GONE) from None

    async def is_active(self, sid: str) -> bool:
        now = self._clock()
        known = self._known.get(sid)
        if known is not None and (not known[0] or now - known[1] < CHECK_AGAIN_AFTER):
            return known[0]
        try:
            session = await self._reads.run(sid, lambda: self._sessions.get(sid))
        except Unavailable:
            if known is not None and known[0]:
                return True
            raise
        if sid in self._known and not self._known[sid][0]:
            return False  # revoked while the read was under way: a session never comes back
        active = session is not None and session.active(now)
        self._remember([sid], active)
        return active

    async def reissue(self, claims: AccessClaims | ViewerClaims) -> IssuedToken:
        """A fresh access token for a session that is still active, or a viewer's next one
        (pushed over the socket)."""
        if isinstance(claims, ViewerClaims):
            return self._tokens.mint_viewer()
        user = await self._active_user(claims, fresh=True)
        return self._tokens.mint(user.id, user.role, claims.sid)

    def _pair(self, user: User, sid: str, refresh_token: str | None, refresh_left: float | None) -> TokenPair:
        access = self._tokens.mint(user.id, user.role, sid)
        refresh_expires_in = None if refresh_left is None else int(refresh_left)
        return TokenPair(access, refresh_token, refresh_expires_in, user, sid)

    async def _announce_revoked(self, sids: list[str]) -> None:
        """This process's own listeners (its memory, its hub's sockets) learn at once, whatever
        the broker does; the others through the broker, tried again in the background until
        it takes the news. (A process that misses it in a gap finds out by _recheck_active.)"""
        data = orjson.dumps({"sids": sids})
        self._events.on_message(REVOKED, data)
        try:
            await self._events.publish(REVOKED, data)
        except Exception as exc:
            log.warning("could not announce the revocation of %d session(s) (%s); retrying", len(sids), exc)
            self._track(self._announce_until_taken(data))

    async def _announce_until_taken(self, data: bytes) -> None:
        for attempt in itertools.count():
            await asyncio.sleep(PUBLISH_RETRY_DELAYS[min(attempt, len(PUBLISH_RETRY_DELAYS) - 1)])
            try:
                await self._events.publish(REVOKED, data)
            except Exception as exc:
                log.debug("announcing a revocation failed again: %s", exc)
            else:
                log.info("announced a revocation after %d retries", attempt + 1)
                return
