"""/api/openapi.json describes every route, and the server keeps its promises (schemathesis)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tornado.routing import PathMatches

from server import make_app
from tests.support import LiveServer, UserClient

UNDOCUMENTED = {r"/static/(.*)$", r"/()$", r"/([a-z-]+\.html)$"}
"""Pages and their assets, not API."""
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


async def test_document_is_openapi_3_1(api: LiveServer) -> None:
    document = (await api.get("/api/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (method, path)


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
