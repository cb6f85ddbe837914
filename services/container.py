"""The services one process runs, built once by server.py and handed to every handler."""

from __future__ import annotations

from dataclasses import dataclass

from services.audit import AuditService
from services.auth.accounts import AccountService
from services.auth.sessions import SessionService
from services.auth.tokens import TokenService
from services.backends.broker import Broker
from services.backends.counters import Counters
from services.backends.presence import Presence
from services.backends.redis_client import RedisClient
from services.backends.sessions import SessionStore
from services.backends.store import Store
from services.catalog import CatalogService
from services.config import Config
from services.events import EventBus
from services.history import HistoryService
from services.live.handshakes import HandshakeQueue
from services.live.heartbeat import Heartbeat
from services.live.hub import Hub
from services.live.presence import PresenceService
from services.live.quota import LiveQuota
from services.live.token_clock import TokenClock
from services.metrics import Metrics
from services.stats import StatsService
from services.visibility import VisibilityService
from services.votes import VoteService


@dataclass
class Backends:
    """What the services run on. The store closes first: whatever Redis does at shutdown (a node
    down, a failover), the data file is closed cleanly."""

    store: Store
    session_store: SessionStore
    counters: Counters
    broker: Broker
    presence: Presence
    redis: RedisClient | None

    async def close(self) -> None:
        await self.store.close()
        await self.broker.close()
        await self.session_store.close()
        if self.redis is not None:
            await self.redis.aclose()


@dataclass(frozen=True)
class Services:
    config: Config
    backends: Backends
    events: EventBus
    catalog: CatalogService
    tokens: TokenService
    accounts: AccountService
    sessions: SessionService
    votes: VoteService
    hub: Hub
    token_clock: TokenClock
    heartbeat: Heartbeat
    stats: StatsService
    presence: PresenceService
    quota: LiveQuota
    handshakes: HandshakeQueue
    metrics: Metrics
    visibility: VisibilityService
    audit: AuditService
    history: HistoryService
