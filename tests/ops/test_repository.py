"""The repository stands on its own: users get only it, so nothing shipped points outside it."""

from __future__ import annotations

import subprocess

from tests.harness.server import ROOT

OUTSIDE = ("../shared", "DESIGN.md", "DESIGN section")


def test_no_tracked_file_refers_to_documents_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = [
        (path, needle)
        for path in tracked
        if path != "tests/ops/test_repository.py" and (ROOT / path).is_file()
        for needle in OUTSIDE
        if needle in (ROOT / path).read_text(errors="ignore")
    ]
    assert not offenders, offenders
