"""A per-installation signing secret for embedded mode.

So that `python server.py` runs safely with nothing configured: instead of the
shipped placeholder, a single process signs with 256 random bits kept in
<data_dir>/secret.key (mode 0600), created on first start. Processes that share
Redis must share one configured secret instead (config refuses the placeholder
there).

A key file that is there but short or unreadable stops the start (ConfigError)
rather than signing with whatever it holds: a 1-byte key makes tokens forgeable,
an empty one makes every login fail.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from services.config import MIN_HMAC_SECRET_BYTES, ConfigError

FILE_NAME = "secret.key"


def load_or_create_secret(data_dir: Path) -> str:
    """The key in <data_dir>/secret.key, made on first use; ConfigError if it is unfit."""
    path = data_dir / FILE_NAME
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secret + "\n")
    return secret


def _read_key(path: Path) -> str:
    """The key in `path`; FileNotFoundError if there is none, ConfigError if it cannot be used."""
    try:
        secret = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not ASCII text"
        raise ConfigError(f"{path}: the signing key cannot be read ({reason})") from None
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise ConfigError(
            f"{path}: the signing key has {len(secret)} bytes, it needs at least {MIN_HMAC_SECRET_BYTES}"
            " (remove the file to have a new one made; that ends every session)"
        )
    return secret
