"""/api/openapi.json is valid OpenAPI that describes every API route once, tagged and named, in
standard JSON Schema, built from the route table and the handlers' declarations; and the server keeps
its promises: its answers have exactly the documented shape, and schemathesis finds no failure."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from tornado.routing import PathMatches

from handlers.app import make_app
from handlers.base import ApiHandler, allowed_methods
from handlers.openapi import openapi_document
from tests.harness.server import ROOT, JsonClient, LiveServer, Response, UserClient, log_in

UNDOCUMENTED = {r"/static/(.*)$", r"/()$", r"/([a-z-]+\.html)$", r"/favicon\.ico$"}
"""Pages and their assets, not API."""
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")
TAGS = {"catalog", "accounts", "votes", "live", "operations", "audit", "history"}
PYDANTIC_ONLY = {"ge", "le", "gt", "lt"}
"""pydantic's names for bounds; JSON Schema says minimum, maximum, exclusiveMinimum, exclusiveMaximum."""
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
PASSWORD = "correct horse battery"


async def served_document(api: LiveServer) -> dict[str, Any]:
    """The document as a client gets it, over HTTP from the running server."""
    response = await api.get("/api/openapi.json")
    assert response.status == 200 and response.content_type == "application/json", response.status
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def keys(node: Any) -> Iterator[tuple[str, str]]:
    """Every (key, where) of every object in a JSON document, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, repr(node)[:200]
            yield from keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from keys(value)


async def test_document_is_openapi_3_1(api: LiveServer) -> None:
    document = (await api.get("/api/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (method, path)


async def test_served_document_passes_openapi_spec_validator(api: LiveServer) -> None:
    """The whole document, including the schemas pydantic generates, as clients and Swagger UI read it."""
    validate(await served_document(api))


async def test_every_operation_has_one_known_tag_and_a_unique_camel_case_operation_id(api: LiveServer) -> None:
    """Swagger UI groups by tag and client generators name methods after operationId."""
    document = await served_document(api)
    declared = {tag["name"]: tag.get("description", "") for tag in document["tags"]}
    assert set(declared) == TAGS and all(declared.values()), declared
    seen: dict[str, str] = {}
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert len(operation.get("tags", [])) == 1 and operation["tags"][0] in TAGS, (where, operation.get("tags"))
        operation_id = operation.get("operationId", "")
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", operation_id), (where, operation_id)
        assert operation_id not in seen, (where, seen.get(operation_id), operation_id)
        seen[operation_id] = where
    assert {"listSubjects", "createSubject", "getTeacher", "castVote", "login", "refreshTokens"} <= set(seen)


async def test_bounds_are_json_schema_keywords_not_pydantic_ones(api: LiveServer) -> None:
    """A validator ignores `ge`/`le`, so a bound spelled so would not be enforced by any client."""
    document = await served_document(api)
    leaked = [(key, where) for key, where in keys(document) if key in PYDANTIC_ONLY]
    assert not leaked, leaked
    subject = document["components"]["schemas"]["TeacherCreate"]["properties"]["subject"]
    assert subject["minimum"] == 1 and subject["maximum"] == 2**63 - 1, subject


async def test_refresh_and_logout_401_are_about_the_refresh_token(api: LiveServer) -> None:
    """They take a refresh token from the body or the cookie; a bearer access token plays no part."""
    paths = (await served_document(api))["paths"]
    for path in ("/api/auth/refresh", "/api/auth/logout"):
        responses = paths[path]["post"]["responses"]
        assert "refresh" in responses["401"]["description"] and "bearer" not in responses["401"]["description"].lower()
        assert "Origin" in responses["403"]["description"] and "security" not in paths[path]["post"]
    refused = await api.request("POST", "/api/auth/refresh", body=b"")
    assert refused.status == 401 and "refresh token" in refused.json()["detail"], refused.body


async def test_ws_entry_describes_the_handshake_and_points_to_the_protocol(api: LiveServer) -> None:
    """The served document cannot link a file, so it names the one in the repository."""
    operation = (await served_document(api))["paths"]["/ws"]["get"]
    assert {"101", "401", "403"} <= set(operation["responses"])
    assert "docs/protocol.md in the repository" in operation["description"]
    assert "bearer.<jwt>" in operation["description"] and "livevote.v1" in operation["description"]
    assert (ROOT / "docs" / "protocol.md").is_file()


async def test_every_api_route_is_documented_once_with_the_methods_it_serves(api: LiveServer) -> None:
    """The paths come from the route table: each route but the pages is one documented path, whose
    operations are the methods its handler implements, and each documented path is served."""
    document = await served_document(api)
    examples = {path: re.sub(r"\{\w+\}", "1", path) for path in document["paths"]}
    assert api.services is not None
    rules = [rule for rule in make_app(api.services).wildcard_router.rules if isinstance(rule.matcher, PathMatches)]
    documented_rules = [rule for rule in rules if rule.matcher.regex.pattern not in UNDOCUMENTED]
    for rule in documented_rules:
        pattern = rule.matcher.regex
        paths = [path for path, example in examples.items() if pattern.match(example)]
        assert len(paths) == 1, f"{pattern.pattern} is documented as {paths}"
        served = {method.lower() for method in allowed_methods(rule.target)} - {"head"}
        assert set(document["paths"][paths[0]]) == served, (paths[0], served)
    for path, example in examples.items():
        routes = [rule for rule in rules if rule.matcher.regex.match(example)]
        assert len(routes) == 1, f"{path} is served by {len(routes)} routes"
    assert len(documented_rules) == len(examples), sorted(examples)


def test_an_api_method_without_an_operation_is_refused() -> None:
    """Every API operation is described: the builder will not leave one out silently."""

    class Undeclared(ApiHandler):
        async def get(self) -> None:
            self.write_json({})

    with pytest.raises(TypeError, match=r"Undeclared\.get"):
        openapi_document((("/api/undeclared", Undeclared),))


def closed(node: Any) -> Any:
    """The schemas with every object that lists its properties closed to any other: an answer with a
    key its type does not declare fails, as does one that lacks a declared key."""
    if isinstance(node, list):
        return [closed(value) for value in node]
    if not isinstance(node, dict):
        return node
    node = {key: closed(value) for key, value in node.items()}
    if "properties" in node:
        node.setdefault("additionalProperties", False)
    return node


def documented_schema(document: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The documented JSON schema of this answer, to validate against with the document's components."""
    concrete = path.partition("?")[0]
    templates = [p for p in document["paths"] if re.fullmatch(re.sub(r"\{\w+\}", "[0-9]+", p), concrete)]
    assert len(templates) == 1, (path, templates)
    responses = document["paths"][templates[0]][method.lower()]["responses"]
    assert str(status) in responses, (method, path, status, sorted(responses))
    schema: dict[str, Any] = responses[str(status)]["content"]["application/json"]["schema"]
    return schema


async def test_answers_have_exactly_their_documented_shape(api: LiveServer, admin: UserClient) -> None:
    """The types the bodies are built as (services/models.py) are the schemas the document shows: real
    answers of the running server match them, with no key more or less."""
    document = await served_document(api)
    components = closed(document["components"])
    registered = await api.request("POST", "/api/auth/register", json_body={"username": "bob", "password": PASSWORD})
    bob = await log_in(api, "bob", PASSWORD)
    subject = (await api.get("/api/subjects/")).json()[0]["no"]
    teacher = (await api.get(f"/api/teachers/?sno={subject}")).json()["teachers"][0]["no"]
    answers: list[tuple[str, str, Response]] = [("POST", "/api/auth/register", registered)]
    calls: list[tuple[JsonClient | UserClient, str, str, Any]] = [
        (api, "POST", "/api/auth/login", {"username": "bob", "password": PASSWORD}),
        (api, "POST", "/api/auth/refresh", {"refresh_token": bob.refresh_token}),
        (bob, "GET", "/api/auth/me", None),
        (api, "GET", "/api/auth/session", None),
        (api, "POST", "/api/auth/viewer", None),
        (api, "GET", "/api/subjects/", None),
        (api, "GET", "/api/subjects/?page=1&page_size=1", None),
        (api, "GET", f"/api/subjects/{subject}/", None),
        (api, "GET", f"/api/subjects/{subject}/teachers/?page=1&page_size=2", None),
        (api, "GET", f"/api/teachers/?sno={subject}", None),
        (api, "GET", f"/api/teachers/{teacher}/", None),
        (admin, "POST", "/api/subjects/", {"name": "Shapes"}),
        (admin, "POST", "/api/teachers/", {"name": "Ada", "sex": False, "birth": "1990-12-10", "subject": subject}),
        (bob, "PUT", f"/api/teachers/{teacher}/vote", {"value": "good"}),
        (bob, "GET", f"/api/teachers/{teacher}/vote", None),
        (api, "GET", "/api/stats", None),
        (api, "GET", f"/api/teachers/{teacher}/history", None),
        (api, "GET", f"/api/subjects/{subject}/history?step=day", None),
        (bob, "DELETE", f"/api/teachers/{teacher}/vote", None),
        (admin, "PATCH", f"/api/users/{bob.pair['user']['id']}", {"role": "user"}),
        (api, "GET", "/healthz", None),
        (api, "GET", "/readyz", None),
        (api, "GET", "/api/openapi.json", None),
    ]
    for client, method, path, body in calls:
        answers.append((method, path, await client.request(method, path, json_body=body)))
    for method, path, response in answers:
        assert response.status in (200, 201) and response.content_type == "application/json", (path, response.body)
        schema = documented_schema(document, method, path, response.status)
        errors = [error.message for error in Draft202012Validator({**schema, "components": components}).iter_errors(
            response.json())]
        assert not errors, (method, path, errors, response.body[:500])


async def test_schemathesis_finds_no_failure(api: LiveServer, admin: UserClient) -> None:
    """Every operation, with an admin's token; logout-all is left out since it would end that token,
    /ws since it speaks WebSocket and /sse since a valid request never ends (tests/live/ cover both)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(SCHEMATHESIS_CONFIG),
        "run", f"{api.base_url}/api/openapi.json", "--header", f"Authorization: Bearer {admin.access_token}",
        "--exclude-path", "/api/auth/logout-all", "--exclude-path", "/ws", "--exclude-path", "/sse",
        "--checks", "all", "--max-examples", "50", "--workers", "1", "--seed", "1",
        "--generation-database", "none", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert " passed" in text and "failures" not in text.lower().split("summary")[-1], text[-3000:]
