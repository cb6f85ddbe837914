"""A per-installation signing secret for embedded mode.

So that `python server.py` runs safely with nothing configured: instead of the
shipped placeholder, a single process signs with 256 random bits kept in
<data_dir>/secret.key (mode 0600), created on first start. Processes that share
Redis must share one configured secret instead (config refuses the placeholder
there).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "secret.key"


def load_or_create_secret(data_dir: Path) -> str:
    path = data_dir / FILE_NAME
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secret + "\n")
    return secret
