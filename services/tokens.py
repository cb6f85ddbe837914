"""Access tokens: short-lived JWTs (PyJWT), and the opaque refresh tokens' format.

Verification pins the configured algorithm, requires every claim livevote
relies on, checks iss, aud and the `at+jwt` type, and allows a small leeway.
Anything wrong is the same Unauthorized: a client learns nothing from the
difference between a bad signature and an expired token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from services.config import AuthConfig
from services.errors import Unauthorized

ACCESS_TOKEN_TYPE = "at+jwt"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "role", "jti", "iat", "exp"]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    sid: str
    role: str
    expires_at: float


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


class TokenService:
    def __init__(self, auth: AuthConfig) -> None:
        self._auth = auth
        self._algorithm = auth.algorithm
        if auth.algorithm.startswith("HS"):
            self._signing_key: Any = auth.secret
            self._verifying_key: Any = auth.secret
        else:
            assert auth.private_key_file is not None and auth.public_key_file is not None
            self._signing_key = auth.private_key_file.read_bytes()
            self._verifying_key = auth.public_key_file.read_bytes()

    def mint(self, user_id: int, role: str, sid: str, now: float | None = None) -> IssuedToken:
        issued_at = int(time.time() if now is None else now)
        expires_at = issued_at + int(self._auth.access_ttl)
        claims = {
            "iss": self._auth.issuer,
            "aud": self._auth.audience,
            "sub": str(user_id),
            "sid": sid,
            "role": role,
            "jti": uuid.uuid4().hex,
            "iat": issued_at,
            "exp": expires_at,
        }
        token = jwt.encode(claims, self._signing_key, algorithm=self._algorithm, headers={"typ": ACCESS_TOKEN_TYPE})
        return IssuedToken(token, float(expires_at), int(self._auth.access_ttl))

    def verify(self, token: str) -> AccessClaims:
        try:
            if jwt.get_unverified_header(token).get("typ") != ACCESS_TOKEN_TYPE:
                raise Unauthorized("This is not an access token.")
            claims = jwt.decode(
                token,
                self._verifying_key,
                algorithms=[self._algorithm],
                audience=self._auth.audience,
                issuer=self._auth.issuer,
                leeway=self._auth.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
            return AccessClaims(int(claims["sub"]), str(claims["sid"]), str(claims["role"]), float(claims["exp"]))
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise Unauthorized("The access token is invalid or expired.") from None
