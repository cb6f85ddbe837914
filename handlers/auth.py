"""Accounts and sessions over REST.

Browsers get the refresh token also as an HttpOnly cookie scoped to /api/auth;
refresh and logout take it from the body or that cookie. A call that relies on
the cookie must come from an allowed Origin, so another site cannot make a
visitor's browser use it.
"""

from __future__ import annotations

from typing import Any

from handlers.base import ApiHandler
from services.auth.sessions import TokenPair
from services.auth.tokens import VIEWER
from services.errors import Forbidden, Unauthorized
from services.schemas import RefreshRequest, parse

REFRESH_COOKIE = "livevote_refresh"
COOKIE_PATH = "/api/auth"


class AuthHandler(ApiHandler):
    def optional_json_body(self) -> Any:
        """An empty body is no body: a browser sends none when the token is in the cookie."""
        return self.json_body() if self._body or self._body_too_large else {}

    def refresh_token(self) -> str:
        """From the body, else from the cookie (which needs an allowed Origin)."""
        token = parse(RefreshRequest, self.optional_json_body()).refresh_token
        if token:
            return token
        cookie = self.get_cookie(REFRESH_COOKIE)
        if not cookie:
            raise Unauthorized("No refresh token: send refresh_token in the body, or the session cookie.")
        if not self.origin_allowed():
            raise Forbidden("The session cookie is only accepted from this site's own pages.")
        return cookie

    def send_pair(self, pair: TokenPair) -> None:
        if pair.refresh_token is not None:
            self.set_cookie(
                REFRESH_COOKIE, pair.refresh_token, path=COOKIE_PATH, httponly=True, samesite="Strict",
                secure=self.request.protocol == "https", max_age=pair.refresh_expires_in,
            )
        self.write_json(pair.to_json())

    def forget_cookie(self) -> None:
        self.clear_cookie(REFRESH_COOKIE, path=COOKIE_PATH)

    @property
    def client_ip(self) -> str:
        """Whom login and registration budgets count: the peer, or behind a proxy
        (server.xheaders) the client it names."""
        return self.request.remote_ip or ""


class RegisterHandler(AuthHandler):
    async def post(self) -> None:
        user = await self.services.accounts.register(self.json_body(), client_ip=self.client_ip)
        self.write_json(user.to_json(), 201)


class LoginHandler(AuthHandler):
    async def post(self) -> None:
        user = await self.services.accounts.login(self.json_body(), self.client_ip)
        self.send_pair(await self.services.sessions.begin(user))


class RefreshHandler(AuthHandler):
    async def post(self) -> None:
        """A cookie whose session has ended is cleared, so that the page stops asking with it."""
        try:
            self.send_pair(await self.services.sessions.refresh(self.refresh_token()))
        except Unauthorized:
            self.forget_cookie()
            raise


class LogoutHandler(AuthHandler):
    async def post(self) -> None:
        await self.services.sessions.logout(self.refresh_token())
        self.forget_cookie()
        self.no_content()


class ViewerHandler(AuthHandler):
    """No body, no cookie, no account: what an anonymous page needs to watch."""

    async def post(self) -> None:
        issued = await self.services.sessions.viewer(self.client_ip)
        self.write_json({
            "access_token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in, "role": VIEWER,
        })


class LogoutAllHandler(AuthHandler):
    async def post(self) -> None:
        claims = await self.authenticate()
        await self.services.sessions.logout_all(claims.user_id)
        self.forget_cookie()
        self.no_content()


class SessionCookieHandler(AuthHandler):
    """Whether this browser holds the session cookie, for a public page deciding whether to
    refresh: always 200, so that an anonymous visit makes no failing request. Presence only:
    POST /api/auth/refresh tells whether the session still works."""

    async def get(self) -> None:
        self.write_json({"cookie": bool(self.get_cookie(REFRESH_COOKIE))})


class MeHandler(AuthHandler):
    async def get(self) -> None:
        claims = await self.authenticate()
        user = await self.services.accounts.get(claims.user_id)
        self.write_json({"user": user.to_json(), "session": claims.sid})
