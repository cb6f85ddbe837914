"""Attacks on access tokens: each one is a 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from hypothesis import given
from hypothesis import strategies as st

from services.auth.tokens import TokenService, VerifiedTokens, ViewerClaims
from services.errors import Unauthorized
from tests.conftest import ServerFactory
from tests.harness.environment import TEST_SECRET
from tests.harness.server import UserClient, assert_problem, make_config, sign_up

Forge = Callable[[dict[str, Any]], str]


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def sign(claims: dict[str, Any], key: str = TEST_SECRET, typ: str | None = "at+jwt") -> str:
    headers = {"typ": typ} if typ else {}
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any]) -> str:
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'at+jwt'}).encode())}.{b64(json.dumps(claims).encode())}."


def hs256_by_hand(claims: dict[str, Any], key: bytes) -> str:
    """The algorithm-confusion forgery PyJWT itself refuses to make: HMAC keyed with a public key."""
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'at+jwt'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


ATTACKS: dict[str, Callable[[dict[str, Any], UserClient], str]] = {
    "alg none": lambda c, u: unsigned(c),
    "another secret": lambda c, u: sign(c, "another-secret-that-is-long-enough-too"),
    "expired": lambda c, u: sign({**c, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}),
    "wrong audience": lambda c, u: sign({**c, "aud": "someone-else"}),
    "wrong issuer": lambda c, u: sign({**c, "iss": "someone-else"}),
    "missing sid": lambda c, u: sign({k: v for k, v in c.items() if k != "sid"}),
    "missing exp": lambda c, u: sign({k: v for k, v in c.items() if k != "exp"}),
    "not an access token type": lambda c, u: sign(c, typ=None),
    "refresh token as bearer": lambda c, u: u.refresh_token,
    "tampered payload": lambda c, u: tampered(u.access_token),
    "garbage": lambda c, u: "not.a.jwt",
    "unknown session": lambda c, u: sign({**c, "sid": "0" * 32}),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attack_is_401(user: UserClient, attack: str) -> None:
    """After the genuine token has verified (the server now remembers it), so that a forgery
    close to a remembered token cannot pass for it."""
    assert (await user.get("/api/auth/me")).status == 200
    token = ATTACKS[attack](claims_of(user.access_token), user)
    response = await user.server.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_genuine_token_and_a_correct_re_signing_work(user: UserClient) -> None:
    """The control: the forging above is right except for what each attack changes."""
    assert (await user.get("/api/auth/me")).status == 200
    resigned = sign(claims_of(user.access_token))
    assert (await user.server.get("/api/auth/me", headers={"Authorization": f"Bearer {resigned}"})).status == 200


async def test_access_token_carries_the_designed_claims(user: UserClient) -> None:
    header = jwt.get_unverified_header(user.access_token)
    claims = claims_of(user.access_token)
    assert header == {"alg": "HS256", "typ": "at+jwt"}
    assert set(claims) == {"iss", "aud", "sub", "sid", "role", "jti", "iat", "exp"}
    assert claims["sub"] == str(user.pair["user"]["id"]) and claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == 900


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "bearer"])
async def test_malformed_authorization_headers_are_401(user: UserClient, header: str) -> None:
    assert_problem(await user.server.get("/api/auth/me", headers={"Authorization": header}), 401)


def write_key_pair(tmp_path: Path, algorithm: str) -> tuple[Path, Path]:
    key = ed25519.Ed25519PrivateKey.generate() if algorithm == "EdDSA" else rsa.generate_private_key(65537, 2048)
    private, public = tmp_path / "private.pem", tmp_path / "public.pem"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
async def test_key_file_algorithms(start_server: ServerFactory, tmp_path: Path, algorithm: str) -> None:
    private, public = write_key_pair(tmp_path, algorithm)
    server = await start_server(auth__algorithm=algorithm, auth__private_key_file=private, auth__public_key_file=public)
    alice = await sign_up(server, "alice")
    assert jwt.get_unverified_header(alice.access_token)["alg"] == algorithm
    assert (await alice.get("/api/auth/me")).status == 200
    hmac_forgery = hs256_by_hand(claims_of(alice.access_token), public.read_bytes())
    assert_problem(await server.get("/api/auth/me", headers={"Authorization": f"Bearer {hmac_forgery}"}), 401)


def test_a_remembered_token_is_forgotten_when_it_expires() -> None:
    now = [1000.0]
    verified = VerifiedTokens(leeway=5, size=3, clock=lambda: now[0])
    claims = ViewerClaims(expires_at=1010.0, jti="a")
    verified.add("token", claims)
    now[0] = 1015.0
    assert verified.get("token") is claims, "still valid within the leeway, as PyJWT would say"
    now[0] = 1015.5
    assert verified.get("token") is None
    assert verified.get("token") is None, "and stays forgotten"


def test_remembered_tokens_are_bounded_oldest_first() -> None:
    verified = VerifiedTokens(leeway=0, size=3, clock=lambda: 0.0)
    for name in "abcd":
        verified.add(name, ViewerClaims(expires_at=60.0, jti="a"))
    assert [verified.get(name) is not None for name in "abcd"] == [False, True, True, True]


TOKENS_CONFIG = make_config(Path("unused"))
TOKENS = TokenService(TOKENS_CONFIG.auth)
REMEMBERED = TOKENS.mint(7, "user", "s" * 32)


@given(position=st.integers(min_value=0), replacement=st.characters())
def test_a_token_near_a_remembered_one_is_verified_afresh(position: int, replacement: str) -> None:
    """Any one character of a remembered token changed: refused, or (base64's spare bits at a
    segment's end) the very same claims; never what the cache holds for another string."""
    original = TOKENS.verify(REMEMBERED.token)
    position %= len(REMEMBERED.token)
    changed = REMEMBERED.token[:position] + replacement + REMEMBERED.token[position + 1:]
    try:
        claims = TOKENS.verify(changed)
    except Unauthorized:
        return
    assert claims == original, changed
    assert TokenService(TOKENS_CONFIG.auth).verify(changed) == claims, "a server remembering nothing agrees"
