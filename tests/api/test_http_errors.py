"""Every HTTP error status of the REST API is problem+json, never a stack trace."""

from __future__ import annotations

import contextlib
from urllib.parse import quote, urlencode

import pytest

from handlers.json_input import loads_strict
from tests.harness.server import LiveServer, UserClient, assert_problem


async def test_unknown_path_is_404(api: LiveServer) -> None:
    problem = assert_problem(await api.get("/api/nothing-here"), 404)
    assert "/api/nothing-here" in problem["detail"]


@pytest.mark.parametrize("method, path, allow", [
    ("PATCH", "/api/subjects/", "GET, HEAD, POST"),
    ("POST", "/api/subjects/1/", "GET, HEAD, PUT, PATCH, DELETE"),
    ("DELETE", "/api/teachers/", "GET, HEAD, POST"),
    ("POST", "/healthz", "GET, HEAD"),
    ("PROPFIND", "/api/subjects/", "GET, HEAD, POST"),
])
async def test_wrong_method_is_405_with_allow(api: LiveServer, method: str, path: str, allow: str) -> None:
    response = await api.request(method, path, body=b"{}" if method != "DELETE" else None,
                                 headers={"Content-Type": "application/json"})
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) == set(allow.split(", "))


@pytest.mark.parametrize("accept", ["text/html", "application/xml, text/plain", "application/json;q=0"])
async def test_accept_without_json_is_406(api: LiveServer, accept: str) -> None:
    assert_problem(await api.get("/api/subjects/", headers={"Accept": accept}), 406)


@pytest.mark.parametrize(
    "accept", ["application/json", "*/*", "text/html, application/*;q=0.1", "application/problem+json"]
)
async def test_accept_with_json_is_served(api: LiveServer, accept: str) -> None:
    assert (await api.get("/api/subjects/", headers={"Accept": accept})).status == 200


async def test_malformed_json_is_400(api: LiveServer, admin: UserClient) -> None:
    response = await admin.request("POST", "/api/subjects/", body=b'{"name": ',
                                 headers={"Content-Type": "application/json"})
    assert "not valid JSON" in assert_problem(response, 400)["detail"]


@pytest.mark.parametrize("body", [b'"\\ud800"', b"\xff\xfe", b""])
async def test_undecodable_json_is_400(api: LiveServer, admin: UserClient, body: bytes) -> None:
    response = await admin.request("POST", "/api/subjects/", body=body, headers={"Content-Type": "application/json"})
    assert_problem(response, 400)


@pytest.mark.parametrize("body", [b"[]", b'"name"', b"3", b"null"])
async def test_a_body_that_is_not_an_object_is_422(api: LiveServer, admin: UserClient, body: bytes) -> None:
    response = await admin.request("POST", "/api/subjects/", body=body, headers={"Content-Type": "application/json"})
    assert assert_problem(response, 422)["errors"] == [
        {"field": "body", "code": "object_type", "message": "must be an object"}
    ]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_body_that_is_not_json_is_415(api: LiveServer, admin: UserClient, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await admin.request("POST", "/api/subjects/", body=b'{"name": "x"}', headers=headers)
    assert_problem(response, 415)
    assert len((await api.get("/api/subjects/")).json()) == 5


async def test_vendor_json_media_type_is_accepted(api: LiveServer, admin: UserClient) -> None:
    response = await admin.request("POST", "/api/subjects/", body=b'{"name": "x"}',
                                 headers={"Content-Type": "application/merge-patch+json; charset=utf-8"})
    assert response.status == 201


async def test_body_too_large_is_413_before_it_is_read(api: LiveServer, admin: UserClient) -> None:
    limit = api.config.server.max_body_size
    response = await admin.request("POST", "/api/subjects/", json_body={"name": "x", "intro": "y" * limit})
    assert "larger than" in assert_problem(response, 413)["detail"]


async def test_chunked_body_too_large_is_413(api: LiveServer, admin: UserClient) -> None:
    """No Content-Length: the size is counted as the body streams in."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    limit = api.config.server.max_body_size

    async def produce(write):  # type: ignore[no-untyped-def]
        for _ in range(limit // 1024 + 2):
            await write(b" " * 1024)

    request = HTTPRequest(f"{api.base_url}/api/subjects/", method="POST", body_producer=produce,
                          headers={"Content-Type": "application/json", **admin.bearer})
    response = await AsyncHTTPClient().fetch(request, raise_error=False)
    assert response.code == 413
    assert response.headers["Content-Type"] == "application/problem+json"


async def test_health_and_readiness(api: LiveServer) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/readyz")).json() == {"status": "ready"}


async def test_readiness_is_503_when_the_store_is_gone(api: LiveServer) -> None:
    assert api.services is not None
    await api.services.backends.store.close()
    assert_problem(await api.get("/readyz"), 503)


NOT_CANONICAL = ["²", "①", "١", "٣٤", "１", "߁", "01", "00", "+1", "-1", " 1", "1 ", "1.0", "1e2", "0x1", "1_0",
                 "", "0", "9" * 19, "9" * 5000]
"""Numbers no client may spell: other scripts' digits, signs, leading zeros, padding, out of range."""


@pytest.mark.parametrize("raw", NOT_CANONICAL)
@pytest.mark.parametrize("name", ["page", "page_size"])
async def test_paging_takes_only_canonical_ascii_numbers(api: LiveServer, name: str, raw: str) -> None:
    for path in ("/api/subjects/", "/api/subjects/1/teachers/"):
        problem = assert_problem(await api.get(f"{path}?{urlencode({name: raw})}"), 422)
        assert [error["field"] for error in problem["errors"]] == [name]


@pytest.mark.parametrize("raw", NOT_CANONICAL)
async def test_sno_takes_only_canonical_ascii_numbers(api: LiveServer, raw: str) -> None:
    assert_problem(await api.get(f"/api/teachers/?{urlencode({'sno': raw})}"), 404)


@pytest.mark.parametrize("raw", NOT_CANONICAL)
async def test_path_ids_take_only_canonical_ascii_numbers(api: LiveServer, user: UserClient, raw: str) -> None:
    segment = quote(raw, safe="")
    for path in (f"/api/subjects/{segment}/", f"/api/subjects/{segment}/teachers/", f"/api/teachers/{segment}/",
                 f"/api/teachers/{segment}/vote"):
        assert_problem(await user.get(path), 404)


async def test_canonical_numbers_still_work(api: LiveServer) -> None:
    page = (await api.get("/api/subjects/?page=1&page_size=2")).json()
    assert page["count"] == 5 and len(page["results"]) == 2
    assert (await api.get("/api/teachers/?sno=1")).json()["subject"]["no"] == 1
    assert (await api.get("/api/subjects/1/")).status == 200


@pytest.mark.parametrize("path, body", [
    ("/api/subjects/", b'{"name": "good", "name": "bad"}'),
    ("/api/subjects/", b'{"name": "x", "intro": "at 12:00", "intro": "at 13:00"}'),
    ("/api/subjects/", b'{"name": "x", "n\\u0061me": "y"}'),
    ("/api/teachers/1/vote", b'{"value": "good", "value": "bad"}'),
])
async def test_a_key_twice_in_a_body_is_400(api: LiveServer, admin: UserClient, path: str, body: bytes) -> None:
    method = "PUT" if path.endswith("vote") else "POST"
    response = await admin.request(method, path, body=body, headers={"Content-Type": "application/json"})
    assert "appears twice" in assert_problem(response, 400)["detail"]
    assert len((await api.get("/api/subjects/")).json()) == 5
    assert (await admin.get("/api/teachers/1/vote")).json()["value"] is None


async def test_colons_inside_strings_are_not_keys(api: LiveServer, admin: UserClient) -> None:
    response = await admin.request("POST", "/api/subjects/", json_body={"name": "a:b", "intro": '"x": 1, "name": 2'})
    assert response.status == 201, response.body


@pytest.mark.parametrize("text, found", [
    ('{"a": 1, "b": {"a": 2}}', {"a": 1, "b": {"a": 2}}),
    ('[{"a": 1}, {"a": 2}]', [{"a": 1}, {"a": 2}]),
    ('{"a": "1:2:3"}', {"a": "1:2:3"}),
    ('"::"', "::"),
])
def test_loads_strict_takes_keys_that_repeat_only_across_objects(text: str, found: object) -> None:
    assert loads_strict(text) == found and loads_strict(text.encode()) == found


@pytest.mark.parametrize("text", ['{"a": 1, "a": 1}', '[{"a": {"b": 1, "b": 2}}]', '{"a": "x:y", "\\u0061": 1}'])
def test_loads_strict_refuses_a_repeated_key_with_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="appears twice"):
        loads_strict(text)


@pytest.mark.parametrize("depth", [900, 1000, 1023])
def test_loads_strict_never_fails_otherwise_on_deep_nesting(depth: int) -> None:
    """orjson takes 1023 levels; the stdlib scan that looks for the repeated key may run out of
    stack before that, and then the document is refused like any other: with a ValueError."""
    text = "[" * depth + '{"a": "b:c"}' + "]" * depth
    with contextlib.suppress(ValueError):
        loads_strict(text)


async def test_an_origin_that_is_no_url_is_not_allowed(api: LiveServer, user: UserClient) -> None:
    """urlsplit() raises on `http://[`: such an Origin is refused, not a 500 (found by
    tests/api/test_rest_properties.py)."""
    response = await api.request("POST", "/api/auth/refresh", body=b"", headers={
        "Cookie": f"livevote_refresh={user.refresh_token}", "Origin": "http://[", "Content-Type": "application/json"})
    assert_problem(response, 403)
