"""The README's "Quick start: the API" works as written: its curl lines and its Python example run
against the real server here, so the first thing a newcomer tries cannot rot unnoticed."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

from tests.harness.server import ROOT, LiveServer, sign_up

README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "live_counts.py"
DOCUMENTED_ORIGIN = "http://127.0.0.1:8000"
"""Where the README says the server listens; the tests swap in the test server's address."""
STATUS_PREFIX = "HTTP_STATUS "
CURL_STATUSES = "curl() { command curl -w '%{stderr}" + STATUS_PREFIX + "%{http_code}\\n' \"$@\"; }\n"
"""Wraps every curl of the README so that each one reports its status on stderr, in order."""


def quick_start() -> str:
    """The README's "Quick start: the API" section."""
    text = README.read_text()
    match = re.search(r"^## Quick start: the API\n(.*?)^## ", text, re.S | re.M)
    assert match, "README.md has no '## Quick start: the API' section"
    return match.group(1)


def blocks(language: str) -> list[str]:
    """The fenced code blocks of one language in the quick start, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", quick_start(), re.S | re.M)


def shell_env(**extra: str) -> dict[str, str]:
    """This environment, with this interpreter first on PATH: the README's `python` is the one
    that has the requirements installed."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **extra}


def test_readme_example_is_examples_live_counts_verbatim() -> None:
    """The README shows the file the repository ships, not a copy that drifts from it."""
    python_blocks = blocks("python")
    assert len(python_blocks) == 1, python_blocks
    assert python_blocks[0] == EXAMPLE.read_text()


async def test_readme_curl_lines_run_against_the_server(api: LiveServer, tmp_path: Path) -> None:
    """Register 201, login 200, vote 200, refresh 200 (the script sends no refresh token but the
    cookie, so login must have put it in cookies.txt), logout 204; afterwards the vote is counted,
    the cookie is gone and the refreshed token is refused."""
    curl = shutil.which("curl")
    assert curl, "curl is not installed"
    script = blocks("sh")[0]
    assert DOCUMENTED_ORIGIN in script and "curl" in script, script
    script = script.replace(DOCUMENTED_ORIGIN, api.base_url)
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", "set -euo pipefail\n" + CURL_STATUSES + script + '\nprintf "\\nTOKEN %s\\n" "$TOKEN"\n',
        cwd=tmp_path, env=shell_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    output, errors = out.decode(), err.decode()
    assert process.returncode == 0, (output, errors)
    statuses = [line.removeprefix(STATUS_PREFIX) for line in errors.splitlines() if line.startswith(STATUS_PREFIX)]
    assert statuses == ["201", "200", "200", "200", "204"], (statuses, output, errors)
    assert "livevote_refresh" not in (tmp_path / "cookies.txt").read_text(), "logout left the cookie"
    teacher = (await api.get("/api/teachers/1/")).json()
    assert (teacher["good_count"], teacher["bad_count"]) == (1, 0), teacher
    token = re.findall(r"^TOKEN (\S+)$", output, re.M)
    assert token and token[0].count(".") == 2, output
    me = await api.get("/api/auth/me", headers={"Authorization": f"Bearer {token[0]}"})
    assert me.status == 401, "the refreshed token outlived the logout"


async def test_live_counts_example_prints_a_vote_as_it_happens(api: LiveServer) -> None:
    """The README's command line for the example, run as written: it shows the snapshot, then the
    counts that a vote through the API makes."""
    run_lines = [line for block in blocks("sh") for line in block.splitlines()
                 if line.startswith("python examples/live_counts.py")]
    assert len(run_lines) == 1, run_lines
    command = run_lines[0].replace(DOCUMENTED_ORIGIN.replace("http", "ws", 1), api.base_url.replace("http", "ws", 1))
    assert api.base_url.replace("http", "ws", 1) in command, command
    watcher, voter = await sign_up(api, "watcher"), await sign_up(api, "voter")
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", "exec " + command, cwd=ROOT, env=shell_env(TOKEN=watcher.access_token),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = process.stdout, process.stderr
    assert stdout is not None and stderr is not None
    printed: list[str] = []

    async def printed_line(wanted: str) -> None:
        """Reads the example's output up to the line `wanted`."""
        while wanted not in printed:
            line = await stdout.readline()
            if not line:
                problem = (await stderr.read()).decode()
                raise AssertionError(f"the example exited before printing {wanted!r}: {printed} {problem}")
            printed.append(line.decode().rstrip("\n"))

    try:
        await asyncio.wait_for(printed_line("teacher 1: 0 good, 0 bad"), timeout=10)
        response = await voter.request("PUT", "/api/teachers/1/vote", json_body={"value": "good"})
        assert response.status == 200, response.body
        await asyncio.wait_for(printed_line("teacher 1: 1 good, 0 bad"), timeout=10)
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), timeout=10)
