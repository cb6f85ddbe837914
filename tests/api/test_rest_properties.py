"""Property-based suite for the REST API: generated input against the real server.

Every operation's path ids, query parameters and body fields get generated values:
text from every Unicode category (astral characters included, surrogates not, as
they cannot be sent), digits of every script, numbers huge, negative and
fractional, nulls, nested arrays and objects, repeated keys, wrong types, missing
and extra fields, bytes that are no JSON at all. Writes carry an admin's token
(now and then a plain user's, or none) so that they reach validation.

The properties: never a 5xx; every 4xx is application/problem+json with type,
title, status and detail; and whatever was accepted leaves every GET that shows
it answering 200 with a body that matches /api/openapi.json.

How it runs: pytest-asyncio runs each `@given` async test's examples on the test's
own event loop, against the `api` server of that test (one server per test, its
state carried from example to example, so later examples meet earlier writes).
Budget: each test a multiple of the loaded profile's max_examples: 26 x max_examples
generated requests in all, 1,040 with `ci` (about 10 s), 26,000 with `long`.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import cache
from typing import Any
from urllib.parse import quote, quote_from_bytes

from hypothesis import event, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from handlers.app import routes
from handlers.openapi import openapi_document
from tests.harness.server import JsonClient, LiveServer, Response, UserClient, assert_problem
from tests.harness.strategies import examples, jwt_like

# -- values ---------------------------------------------------------------------------

NUMBER_TEXT = st.one_of(
    st.integers(min_value=1, max_value=12).map(str),
    st.integers().map(str),
    st.integers(min_value=2**62, max_value=2**80).map(str),
    st.integers(min_value=4000, max_value=5000).map(lambda digits: "9" * digits),
    st.floats().map(str),
    st.text(st.characters(categories=["Nd"]), min_size=1, max_size=20),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=5),
    st.sampled_from(["0", "00", "01", "+1", "-1", " 1", "1 ", "1_000", "0x10", "1e3", "9" * 19]),
    st.text(min_size=1, max_size=30),
)
"""What a client might send where a number goes: canonical ones (mostly real ids and pages) and
everything else (int() refuses more than 4300 digits)."""

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-2**200, max_value=2**200),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, -2**63 - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.text(st.characters(categories=["Nd"]), min_size=1),
)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)

VALID: dict[str, st.SearchStrategy[Any]] = {
    "name": st.text(min_size=1, max_size=50).filter(str.strip),
    "intro": st.text(max_size=100),
    "is_hot": st.booleans(),
    "sex": st.booleans(),
    "birth": st.dates().map(date.isoformat),
    "photo": st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,30}", fullmatch=True) | st.just(""),
    "subject": st.integers(min_value=1, max_value=8),
    "value": st.sampled_from(["good", "bad"]),
    "username": st.from_regex(r"[A-Za-z0-9_.-]{3,32}", fullmatch=True),
    "password": st.text(min_size=12, max_size=40),
    "refresh_token": st.text(min_size=1, max_size=256),
    "role": st.sampled_from(["user", "admin"]),
}
"""A value each field takes (a subject or password may still be refused: gone, or too easy to guess)."""

NEAR_MISSES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["", " ", "\t\n", "\u3000"]) | st.text(min_size=51, max_size=60),
    "intro": st.integers(2001, 2005).map(lambda n: "i" * n),
    "is_hot": st.sampled_from([0, 1, "true", "false", None]),
    "sex": st.sampled_from([0, 1, "true", None]),
    "birth": st.datetimes().map(datetime.isoformat) | st.text(max_size=12)
    | st.sampled_from(["2000-02-30", "2000-1-1", "20000101", "１９８０-０１-０１"]),
    "photo": st.sampled_from([".hidden", "../x", "a/b", "a b", "é.png"]) | st.text(min_size=101, max_size=110),
    "subject": NUMBER_TEXT | st.floats() | st.sampled_from([0, -1, 2**63 - 1, 2**63, 1.0, 1.5, True]),
    "value": st.sampled_from(["Good", "neutral", "", "good ", None, 1]),
    "username": st.text(max_size=70),
    "password": st.text(max_size=8) | st.text(min_size=257, max_size=260),
    "refresh_token": st.sampled_from(["", None]) | st.text(min_size=257, max_size=260),
    "role": st.sampled_from(["Admin", "viewer", "root", "", " user", None, 1, True]),
}
"""Values each field refuses, close to what it takes."""

SUBJECT = ("name", "intro", "is_hot")
TEACHER = ("name", "sex", "birth", "photo", "intro", "subject")


def encode_object(pairs: list[tuple[str, Any]], ascii_only: bool) -> bytes:
    """A JSON object written pair by pair, so that a key may come twice."""
    members = (f"{json.dumps(key, ensure_ascii=ascii_only)}:{json.dumps(value, ensure_ascii=ascii_only)}"
               for key, value in pairs)
    return ("{" + ",".join(members) + "}").encode("utf-8")


@st.composite
def bodies(draw: st.DrawFn, fields: tuple[str, ...]) -> bytes:
    """A valid object (each field now and then left out), one with a single thing wrong (a value
    near a limit or of another type, an extra key, a repeated key), one of anything at all; or any
    other JSON value, something nested deep, bytes, or an object cut short."""
    kind = draw(st.sampled_from(["valid", "valid", "one wrong", "one wrong", "any", "any", "other"]))
    if kind == "other":
        return draw(st.one_of(
            JSON_VALUES.map(lambda value: json.dumps(value).encode()),
            st.integers(1, 1100).flatmap(lambda depth: st.sampled_from(
                [b"[" * depth + b"]" * depth, b'{"a":' * depth + b'"x:y"' + b"}" * depth])),
            st.binary(max_size=64),
            bodies(fields).flatmap(lambda body: st.integers(0, len(body)).map(lambda cut: body[:cut])),
        ))
    if kind == "any":
        pairs = [(name, draw(VALID[name] | NEAR_MISSES[name] | JSON_VALUES))
                 for name in draw(st.lists(st.sampled_from(fields), unique=True))]
        pairs += draw(st.lists(st.tuples(st.sampled_from(fields) | st.text(max_size=10), JSON_VALUES), max_size=2))
    else:
        pairs = [(name, draw(VALID[name])) for name in fields if draw(st.integers(0, 7))]
    if kind == "one wrong":
        name = draw(st.sampled_from(fields))
        wrong = draw(NEAR_MISSES[name] | JSON_VALUES)
        how = draw(st.sampled_from(["replace", "extra key", "repeat"]))
        if how == "replace":
            pairs = [(key, wrong if key == name else value) for key, value in pairs] or [(name, wrong)]
        else:
            pairs.append((draw(st.text(min_size=1, max_size=10)) if how == "extra key" else name, wrong))
    return encode_object(draw(st.permutations(pairs)), draw(st.booleans()))


def path_id() -> st.SearchStrategy[str]:
    """A path segment where an id goes, percent-encoded; raw bytes too (invalid UTF-8)."""
    return NUMBER_TEXT.map(lambda text: quote(text, safe="")) | st.binary(min_size=1, max_size=8).map(
        lambda raw: quote_from_bytes(raw, safe=""))


def record_or_any_id() -> st.SearchStrategy[str]:
    """Three times in four a number a record may have (1 to 12), else anything."""
    return st.integers(0, 3).flatmap(lambda roll: st.integers(1, 12).map(str) if roll else path_id())


def query_value() -> st.SearchStrategy[str]:
    """A query parameter's value, percent-encoded: what a path id may be, or nothing."""
    return path_id() | st.just("")


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
"""What an HTTP header value can carry (Latin-1, no control characters)."""


def credentials(admin: UserClient, user: UserClient) -> st.SearchStrategy[dict[str, str]]:
    """Mostly the admin's token, so that writes reach validation; else a user's, none, or junk."""
    junk = st.builds(lambda scheme, token: {"Authorization": f"{scheme} {token}"},
                     st.sampled_from(["Bearer", "bearer", "Basic", ""]), HEADER_TEXT | jwt_like(JSON_VALUES))
    return st.one_of(st.just(admin.bearer), st.just(admin.bearer), st.just(admin.bearer), st.just(admin.bearer),
                     st.just(user.bearer), st.just({}), junk)


ACCEPT = HEADER_TEXT | st.sampled_from(
    ["application/json", "*/*", "application/problem+json", "text/html", "application/json;q=0"])
CONTENT_TYPES = HEADER_TEXT | st.sampled_from(
    ["application/json"] * 8 + ["application/merge-patch+json; charset=utf-8", "text/plain"])


@st.composite
def queries(draw: st.DrawFn, names: tuple[str, ...]) -> str:
    """Some of `names` (or all, or twice), and now and then a parameter nobody asked for."""
    chosen = draw(st.lists(st.sampled_from(names), max_size=3)) if names else []
    params = [(name, draw(query_value())) for name in chosen]
    params += [(quote(name, safe=""), draw(query_value())) for name in draw(st.lists(st.text(max_size=6), max_size=1))]
    return "?" + "&".join(f"{name}={value}" for name, value in params) if params else ""


# -- checks ---------------------------------------------------------------------------


def answered(response: Response, what: str) -> Any:
    """Never a 5xx; a 4xx is a complete problem document; a 2xx body is JSON (returned)."""
    assert response.status < 500, f"{what}: {response.status} {response.body[:500]!r}"
    if response.status >= 400:
        problem = assert_problem(response, response.status)
        assert isinstance(problem["type"], str) and isinstance(problem["title"], str), (what, problem)
        return None
    return response.json() if response.body else None


@cache
def validator(schema: str) -> Draft202012Validator:
    """A JSON Schema validator for one schema of the OpenAPI document, `Name` or `[Name]`."""
    ref = {"$ref": f"#/components/schemas/{schema.strip('[]')}"}
    root = {"type": "array", "items": ref} if schema.startswith("[") else ref
    # the route table for its patterns and handlers only: no request reaches it
    table = tuple((pattern, handler) for pattern, handler, _ in routes(None, None))  # type: ignore[arg-type]
    return Draft202012Validator({**root, "components": openapi_document(table)["components"]})


async def shown(client: JsonClient | UserClient, path: str, schema: str, gone_ok: bool = False) -> Any:
    """GET `path`: 200 with a body matching `schema` (or 404 when `gone_ok`)."""
    response = await client.get(path)
    body = answered(response, f"GET {path}")
    if gone_ok and response.status == 404:
        return None
    assert response.status == 200, (path, response.status, response.body[:300])
    errors = [error.message for error in validator(schema).iter_errors(body)]
    assert not errors, (path, errors, body)
    return body


async def everything_still_shows(api: LiveServer, admin: UserClient, subject: int | None, teacher: int | None) -> None:
    """After an accepted write: the lists, the record it touched, its subject's teachers and the totals."""
    subjects = await shown(api, "/api/subjects/", "[Subject]")
    page = await shown(api, "/api/subjects/?page=1&page_size=100", "SubjectPage")
    assert page["count"] == len(subjects)
    await shown(api, "/api/stats", "Stats")
    if teacher is not None:
        record = await shown(api, f"/api/teachers/{teacher}/", "Teacher", gone_ok=True)
        if record is not None:
            subject = subject or record["subject"]
            await shown(admin, f"/api/teachers/{teacher}/vote", "VoteResult")
    if subject is not None and await shown(api, f"/api/subjects/{subject}/", "Subject", gone_ok=True):
        listed = await shown(api, f"/api/teachers/?sno={subject}", "SubjectTeachers")
        paged = await shown(api, f"/api/subjects/{subject}/teachers/?page=1&page_size=100", "TeacherPage")
        assert paged["count"] == len(listed["teachers"])


# -- the properties ---------------------------------------------------------------------

READS = [
    ("/api/subjects/", ("page", "page_size")),
    ("/api/subjects/{}/", ()),
    ("/api/subjects/{}/teachers/", ("page", "page_size")),
    ("/api/teachers/", ("sno",)),
    ("/api/teachers/{}/", ()),
    ("/api/teachers/{}/vote", ()),
    ("/api/teachers/{}/history", ("from", "to", "step")),
    ("/api/subjects/{}/history", ("from", "to", "step")),
    ("/api/auth/me", ()),
    ("/api/stats", ()),
    ("/api/openapi.json", ()),
    ("/healthz", ()),
    ("/readyz", ()),
]

WRITES: list[tuple[str, str, tuple[str, ...]]] = [
    ("POST", "/api/subjects/", SUBJECT),
    ("PUT", "/api/subjects/{}/", SUBJECT),
    ("PATCH", "/api/subjects/{}/", SUBJECT),
    ("DELETE", "/api/subjects/{}/", ()),
    ("POST", "/api/teachers/", TEACHER),
    ("PUT", "/api/teachers/{}/", TEACHER),
    ("PATCH", "/api/teachers/{}/", TEACHER),
    ("DELETE", "/api/teachers/{}/", ()),
    ("PUT", "/api/teachers/{}/vote", ("value",)),
    ("DELETE", "/api/teachers/{}/vote", ()),
]

AUTH_WRITES: list[tuple[str, tuple[str, ...]]] = [
    ("/api/auth/register", ("username", "password")),
    ("/api/auth/login", ("username", "password")),
    ("/api/auth/refresh", ("refresh_token",)),
    ("/api/auth/logout", ("refresh_token",)),
]


@examples(8)
@given(data=st.data())
async def test_reads_take_any_path_and_query(
    api: LiveServer, admin: UserClient, user: UserClient, data: st.DataObject
) -> None:
    template, names = data.draw(st.sampled_from(READS), label="operation")
    path = template.format(data.draw(record_or_any_id(), label="id")) + data.draw(queries(names), label="query")
    headers = {**data.draw(credentials(admin, user), label="credentials"), "Accept": data.draw(ACCEPT, label="accept")}
    response = await api.get(path, headers=headers)
    event(f"GET {template} -> {response.status}")
    answered(response, f"GET {path}")


@examples(12)
@given(data=st.data())
async def test_catalog_and_vote_writes_take_any_input(
    api: LiveServer, admin: UserClient, user: UserClient, data: st.DataObject
) -> None:
    method, template, fields = data.draw(st.sampled_from(WRITES), label="operation")
    path = template.format(data.draw(record_or_any_id(), label="id"))
    body = data.draw(bodies(fields), label="body") if fields else None
    headers = {"Content-Type": data.draw(CONTENT_TYPES, label="content type"),
               **data.draw(credentials(admin, user), label="credentials")}
    response = await api.request(method, path, body=body, headers=headers)
    event(f"{method} {template} -> {response.status}")
    result = answered(response, f"{method} {path} {body!r:.300}")
    if 200 <= response.status < 300:
        touched = template.split("/")[2]
        number = int(path.split("/")[3]) if "{}" in template else result["no"]
        if touched == "subjects":
            await everything_still_shows(api, admin, number, None)
        else:
            await everything_still_shows(api, admin, None, number)
    if method == "DELETE" and response.status == 204:
        assert_problem(await api.get(path), 404)


@examples(6)
@given(data=st.data())
async def test_auth_writes_take_any_input(api: LiveServer, data: st.DataObject) -> None:
    """Refresh and logout take the token from the body, or from the session cookie when the
    request comes from an allowed Origin."""
    path, fields = data.draw(st.sampled_from(AUTH_WRITES), label="operation")
    headers = {"Content-Type": data.draw(CONTENT_TYPES, label="content type")}
    if fields == ("refresh_token",) and data.draw(st.booleans(), label="from the cookie"):
        body = data.draw(st.sampled_from([b"", b"{}", b'{"refresh_token": null}']), label="body")
        url_host = st.text(st.sampled_from("[]:@/.%a1 "), max_size=8) | HEADER_TEXT
        origin = st.sampled_from([api.base_url, "https://elsewhere.example"]) | HEADER_TEXT | st.builds(
            "{}://{}".format, st.sampled_from(["http", "https", ""]), url_host)
        headers.update({"Cookie": f"livevote_refresh={data.draw(HEADER_TEXT, label='cookie')}",
                        "Origin": data.draw(origin, label="origin")})
    else:
        body = data.draw(bodies(fields), label="body")
    response = await api.request("POST", path, body=body, headers=headers)
    event(f"POST {path} -> {response.status}")
    result = answered(response, f"POST {path} {body!r:.300}")
    if response.status == 201:
        assert validator("User").is_valid(result), result
    if response.status == 200:
        assert validator("TokenPair").is_valid(result), result
