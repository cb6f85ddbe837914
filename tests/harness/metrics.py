"""Reading a server's /metrics (Prometheus text) in tests and benchmarks."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the benchmarks read /metrics too, without importing the app
    from tests.harness.server import JsonClient

FEED_MESSAGES = "livevote_vote_feed_messages_total"
"""Vote feed messages a process received from the broker."""


def find_sample(text: str, name: str) -> float | None:
    """The value of the unlabelled sample `name`, if the text has it."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def sample(text: str, name: str) -> float:
    value = find_sample(text, name)
    assert value is not None, f"{name} not in metrics"
    return value


async def metric(server: JsonClient, name: str) -> float:
    """One sample of the server's /metrics, read now."""
    response = await server.get("/metrics")
    assert response.status == 200, response.body
    return sample(response.body.decode(), name)
