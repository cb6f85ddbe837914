"""The README's "Quick start: the API" works as written: its curl lines and its Python example run
against the real server here, so the first thing a newcomer tries cannot rot unnoticed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.harness.ports import free_port
from tests.harness.server import ROOT, LiveServer, sign_up

README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "live_counts.py"
DOCUMENTED_ORIGIN = "http://127.0.0.1:8000"
"""Where the README says the server listens; the tests swap in the test server's address."""
CURL_STATUSES = "curl() { command curl --dump-header /dev/stderr \"$@\"; }\n"
"""Wraps every curl of the README so that each one reports its status line on stderr, in order,
leaving the README's own options (its -w) as they are."""
STATUS_LINE = re.compile(r"^HTTP/[0-9.]+ (\d{3})", re.M)
EXAMPLE_LINE = "python examples/live_counts.py"


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


async def run_block(script: str, api: LiveServer, cwd: Path, **env: str) -> tuple[list[str], str]:
    """One of the README's shell blocks, run by bash as written but for the server's address:
    the curl statuses in order, and what it printed (then `TOKEN <the last $TOKEN>`)."""
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", "set -euo pipefail\n" + CURL_STATUSES + script.replace(DOCUMENTED_ORIGIN, api.base_url)
        + '\nprintf "TOKEN %s\\n" "${TOKEN-}"\n',
        cwd=cwd, env=shell_env(**env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, (out.decode(), err.decode())
    return STATUS_LINE.findall(err.decode()), out.decode()


class Example:
    """examples/live_counts.py running, as the README's line starts it, read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.process, self.stdout, self.stderr = process, process.stdout, process.stderr
        self.printed: list[str] = []

    @classmethod
    async def start(cls, command: str, **env: str) -> Example:
        return cls(await asyncio.create_subprocess_exec(
            "bash", "-c", "exec " + command, cwd=ROOT, env=shell_env(**env),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        ))

    async def printed_line(self, wanted: str, timeout: float = 10) -> None:
        """Reads the example's output up to the line `wanted`."""

        async def read() -> None:
            while wanted not in self.printed:
                line = await self.stdout.readline()
                if not line:
                    problem = (await self.stderr.read()).decode()
                    raise AssertionError(f"the example exited before printing {wanted!r}: {self.printed} {problem}")
                self.printed.append(line.decode().rstrip("\n"))

        await asyncio.wait_for(read(), timeout)

    async def ended(self, timeout: float = 10) -> tuple[int, str]:
        """Its exit code and what it wrote on stderr, once it ends by itself."""
        _, err = await asyncio.wait_for(self.process.communicate(), timeout)
        assert self.process.returncode is not None
        return self.process.returncode, err.decode()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
        await asyncio.wait_for(self.process.wait(), timeout=10)


async def test_the_quick_start_runs_as_written_in_its_order(api: LiveServer, tmp_path: Path) -> None:
    """Every shell block of the quick start, in the README's order, with the shell's state
    carried from one to the next: register 201, login 200, vote 200, refresh 200 (the script sends
    no refresh token but the cookie, so login must have put it in cookies.txt); the example on the
    refreshed token shows that vote and the next one; logout 204, after which the example says the
    session ended and stops, the cookie is gone and the token is refused. Each JSON answer the
    README prints ends its line, so that the shell's prompt does not land on it."""
    assert shutil.which("curl"), "curl is not installed"
    first, run_example, last = blocks("sh")
    assert DOCUMENTED_ORIGIN in first and EXAMPLE_LINE in run_example and "/logout" in last, blocks("sh")

    statuses, output = await run_block(first, api, tmp_path)
    assert statuses == ["201", "200", "200", "200"], (statuses, output)
    *answers, token_line = output.splitlines()
    assert [json.loads(answer)["username" if "username" in answer else "good_count"] for answer in answers] == [
        "newcomer", 1], output
    token = token_line.removeprefix("TOKEN ")
    assert token.count(".") == 2, output

    example = await Example.start(run_example.strip().replace(
        DOCUMENTED_ORIGIN.replace("http", "ws", 1), api.base_url.replace("http", "ws", 1)), TOKEN=token)
    try:
        await example.printed_line("teacher 1: 1 good, 0 bad")
        voter = await sign_up(api, "voter")
        assert (await voter.request("PUT", "/api/teachers/1/vote", json_body={"value": "bad"})).status == 200
        await example.printed_line("teacher 1: 1 good, 1 bad")

        statuses, output = await run_block(last, api, tmp_path, API=api.base_url)
        assert statuses == ["204"] and output == "TOKEN \n", (statuses, output)
        code, said = await example.ended()
        assert (code, said) == (1, "live_counts: session ended: log in again for a new token\n")
    finally:
        await example.stop()
    assert "livevote_refresh" not in (tmp_path / "cookies.txt").read_text(), "logout left the cookie"
    me = await api.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 401, "the refreshed token outlived the logout"


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
async def test_every_example_without_arguments_prints_its_usage(example: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(example), cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode != 0 and out == b""
    assert err.decode().startswith(f"usage: python examples/{example.name} "), err


@pytest.mark.parametrize("url, token, subject, expected", [
    ("http://{host}/ws", "good", "1", "live_counts: 'http://{host}/ws' is not a WebSocket URL"),
    ("{host}/ws", "good", "1", "live_counts: '{host}/ws' is not a WebSocket URL"),
    ("ws://{host}/ws", "not-a-token", "1", "live_counts: the server refused the token"),
    ("ws://{host}/ws", "", "1", "live_counts: the server refused the token"),
    ("ws://{host}/nowhere", "good", "1", "live_counts: the server refused the connection (404)"),
    ("ws://{host}/ws", "good", "no-such-subject", "live_counts: Channels are subject:{{no}}"),
    ("ws://{host}/ws", "good", "999", "live_counts: There is no subject 999."),
    ("ws://127.0.0.1:{free}/ws", "good", "1",
     "live_counts: cannot connect to ws://127.0.0.1:{free}/ws: Connection refused"),
    ("ws://no-such-host.invalid/ws", "good", "1", "live_counts: cannot connect to ws://no-such-host.invalid/ws: "),
], ids=["http URL", "no scheme", "bad token", "empty token", "wrong path", "bad subject", "no such subject",
        "server down", "unknown host"])
async def test_the_example_ends_every_failure_with_one_line(
    api: LiveServer, url: str, token: str, subject: str, expected: str
) -> None:
    """Whatever the newcomer gets wrong: exit 1 and one line saying what, never a traceback."""
    names = {"host": api.base_url.removeprefix("http://"), "free": str(free_port())}
    if token == "good":
        token = (await sign_up(api, "watcher")).access_token
    example = await Example.start(f"{EXAMPLE_LINE} {url.format(**names)} '{token}' {subject}")
    try:
        code, said = await example.ended()
    finally:
        await example.stop()
    assert code == 1 and said.count("\n") == 1 and said.startswith(expected.format(**names)), said
