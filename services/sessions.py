"""Sessions: login, refresh-token rotation with reuse detection, and revocation.

A session is one login on one device. Its refresh token rotates on every use;
a replaced token presented again within `auth.reuse_grace` (two tabs refreshing
at once) gets a new access token and no new refresh token; any other reuse
means the token leaked, and the whole session is revoked. A revocation is
published on the REVOKED channel so that every process closes the session's
sockets; access tokens are checked against the session store on every use, so
a revoked session's tokens stop working at once although they have not expired.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from services.backends.sessions import Outcome, SessionStore
from services.backends.store import Store
from services.config import AuthConfig
from services.errors import Unauthorized
from services.events import REVOKED, EventBus
from services.models import User
from services.tokens import AccessClaims, IssuedToken, TokenService, hash_refresh_token, new_refresh_token

log = logging.getLogger("livevote.sessions")

INVALID_REFRESH = "The refresh token is invalid, expired or revoked."


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: IssuedToken
    refresh_token: str | None
    """None when a grace-period replay got only a new access token."""
    refresh_expires_in: int | None
    user: User
    sid: str

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access.token,
            "token_type": "Bearer",
            "expires_in": self.access.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
            "user": self.user.to_json(),
        }


class SessionService:
    def __init__(
        self,
        sessions: SessionStore,
        store: Store,
        tokens: TokenService,
        events: EventBus,
        auth: AuthConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._tokens = tokens
        self._events = events
        self._auth = auth
        self._clock = clock

    async def start(self, user: User) -> TokenPair:
        """A new session for a user who just proved who they are."""
        now = self._clock()
        refresh_token = new_refresh_token()
        session = await self._sessions.create(
            uuid.uuid4().hex, user.id, hash_refresh_token(refresh_token), now,
            now + min(self._auth.refresh_ttl, self._auth.session_max_age), now + self._auth.session_max_age,
        )
        return self._pair(user, session.sid, refresh_token, session.expires_at - now)

    async def refresh(self, refresh_token: str) -> TokenPair:
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
        user = await self._store.get_user(session.user_id)
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
        claims = self._tokens.verify(access_token)
        if not await self.is_active(claims.sid):
            raise Unauthorized("The session has ended.")
        return claims

    async def is_active(self, sid: str) -> bool:
        session = await self._sessions.get(sid)
        return session is not None and session.active(self._clock())

    async def reissue(self, claims: AccessClaims) -> IssuedToken:
        """A fresh access token for a session that is still active (pushed over the socket)."""
        if not await self.is_active(claims.sid):
            raise Unauthorized("The session has ended.")
        user = await self._store.get_user(claims.user_id)
        return self._tokens.mint(user.id, user.role, claims.sid)

    def _pair(self, user: User, sid: str, refresh_token: str | None, refresh_left: float | None) -> TokenPair:
        access = self._tokens.mint(user.id, user.role, sid)
        refresh_expires_in = None if refresh_left is None else int(refresh_left)
        return TokenPair(access, refresh_token, refresh_expires_in, user, sid)

    async def _announce_revoked(self, sids: list[str]) -> None:
        try:
            await self._events.publish(REVOKED, orjson.dumps({"sids": sids}))
        except Exception:
            log.exception("could not announce the revocation of %d session(s)", len(sids))
