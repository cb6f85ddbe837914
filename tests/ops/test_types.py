"""The type hints hold: mypy (config in mypy.ini, pydantic plugin, strict optional) finds nothing."""

from __future__ import annotations

import asyncio
import sys

from tests.harness.server import ROOT


async def test_mypy_finds_no_error() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mypy", "--no-incremental", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode == 0, output.decode()
    assert b"Success: no issues found" in output
