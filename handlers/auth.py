"""Accounts and sessions over REST, and an administrator's role changes.

Browsers get the refresh token also as an HttpOnly cookie scoped to /api/auth;
refresh and logout take it from the body or that cookie. A call that relies on
the cookie must come from an allowed Origin, so another site cannot make a
visitor's browser use it.
"""

from __future__ import annotations

from typing import Any, Literal

from typing_extensions import TypedDict

from handlers.base import ApiHandler, record_no
from handlers.openapi import BODY, Operation
from services.auth.sessions import TokenPair, TokenPairJson
from services.auth.tokens import VIEWER
from services.errors import Forbidden, Unauthorized
from services.models import User
from services.schemas import Login, RefreshRequest, Registration, RoleChange, parse

REFRESH_COOKIE = "livevote_refresh"
COOKIE_PATH = "/api/auth"
SET_COOKIE = f"{REFRESH_COOKIE}=<refresh token>; HttpOnly; SameSite=Strict; Path={COOKIE_PATH} (and Secure over https)"
NO_REFRESH_TOKEN = f"No refresh token: neither refresh_token in the body nor the {REFRESH_COOKIE} cookie"
COOKIE_ORIGIN_403 = (
    f"The {REFRESH_COOKIE} cookie was used without an allowed Origin (this host or server.allowed_origins)"
)


class MeJson(TypedDict):
    """Your account and the id of this token's session."""

    user: User
    session: str


class SessionCookieJson(TypedDict):
    cookie: bool


class ViewerTokenJson(TypedDict):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    role: Literal["viewer"]


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
    @Operation("register", "accounts", "Create an account", ok="The new account (log in next)", status=201,
               returns=User, request=Registration, errors=(*BODY, 409, 429, 503), notes={
                   409: "The username is taken (compared after NFKC and case folding)",
                   422: "Validation failed (username rule; password too short, easy to guess or containing"
                        " the username); `errors` names the fields",
                   429: "Too many registrations from this address; see Retry-After",
               })
    async def post(self) -> None:
        user = await self.services.accounts.register(self.json_body(), client_ip=self.client_ip)
        self.write_json(user.to_json(), 201)


class LoginHandler(AuthHandler):
    @Operation("login", "accounts", "Log in: a new session",
               ok="An access token and a refresh token, the refresh token also as an HttpOnly cookie",
               returns=TokenPairJson, headers={"Set-Cookie": SET_COOKIE}, request=Login,
               errors=(*BODY, 401, 429, 503), notes={
                   401: "Unknown username or wrong password",
                   429: "Too many failed logins for this account or from this address; see Retry-After",
               })
    async def post(self) -> None:
        user = await self.services.accounts.login(self.json_body(), self.client_ip)
        self.send_pair(await self.services.sessions.begin(user))


class RefreshHandler(AuthHandler):
    @Operation("refreshTokens", "accounts", "Rotate the refresh token (body or cookie)",
               ok="A new access token and a new refresh token, also as the cookie; a replay of a just-rotated"
                  " refresh token within auth.reuse_grace gets a new access token only (refresh_token null)",
               returns=TokenPairJson, headers={"Set-Cookie": f"{SET_COOKIE}; not set on a grace replay"},
               request=RefreshRequest, request_required=False, errors=(*BODY, 401, 403, 503), notes={
                   401: f"{NO_REFRESH_TOKEN}; or the refresh token is invalid, expired or revoked, or was already"
                        " used (a reuse past auth.reuse_grace also ends its session)",
                   403: COOKIE_ORIGIN_403,
               })
    async def post(self) -> None:
        """A cookie whose session has ended is cleared, so that the page stops asking with it."""
        try:
            self.send_pair(await self.services.sessions.refresh(self.refresh_token()))
        except Unauthorized:
            self.forget_cookie()
            raise


class LogoutHandler(AuthHandler):
    @Operation("logout", "accounts", "End the session of a refresh token (body or cookie)", status=204,
               ok="The session is ended (an unknown or expired refresh token is ignored) and the cookie cleared",
               headers={"Set-Cookie": f"Clears {REFRESH_COOKIE}"}, request=RefreshRequest, request_required=False,
               errors=(*BODY, 401, 403, 503), notes={401: NO_REFRESH_TOKEN, 403: COOKIE_ORIGIN_403})
    async def post(self) -> None:
        await self.services.sessions.logout(self.refresh_token())
        self.forget_cookie()
        self.no_content()


class ViewerHandler(AuthHandler):
    """No body, no cookie, no account: what an anonymous page needs to watch."""

    @Operation("createViewerToken", "live", "A viewer token: watch the live channel without an account",
               ok="A short-lived access token with role viewer, no user and no session: the live channel takes it"
                  " to subscribe (subjects, teachers, the dashboard) and renews it over the socket; every other"
                  " route and op refuses it",
               returns=ViewerTokenJson, errors=(429, 503),
               notes={429: "Too many viewer tokens for this address; see Retry-After"})
    async def post(self) -> None:
        issued = await self.services.sessions.viewer(self.client_ip)
        token: ViewerTokenJson = {
            "access_token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in, "role": VIEWER,
        }
        self.write_json(token)


class LogoutAllHandler(AuthHandler):
    @Operation("logoutAll", "accounts", "End all your sessions, on every device", status=204,
               ok="Every session of yours is ended and the cookie cleared", secured=True, errors=(401, 503))
    async def post(self) -> None:
        claims = await self.authenticate()
        await self.services.sessions.logout_all(claims.user_id)
        self.forget_cookie()
        self.no_content()


class SessionCookieHandler(AuthHandler):
    """Whether this browser holds the session cookie, for a public page deciding whether to
    refresh: always 200, so that an anonymous visit makes no failing request. Presence only:
    POST /api/auth/refresh tells whether the session still works."""

    @Operation("sessionCookie", "accounts", "Whether this browser holds the session cookie",
               ok=f"`cookie` is true when the request carries the {REFRESH_COOKIE} cookie (presence only:"
                  " POST /api/auth/refresh tells whether its session still works); always 200, so that a"
                  " page can ask without a failing request",
               returns=SessionCookieJson, errors=(503,))
    async def get(self) -> None:
        held: SessionCookieJson = {"cookie": bool(self.get_cookie(REFRESH_COOKIE))}
        self.write_json(held)


class MeHandler(AuthHandler):
    @Operation("getMe", "accounts", "Who you are", ok="Your account and the id of this token's session",
               returns=MeJson, secured=True, errors=(401, 503))
    async def get(self) -> None:
        claims = await self.authenticate()
        me: MeJson = {"user": await self.services.accounts.get(claims.user_id), "session": claims.sid}
        self.write_json(me)


class UserHandler(ApiHandler):
    """Roles are the operator's or an administrator's to give (python server.py set-role does the same)."""

    @Operation("setUserRole", "accounts", "Change an account's role (administrators)",
               ok="The account with its new role: admin routes go by it at once, and the user's next access"
                  " token (refreshed or pushed) carries it",
               returns=User, request=RoleChange, secured=True, errors=(401, 403, 404, *BODY, 503),
               notes={404: "No such user", 422: "`role` is neither user nor admin"})
    async def patch(self, id: str) -> None:
        actor = await self.acting_admin()
        user = await self.services.accounts.set_role(record_no(id, "user"), self.json_body(), actor)
        self.write_json(user.to_json())
