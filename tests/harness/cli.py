"""`python server.py` commands run to their end, as an operator types them: exit code and output."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.harness.environment import server_env
from tests.harness.server import ROOT


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


async def run_server_py(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
                        timeout: float = 60.0) -> Finished:
    """`python server.py ARGS` to its end, in a session of its own: no controlling terminal, as
    under a supervisor or in CI (and no prompt on the terminal of whoever runs the tests).
    `env` defaults to server_env(); killed if it has not ended after `timeout` seconds."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "server.py"), *args, cwd=ROOT, env=server_env() if env is None else env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def create_admin(
    data_dir: Path, redis_url: str, *args: str, username: str = "root", password: str = "admin password"
) -> None:
    """An admin account in the processes' store, made as an operator would: `python server.py
    create-user NAME --admin --password-stdin` on the same data dir and Redis (`args`: say
    "--redis-cluster"). Log in with tests.harness.server.log_in(server, username, password)."""
    finished = await run_server_py(
        "create-user", username, "--admin", "--password-stdin", "--data-dir", str(data_dir), "--redis-url", redis_url,
        *args, stdin=password.encode() + b"\n", timeout=30,
    )
    assert finished.code == 0, f"create-user exited {finished.code}: {finished.stdout}{finished.stderr}"
