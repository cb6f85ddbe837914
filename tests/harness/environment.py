"""The environment of a `python server.py` subprocess: its config as LIVEVOTE_* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256"
FAST_ARGON2 = {"auth.argon2_time_cost": 1, "auth.argon2_memory_kib": 8192, "auth.argon2_parallelism": 1}
"""Still argon2id, but cheap enough for suites that register hundreds of users."""
ONE_CLIENT_MANY_SOCKETS = {"ws.max_sockets_per_address": 1_000_000, "ws.max_sockets_per_token": 1_000_000}
"""For benchmarks and soaks, which open thousands of sockets from one address, often with one
token: what the per-address and per-token caps exist to refuse from anyone else."""


def config_env(config: Mapping[str, object]) -> dict[str, str]:
    """Config as `python server.py` reads it from its environment: `section.key` (or
    `section__key`) = value becomes LIVEVOTE_SECTION__KEY=value."""
    return {"LIVEVOTE_" + key.upper().replace(".", "__"): str(value) for key, value in config.items()}


def server_env(**config: object) -> dict[str, str]:
    """The environment of a `python server.py` subprocess under test: this one without any
    LIVEVOTE_* variable, plus the test secret, cheap argon2 and `section.key=value` config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LIVEVOTE_")}
    return {**env, **config_env({"auth.secret": TEST_SECRET, **FAST_ARGON2, **config})}
