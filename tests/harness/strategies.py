"""What the property suites share: their Hypothesis budget, and tokens shaped like JWTs."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
from hypothesis import Phase, settings
from hypothesis import strategies as st

from tests.harness.environment import TEST_SECRET


def examples(factor: float, **options: Any) -> settings:
    """A test's budget: a multiple of the loaded profile's max_examples (ci 40, long 1000), at
    least one. No explain phase: against a live server it costs seconds and adds nothing the
    shrunk input does not already show. `options`: more settings."""
    return settings(max_examples=max(1, int(settings().max_examples * factor)),
                    phases=[phase for phase in Phase if phase is not Phase.explain], **options)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def jwt_like(draw: st.DrawFn, values: st.SearchStrategy[Any], kind: str = "at+jwt") -> str:
    """header.payload.signature shapes, `values` being the suite's JSON values: tokens signed with
    the test servers' real key whose claims are random (what a leaked key or a server bug could
    put there); and unsigned ones, a header that may claim our type and algorithm or be any JSON
    value, any payload, a signature of random bytes or none. `kind`: the signed ones' type (a live
    ticket's has claims of its own, tex and vti, drawn too)."""
    if draw(st.booleans()):
        names = ["sub", "sid", "role", "exp", "iat", "iss", "aud", "jti", "tex", "vti"]
        claims = draw(st.dictionaries(st.sampled_from(names), values, max_size=10))
        try:
            return jwt.encode(claims, TEST_SECRET, algorithm="HS256", headers={"typ": kind})
        except (TypeError, ValueError, OverflowError, jwt.PyJWTError):
            return "x.y.z"
    header = draw(st.dictionaries(st.sampled_from(["typ", "alg", "kid", "crit", "b64", "x"]),
                                  st.one_of(st.sampled_from(["at+jwt", "HS256", "none", "RS256", "EdDSA"]), values),
                                  max_size=4) | values)
    payload = draw(values)
    return ".".join([
        b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()),
        draw(st.sampled_from(["", "x", "AAAA"])) or b64url(draw(st.binary(max_size=40))),
    ])
