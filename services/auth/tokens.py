"""Access tokens: short-lived JWTs (PyJWT), and the opaque refresh tokens' format.

Verification pins the configured algorithm, requires every claim livevote
relies on, checks iss, aud and the `at+jwt` type, and allows a small leeway.
Anything wrong is the same Unauthorized: a client learns nothing from the
difference between a bad signature and an expired token.

A viewer token (role "viewer") belongs to no user and no session: it lets an
anonymous page watch the live channel, and nothing else. `verify` refuses it,
so no REST route can take it for a user's; only `verify_any` (the socket's
handshake and its token pushes) accepts both kinds.

A ticket (`livevote-ticket+jwt`) stands for an access or viewer token for a
few seconds, once: a browser's EventSource cannot send headers, so the event
stream takes one in its URL, where a long-lived token would end up in logs. It
carries the claims of the token that asked for it, that token's expiry
included (the stream lives on it), and spending it is the session store's.

Decoding a JWT costs more than the rest of a vote's request, and a client sends
the same token until it is renewed, so tokens that verified are remembered,
keyed by the whole token, until they expire (VerifiedTokens). Only the exact
string that verified matches; revocation is the session check's concern, not
the token's, so remembering changes nothing a client can observe.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import jwt

from services.config import AuthConfig
from services.errors import Unauthorized

ACCESS_TOKEN_TYPE = "at+jwt"
TICKET_TYPE = "livevote-ticket+jwt"
TICKET_TTL = 30
"""Seconds a ticket may wait to be spent: a page spends its own at once."""
VIEWER: Final = "viewer"
COMMON_CLAIMS = ["iss", "aud", "role", "jti", "iat", "exp"]
USER_CLAIMS = ["sub", "sid"]
REMEMBERED_TOKENS = 16384
"""At most this many verified tokens are remembered (a few MiB); past it the oldest go first."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    sid: str
    role: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ViewerClaims:
    expires_at: float
    jti: str
    """The token's own id: a viewer has no other (no user, no session)."""
    role: str = VIEWER


@dataclass(frozen=True, slots=True)
class Ticket:
    claims: AccessClaims | ViewerClaims
    """Those of the token it stands for."""
    jti: str
    expires_at: float
    """When the ticket itself can no longer be spent (leeway included)."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: float
    expires_in: int


def new_refresh_token() -> str:
    """256 random bits, base64url."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """What the session stores keep instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


Claims = AccessClaims | ViewerClaims


class VerifiedTokens:
    """Tokens that passed verification, with their claims, until they expire (leeway included)."""

    def __init__(self, leeway: float, size: int = REMEMBERED_TOKENS, clock: Callable[[], float] = time.time) -> None:
        self._leeway = leeway
        self._size = size
        self._clock = clock
        self._claims: dict[str, Claims] = {}

    def get(self, token: str) -> Claims | None:
        claims = self._claims.get(token)
        if claims is not None and claims.expires_at + self._leeway < self._clock():
            del self._claims[token]
            return None
        return claims

    def add(self, token: str, claims: Claims) -> None:
        if len(self._claims) >= self._size:
            del self._claims[next(iter(self._claims))]
        self._claims[token] = claims


class TokenService:
    def __init__(self, auth: AuthConfig) -> None:
        self._auth = auth
        self._verified = VerifiedTokens(auth.leeway)
        self._algorithm = auth.algorithm
        if auth.algorithm.startswith("HS"):
            self._signing_key: Any = auth.secret
            self._verifying_key: Any = auth.secret
        else:
            assert auth.private_key_file is not None and auth.public_key_file is not None
            self._signing_key = auth.private_key_file.read_bytes()
            self._verifying_key = auth.public_key_file.read_bytes()

    def mint(self, user_id: int, role: str, sid: str, now: float | None = None) -> IssuedToken:
        return self._issue({"sub": str(user_id), "sid": sid, "role": role}, self._auth.access_ttl, now)

    def mint_viewer(self, now: float | None = None) -> IssuedToken:
        return self._issue({"role": VIEWER}, self._auth.viewer_ttl, now)

    def mint_ticket(self, claims: Claims, now: float | None = None) -> IssuedToken:
        """A ticket for the token whose `claims` these are."""
        subject: dict[str, Any] = {"role": claims.role, "tex": claims.expires_at}
        if isinstance(claims, AccessClaims):
            subject.update(sub=str(claims.user_id), sid=claims.sid)
        else:
            subject["vti"] = claims.jti
        return self._issue(subject, TICKET_TTL, now, TICKET_TYPE)

    def _issue(
        self, subject: dict[str, Any], ttl: float, now: float | None, kind: str = ACCESS_TOKEN_TYPE
    ) -> IssuedToken:
        issued_at = int(time.time() if now is None else now)
        expires_at = issued_at + int(ttl)
        claims = {
            "iss": self._auth.issuer, "aud": self._auth.audience, **subject,
            "jti": uuid.uuid4().hex, "iat": issued_at, "exp": expires_at,
        }
        token = jwt.encode(claims, self._signing_key, algorithm=self._algorithm, headers={"typ": kind})
        return IssuedToken(token, float(expires_at), int(ttl))

    def verify(self, token: str) -> AccessClaims:
        """A user's token; a viewer token is refused like any invalid one, with its own words."""
        claims = self.verify_any(token)
        if isinstance(claims, ViewerClaims):
            raise Unauthorized("A viewer token only opens the live channel; log in for this.")
        return claims

    def verify_any(self, token: str) -> Claims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            self._verified.add(token, claims)
        return claims

    def verify_ticket(self, ticket: str) -> Ticket:
        """A ticket's claims, while it may be spent (that it was not spent yet is not checked here)."""
        try:
            claims = self._decoded(ticket, TICKET_TYPE, ["tex"])
            token_id, expires_at = claims.get("vti"), float(claims["tex"])
            spendable_until = float(claims["exp"]) + self._auth.leeway
            return Ticket(self._claims(claims, expires_at, token_id), str(claims["jti"]), spendable_until)
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise Unauthorized("The ticket is invalid or expired.") from None

    def _decode(self, token: str) -> Claims:
        try:
            claims = self._decoded(token, ACCESS_TOKEN_TYPE)
            return self._claims(claims, float(claims["exp"]), claims["jti"])
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise Unauthorized("The access token is invalid or expired.") from None

    def _decoded(self, token: str, kind: str, required: list[str] | None = None) -> dict[str, Any]:
        """The claims of a JWT of this `kind`, signed with the pinned algorithm, for this audience.
        One decoding gives the header and the claims: a token is decoded once, not twice (PyJWT
        checks every character of it in Python, a good part of a handshake's cost)."""
        decoded = jwt.decode_complete(
            token,
            self._verifying_key,
            algorithms=[self._algorithm],
            audience=self._auth.audience,
            issuer=self._auth.issuer,
            leeway=self._auth.leeway,
            options={"require": COMMON_CLAIMS + (required or [])},
        )
        if decoded["header"].get("typ") != kind:
            raise jwt.InvalidTokenError(f"not a {kind}")
        claims: dict[str, Any] = decoded["payload"]
        return claims

    @staticmethod
    def _claims(claims: dict[str, Any], expires_at: float, viewer_id: object) -> Claims:
        if claims["role"] == VIEWER:
            if not isinstance(viewer_id, str):
                raise ValueError("a viewer's claims name their token")
            return ViewerClaims(expires_at, viewer_id)
        if any(name not in claims for name in USER_CLAIMS):
            raise ValueError("a user's claims name their session")
        return AccessClaims(int(claims["sub"]), str(claims["sid"]), str(claims["role"]), expires_at)
