"""The services one process runs, built once by server.py and handed to every handler."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from services.accounts import AccountService
from services.backends.broker import Broker
from services.backends.counters import Counters
from services.backends.sessions import SessionStore
from services.backends.store import Store
from services.catalog import CatalogService
from services.config import Config
from services.events import EventBus
from services.sessions import SessionService
from services.votes import VoteService


@dataclass
class Backends:
    """What the services run on; closed in reverse order of opening."""

    store: Store
    session_store: SessionStore
    counters: Counters
    broker: Broker
    redis: Redis | None

    async def close(self) -> None:
        await self.broker.close()
        await self.session_store.close()
        await self.store.close()
        if self.redis is not None:
            await self.redis.aclose()


@dataclass(frozen=True)
class Services:
    config: Config
    backends: Backends
    events: EventBus
    catalog: CatalogService
    accounts: AccountService
    sessions: SessionService
    votes: VoteService
