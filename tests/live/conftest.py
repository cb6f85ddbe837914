"""Fixtures of the /ws property suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.ws_probe import Env, probe_env


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A server with its users and the probe socket (tests/harness/ws_probe.py), one per module."""
    yield from probe_env(tmp_path_factory)
