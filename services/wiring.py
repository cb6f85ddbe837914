"""The composition root: open the store and backends the config names, build the services on
them, and close them again.

Embedded mode runs on SQLite and in-process twins; scaled mode on Redis (or a Redis
Cluster) for sessions, counters, pub/sub and presence. Nothing else constructs a
backend, so the two modes differ here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os

from redis.exceptions import RedisClusterException, RedisError

from services.audit import AuditService
from services.auth.accounts import AccountService
from services.auth.passwords import Passwords
from services.auth.secret_file import load_or_create_secret
from services.auth.sessions import SessionService
from services.auth.throttle import LoginThrottle
from services.auth.tokens import TokenService
from services.backends.broker import LocalBroker
from services.backends.broker_redis import RedisBroker
from services.backends.broker_redis_cluster import ClusterBroker
from services.backends.counters import LocalCounters
from services.backends.counters_redis import RedisCounters
from services.backends.mongo_db import is_mongo_url
from services.backends.postgres_db import Limits, is_postgres_url
from services.backends.presence import LocalPresence
from services.backends.presence_redis import RedisPresence
from services.backends.redis_client import RedisClient, connect_redis
from services.backends.sessions_redis import RedisSessionStore
from services.backends.sessions_sqlite import SqliteSessionStore
from services.backends.store import Store
from services.backends.store_mongo import MongoStore
from services.backends.store_postgres import PostgresStore
from services.backends.store_sqlite import SqliteStore, sqlite_path
from services.catalog import CatalogService
from services.config import Config, ConfigError
from services.container import Backends, Services
from services.errors import Unavailable
from services.events import EventBus
from services.history import HistoryService
from services.live.handshakes import HandshakeQueue
from services.live.heartbeat import Heartbeat
from services.live.hub import Hub
from services.live.presence import PresenceService
from services.live.quota import LiveQuota
from services.live.token_clock import TokenClock
from services.metrics import Metrics
from services.seed import seed_demo_data
from services.stats import StatsService
from services.visibility import VisibilityService
from services.votes import VoteService

log = logging.getLogger("livevote")

CLOSE_SECONDS = 5.0
"""How long closing the services may take at shutdown: a Redis node that is down or failing
over must not hold the exit (redis-py retries its commands for longer)."""


class Unreachable(Exception):
    """A backend that config key `key` names cannot be reached at start: one line, exit 1."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def open_store(config: Config, *, serving: bool = True) -> Store:
    """The store the config names; `serving=False` for one-off commands that need no sessions."""
    url = config.store_url
    if url.startswith("sqlite:///"):
        return SqliteStore(sqlite_path(url))
    kind = "PostgreSQL" if is_postgres_url(url) else "MongoDB" if is_mongo_url(url) else None
    if kind is None:
        raise ConfigError(f"unsupported store {url!r} (expected sqlite:///PATH, postgresql://HOST/DATABASE"
                          " or mongodb://HOST/DATABASE)", "store.url")
    if serving and config.redis.url is None:
        raise ConfigError(f"a {kind} store needs redis.url too (sessions and pub/sub live in Redis)", "store.url")
    if kind == "PostgreSQL":
        store = config.store
        return PostgresStore(url, Limits(store.connect_timeout, store.statement_timeout, store.acquire_timeout,
                                         store.pool_size))
    try:
        return MongoStore.from_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc), "store.url") from None


def open_store_to_reconcile(config: Config) -> Store:
    """The store whose counts `reconcile` checks. A SQLite file that does not exist is refused
    rather than created: an empty store has nothing to reconcile, and a new file where the
    operator expected the real one would hide a wrong path."""
    url = config.store_url
    if url.startswith("sqlite:///") and not sqlite_path(url).is_file():
        raise ConfigError(f"no database at {sqlite_path(url)}; nothing to reconcile",
                          "store.url" if config.store.url else "server.data_dir")
    return open_store(config, serving=False)


async def open_backends(config: Config) -> tuple[Backends, bool]:
    """Open the store and, in scaled mode, Redis; True when the store was just created."""
    store = open_store(config)
    created = await open_reachable(store, config)
    if config.redis.url is None:
        assert isinstance(store, SqliteStore)
        backends = Backends(
            store, SqliteSessionStore(store.database), LocalCounters(), LocalBroker(), LocalPresence(), None
        )
    else:
        url, cluster = config.redis.url, config.redis.cluster
        client = await open_redis(config)
        backends = Backends(
            store, RedisSessionStore(client), RedisCounters(client),
            ClusterBroker(url) if cluster else RedisBroker(url),
            RedisPresence(client, lifetime=3 * config.ws.watching_interval), client,
        )
    await backends.session_store.open()
    return backends, created


async def open_reachable(store: Store, config: Config) -> bool:
    """Open the store, so that one that cannot be reached stops the start with its address."""
    try:
        return await store.open()
    except Unavailable as exc:
        raise Unreachable(f"{config.store_description} is unreachable: {failure_reason(exc)}", "store.url") from exc


async def migrate_store(config: Config) -> bool:
    """Bring the store's schema up to date, as every start does, without serving; a store this
    created is seeded as a start would have (server.seed). True when it was created."""
    store = open_store(config, serving=False)
    created = await open_reachable(store, config)
    try:
        if created and config.server.seed:
            await seed_demo_data(store)
    finally:
        await store.close()
    return created


async def open_redis(config: Config) -> RedisClient:
    """Connect and ping once, so that a Redis that cannot be reached stops the start with its address."""
    assert config.redis.url is not None
    client: RedisClient | None = None
    try:
        client = await connect_redis(config.redis.url, config.redis.cluster)
        await client.ping()
    except (RedisError, RedisClusterException, OSError) as exc:
        if client is not None:
            await client.aclose()
        raise Unreachable(f"{config.redis_description} is unreachable: {failure_reason(exc)}", "redis.url") from exc
    return client


def failure_reason(exc: BaseException) -> str:
    """The innermost system error in words ("Connection refused"), rather than a driver's wrapping of it."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def with_signing_secret(config: Config) -> Config:
    """Replace the placeholder secret by this installation's own (see services/auth/secret_file.py)."""
    if not config.uses_placeholder_secret or config.redis.url is not None:
        return config
    secret = load_or_create_secret(config.server.data_dir)
    return config.model_copy(update={"auth": config.auth.model_copy(update={"secret": secret})})


async def prepare_store(config: Config) -> None:
    """Create, migrate and seed the store once, before worker processes open it."""
    config = with_signing_secret(config)
    backends, created = await open_backends(config)
    try:
        if created and config.server.seed:
            await seed_demo_data(backends.store)
    finally:
        await backends.close()


async def build_services(config: Config) -> Services:
    config = with_signing_secret(config)
    backends, created = await open_backends(config)
    if created and config.server.seed:
        await seed_demo_data(backends.store)
        log.info("seeded demo subjects and teachers")
    auth = config.auth
    events = EventBus(backends.broker)
    await events.start()
    tokens = TokenService(auth)
    throttle = LoginThrottle(backends.counters, auth)
    passwords = Passwords(auth.argon2_time_cost, auth.argon2_memory_kib, auth.argon2_parallelism)
    metrics = Metrics()
    hub = Hub(backends.store, events, config.ws, metrics)
    await hub.start()
    presence = PresenceService(backends.presence, hub, config.ws.watching_interval)
    await presence.start()
    metrics.count_sockets(lambda: hub.peer_count)
    metrics.start()
    audit = AuditService(backends.store)
    accounts = AccountService(backends.store, passwords, throttle, audit)
    sessions = SessionService(backends.session_store, accounts, tokens, events, auth, throttle)
    await sessions.start()
    visibility = VisibilityService(backends.store)
    return Services(
        config=config,
        backends=backends,
        events=events,
        catalog=CatalogService(backends.store, events, audit),
        tokens=tokens,
        accounts=accounts,
        sessions=sessions,
        votes=VoteService(backends.store, events, metrics),
        hub=hub,
        token_clock=TokenClock(auth.refresh_ahead, auth.push_tokens),
        heartbeat=Heartbeat(config.ws.ping_interval),
        stats=StatsService(backends.store, presence, visibility),
        visibility=visibility,
        presence=presence,
        quota=LiveQuota(config.ws.max_sockets_per_address, config.ws.max_sockets_per_token, metrics),
        handshakes=HandshakeQueue(config.ws.max_handshakes, metrics),
        metrics=metrics,
        audit=audit,
        history=HistoryService(backends.store),
    )


async def close_services(services: Services) -> None:
    services.token_clock.close()
    services.heartbeat.close()
    closing = {
        "the vote publisher": services.votes.close,
        "the session service": services.sessions.close,
        "presence": services.presence.close,
        "metrics": services.metrics.close,
        "the backends": services.backends.close,
    }
    deadline = asyncio.get_running_loop().time() + CLOSE_SECONDS
    for name, close in closing.items():
        try:
            async with asyncio.timeout_at(deadline):
                await close()
        except TimeoutError:
            log.warning("%s did not close within %.0f s of the others; going on without it", name, CLOSE_SECONDS)
