"""LiveQuota: how many live connections each client address and each token holds open.

One viewer token from one address could open a thousand sockets, each counted as a watcher and
each a file descriptor and memory of this process. A transport asks `admit` before it commits
to a connection (the WebSocket before its upgrade) and hands back the Admission when the
connection ends; past `ws.max_sockets_per_address` or `ws.max_sockets_per_token` the answer is
RateLimited. The count lives here, not in the WebSocket handler, so that every live transport
(a server-sent event stream later) shares one budget.

The counts are this process's: behind a balancer that spreads one client over N processes, a
client may hold up to N times the cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.errors import RateLimited
from services.metrics import Metrics

RETRY_AFTER = 10
"""Seconds a refused client is told to wait: a page that closes a socket frees its place."""


@dataclass(frozen=True, slots=True)
class Admission:
    """One open live connection's place: its client's address and its token's identity (a
    user's session, a viewer token's id)."""

    address: str
    token: str


class LiveQuota:
    def __init__(self, per_address: int, per_token: int, metrics: Metrics) -> None:
        self._per_address = per_address
        self._per_token = per_token
        self._metrics = metrics
        self._by_address: dict[str, int] = {}
        self._by_token: dict[str, int] = {}

    def admit(self, address: str, token: str) -> Admission:
        """A place for one more connection, or RateLimited."""
        if self._by_address.get(address, 0) >= self._per_address:
            self._metrics.live_refused.labels("address").inc()
            raise RateLimited(
                f"This address holds {self._per_address} live connections, the most allowed; close one first.",
                RETRY_AFTER,
            )
        if self._by_token.get(token, 0) >= self._per_token:
            self._metrics.live_refused.labels("token").inc()
            raise RateLimited(
                f"This token holds {self._per_token} live connections, the most allowed; close one first.",
                RETRY_AFTER,
            )
        self._by_address[address] = self._by_address.get(address, 0) + 1
        self._by_token[token] = self._by_token.get(token, 0) + 1
        return Admission(address, token)

    def release(self, admission: Admission) -> None:
        """The connection has ended: call once per admission."""
        _take_one(self._by_address, admission.address)
        _take_one(self._by_token, admission.token)


def _take_one(counts: dict[str, int], key: str) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
