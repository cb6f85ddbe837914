"""/api/openapi.json is valid OpenAPI that describes every route, tagged and named, in standard JSON
Schema, and the server keeps its promises (schemathesis)."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate
from tornado.routing import PathMatches

from handlers.app import make_app
from tests.harness.server import ROOT, LiveServer, UserClient

UNDOCUMENTED = {r"/static/(.*)$", r"/()$", r"/([a-z-]+\.html)$"}
"""Pages and their assets, not API."""
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")
TAGS = {"catalog", "accounts", "votes", "live", "operations"}
PYDANTIC_ONLY = {"ge", "le", "gt", "lt"}
"""pydantic's names for bounds; JSON Schema says minimum, maximum, exclusiveMinimum, exclusiveMaximum."""
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


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


async def test_every_route_is_documented_and_every_documented_path_exists(api: LiveServer) -> None:
    document = (await api.get("/api/openapi.json")).json()
    examples = [path.replace("{no}", "1") for path in document["paths"]]
    assert api.services is not None
    app = make_app(api.services)
    patterns = [
        rule.matcher.regex for rule in app.wildcard_router.rules
        if isinstance(rule.matcher, PathMatches) and rule.matcher.regex.pattern not in UNDOCUMENTED
    ]
    for pattern in patterns:
        assert any(pattern.match(example) for example in examples), f"{pattern.pattern} is not documented"
    for example in examples:
        assert any(pattern.match(example) for pattern in patterns), f"{example} has no route"


async def test_schemathesis_finds_no_failure(api: LiveServer, admin: UserClient) -> None:
    """Every operation, with an admin's token; logout-all is left out since it would end that token,
    and /ws since it speaks WebSocket (tests/test_live_*.py cover it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(SCHEMATHESIS_CONFIG),
        "run", f"{api.base_url}/api/openapi.json", "--header", f"Authorization: Bearer {admin.access_token}",
        "--exclude-path", "/api/auth/logout-all", "--exclude-path", "/ws",
        "--checks", "all", "--max-examples", "50", "--workers", "1", "--seed", "1",
        "--generation-database", "none", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert " passed" in text and "failures" not in text.lower().split("summary")[-1], text[-3000:]
