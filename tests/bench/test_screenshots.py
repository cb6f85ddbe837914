"""docs/screenshots.py, run as docs/pages.md says: every PNG it promises is written, the size of its viewport."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from tests.harness.server import ROOT

SCRIPT = ROOT / "docs" / "screenshots.py"
SIZES = {"teachers": (1280, 800), "dashboard": (1280, 800), "home": (1280, 800), "admin": (1280, 800),
         "phone-teachers": (390, 844)}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_BYTES = 20_000
"""A blank page of this size compresses to a few KB; each real shot weighs 60 KB or more."""


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a PNG must start with."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR", "no IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_script_photographs_every_page(tmp_path: Path) -> None:
    out = tmp_path / "shots"
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(path.stem for path in out.iterdir()) == sorted(SIZES)
    for name, size in SIZES.items():
        data = (out / f"{name}.png").read_bytes()
        assert png_size(data) == size, name
        assert len(data) > MIN_BYTES, f"{name}.png is {len(data)} bytes: blank?"
