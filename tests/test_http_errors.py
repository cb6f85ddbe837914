"""Every HTTP error status of DESIGN section 4 is problem+json, never a stack trace."""

from __future__ import annotations

import pytest

from tests.support import LiveServer, UserClient, assert_problem


async def test_unknown_path_is_404(api: LiveServer) -> None:
    problem = assert_problem(await api.get("/api/nothing-here"), 404)
    assert "/api/nothing-here" in problem["detail"]


@pytest.mark.parametrize("method, path, allow", [
    ("PATCH", "/api/subjects/", "GET, POST"),
    ("POST", "/api/subjects/1/", "GET, PUT, PATCH, DELETE"),
    ("DELETE", "/api/teachers/", "GET, POST"),
    ("POST", "/healthz", "GET"),
    ("PROPFIND", "/api/subjects/", "GET, POST"),
])
async def test_wrong_method_is_405_with_allow(api: LiveServer, method: str, path: str, allow: str) -> None:
    response = await api.request(method, path, body=b"{}" if method != "DELETE" else None,
                                 headers={"Content-Type": "application/json"})
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) == set(allow.split(", "))


@pytest.mark.parametrize("accept", ["text/html", "application/xml, text/plain", "application/json;q=0"])
async def test_accept_without_json_is_406(api: LiveServer, accept: str) -> None:
    assert_problem(await api.get("/api/subjects/", headers={"Accept": accept}), 406)


@pytest.mark.parametrize("accept", ["application/json", "*/*", "text/html, application/*;q=0.1", "application/problem+json"])
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
    assert assert_problem(response, 422)["errors"] == [{"field": "body", "message": "must be an object"}]


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
