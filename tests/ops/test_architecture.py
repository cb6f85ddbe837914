"""The house keeps its shape: imports point one way (server.py -> handlers -> services ->
services/backends -> the leaves) with no cycle, as pyproject.toml's import contracts say, and
ruff finds nothing. docs/architecture.md draws the same layers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.server import ROOT

LINT_IMPORTS = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "back_import", "contract"),
    [
        ("services/live/hub.py", "import handlers.base", "handlers -> services, never back"),
        ("services/backends/store.py", "import services.live.hub", "services: wiring over independent concepts"),
        ("handlers/base.py", "import server", "server.py is the top"),
        ("services/live/peer.py", "import services.live.hub", "no module cycles"),
    ],
)
def test_an_arrow_pointing_back_up_breaks_a_contract(
    tmp_path: Path, module: str, back_import: str, contract: str
) -> None:
    """The contracts can fail: a copy of the code with one import added the wrong way round breaks one."""
    for part in ("handlers", "services"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("server.py", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    with (tmp_path / module).open("a") as file:
        file.write(f"\n{back_import}  # the wrong way round\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout, result.stdout


def test_ruff_finds_nothing() -> None:
    """Lint and import order, as pyproject.toml configures them, over the whole tree."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
