"""livevote: a realtime voting server on Tornado.

    python server.py [serve] [--config FILE] [--host H] [--port P] [--data-dir D] [--dev] [--no-seed]

`make_app(services)` builds the Tornado application from running services;
`build_services(config)` opens the backends the config names. The tests use
both, exactly as `serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from handlers.base import LivevoteApplication, NotFoundHandler
from handlers.catalog import (
    SubjectHandler,
    SubjectListHandler,
    SubjectTeachersHandler,
    TeacherHandler,
    TeacherListHandler,
)
from handlers.live import LiveSocket
from handlers.ops import HealthHandler, MetricsHandler, OpenApiHandler, ReadyHandler, StatsHandler
from handlers.pages import PageHandler
from handlers.auth import LoginHandler, LogoutAllHandler, LogoutHandler, MeHandler, RefreshHandler, RegisterHandler
from handlers.protocol import text_frame
from handlers.votes import VoteHandler
from services.accounts import AccountService
from services.backends.broker import LocalBroker
from services.backends.counters import LocalCounters
from services.backends.mongo_store import MongoStore, is_mongo_url
from services.backends.presence import LocalPresence
from services.backends.cluster_broker import ClusterBroker
from services.backends.redis_broker import RedisBroker
from services.backends.redis_client import connect_redis
from services.backends.redis_counters import RedisCounters
from services.backends.redis_presence import RedisPresence
from services.backends.redis_sessions import RedisSessionStore
from services.backends.sqlite_sessions import SqliteSessionStore
from services.backends.sqlite_store import SqliteStore, sqlite_path
from services.backends.store import Store
from services.catalog import CatalogService
from services.config import Config, ConfigError, load_config
from services.container import Backends, Services
from services.errors import DomainError
from services.events import EventBus
from services.hub import Hub
from services.metrics import Metrics
from services.models import User
from services.passwords import Passwords
from services.secret_file import load_or_create_secret
from services.seed import seed_demo_data
from services.sessions import SessionService
from services.stats import StatsService
from services.throttle import LoginThrottle
from services.token_clock import TokenClock
from services.tokens import TokenService
from services.votes import VoteService
from workers import Supervisor

log = logging.getLogger("livevote")

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "config.yaml"
STATIC_DIR = ROOT / "static"
DRAIN_SECONDS = 10.0
LISTEN_BACKLOG = 2048
"""Connections the kernel queues before accept: a reconnect storm of pages must not see SYNs dropped."""


def make_app(services: Services) -> LivevoteApplication:
    api = {"services": services}
    routes: list[tuple[str, Any, dict[str, Any]]] = [
        (r"/api/subjects/?", SubjectListHandler, api),
        (r"/api/subjects/([0-9]+)/?", SubjectHandler, api),
        (r"/api/subjects/([0-9]+)/teachers/?", SubjectTeachersHandler, api),
        (r"/api/teachers/?", TeacherListHandler, api),
        (r"/api/teachers/([0-9]+)/?", TeacherHandler, api),
        (r"/api/teachers/([0-9]+)/vote/?", VoteHandler, api),
        (r"/api/auth/register/?", RegisterHandler, api),
        (r"/api/auth/login/?", LoginHandler, api),
        (r"/api/auth/refresh/?", RefreshHandler, api),
        (r"/api/auth/logout/?", LogoutHandler, api),
        (r"/api/auth/logout-all/?", LogoutAllHandler, api),
        (r"/api/auth/me/?", MeHandler, api),
        (r"/api/stats/?", StatsHandler, api),
        (r"/metrics", MetricsHandler, api),
        (r"/ws", LiveSocket, api),
        (r"/api/openapi\.json", OpenApiHandler, api),
        (r"/healthz", HealthHandler, api),
        (r"/readyz", ReadyHandler, api),
        (r"/api/docs/?()", PageHandler, {"path": str(STATIC_DIR / "docs.html")}),
        (r"/()", PageHandler, {"path": str(STATIC_DIR), "default_filename": "index.html"}),
        (r"/([a-z-]+\.html)", PageHandler, {"path": str(STATIC_DIR)}),
        (r"/static/(.*)", PageHandler, {"path": str(STATIC_DIR)}),
    ]
    ws = services.config.ws
    return LivevoteApplication(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=api,
        websocket_max_message_size=ws.max_message_size,
        websocket_ping_interval=ws.ping_interval or None,
        websocket_ping_timeout=ws.ping_interval or None,
    )


def http_server(app: LivevoteApplication, config: Config) -> HTTPServer:
    """Behind a proxy (server.xheaders), X-Forwarded-For/-Proto name the client and its scheme.
    No connection reads a body past server.max_body_size (handlers/base.py refuses most sooner)."""
    return HTTPServer(app, xheaders=config.server.xheaders, max_body_size=config.server.max_body_size)


def open_store(config: Config, *, serving: bool = True) -> Store:
    """The store the config names; `serving=False` for one-off commands that need no sessions."""
    url = config.store_url
    if url.startswith("sqlite:///"):
        return SqliteStore(sqlite_path(url))
    if is_mongo_url(url):
        if serving and config.redis.url is None:
            raise ConfigError("store.url: a MongoDB store needs redis.url too (sessions and pub/sub live in Redis)")
        try:
            return MongoStore.from_url(url)
        except ValueError as exc:
            raise ConfigError(f"store.url: {exc}") from None
    raise ConfigError(f"store.url: unsupported store {url!r} (expected sqlite:///PATH or mongodb://HOST/DATABASE)")


async def open_backends(config: Config) -> tuple[Backends, bool]:
    """Open the store and, in scaled mode, Redis; True when the store was just created."""
    store = open_store(config)
    created = await store.open()
    if config.redis.url is None:
        assert isinstance(store, SqliteStore)
        backends = Backends(
            store, SqliteSessionStore(store.database), LocalCounters(), LocalBroker(), LocalPresence(), None
        )
    else:
        url, cluster = config.redis.url, config.redis.cluster
        client = await connect_redis(url, cluster)
        backends = Backends(
            store, RedisSessionStore(client), RedisCounters(client),
            ClusterBroker(url) if cluster else RedisBroker(url), RedisPresence(client), client,
        )
    await backends.session_store.open()
    return backends, created


def with_signing_secret(config: Config) -> Config:
    """Replace the placeholder secret by this installation's own (see services/secret_file.py)."""
    if not config.uses_placeholder_secret or config.redis.url is not None:
        return config
    secret = load_or_create_secret(config.server.data_dir)
    return config.model_copy(update={"auth": config.auth.model_copy(update={"secret": secret})})


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
    hub = Hub(backends.store, events, text_frame, config.ws, metrics)
    await hub.start()
    await backends.presence.start(lambda: hub.peer_count)
    metrics.count_sockets(lambda: hub.peer_count)
    metrics.start()
    accounts = AccountService(backends.store, passwords, throttle)
    sessions = SessionService(backends.session_store, accounts, tokens, events, auth)
    await sessions.start()
    return Services(
        config=config,
        backends=backends,
        events=events,
        catalog=CatalogService(backends.store),
        tokens=tokens,
        accounts=accounts,
        sessions=sessions,
        votes=VoteService(backends.store, events, metrics),
        hub=hub,
        token_clock=TokenClock(auth.refresh_ahead, auth.push_tokens),
        stats=StatsService(backends.store, backends.presence),
        metrics=metrics,
    )


async def close_services(services: Services) -> None:
    services.token_clock.close()
    await services.votes.close()
    await services.sessions.close()
    await services.metrics.close()
    await services.backends.close()


async def serve(config: Config, sockets: list[socket.socket] | None = None) -> None:
    """One process: serve until SIGINT or SIGTERM, then stop gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    services = await build_services(config)
    app = make_app(services)
    server = http_server(app, config)
    sockets = sockets or bind_sockets(config.server.port, config.server.host, backlog=LISTEN_BACKLOG)
    server.add_sockets(sockets)
    log.info("livevote listening on http://%s:%s", config.server.host, sockets[0].getsockname()[1])

    await stopping.wait()
    await shut_down(server, app, services)
    log.info("stopped")


async def shut_down(server: HTTPServer, app: LivevoteApplication, services: Services) -> None:
    """Stop accepting, close sockets with 1001, let requests in flight finish, close the backends."""
    log.info("stopping: no new connections, letting %d request(s) finish", app.in_flight)
    server.stop()
    services.hub.close_all()
    if not await app.wait_idle(DRAIN_SECONDS):
        log.warning("%d request(s) still running after %.0f s; closing anyway", app.in_flight, DRAIN_SECONDS)
    await server.close_all_connections()
    await close_services(services)


async def prepare_store(config: Config) -> None:
    """Create, migrate and seed the store once, before worker processes open it."""
    config = with_signing_secret(config)
    backends, created = await open_backends(config)
    try:
        if created and config.server.seed:
            await seed_demo_data(backends.store)
    finally:
        await backends.close()


def run_workers(config: Config) -> int:
    """N processes on one listening socket, sharing nothing but the store and Redis.

    The parent binds and prepares the store once, then supervises the workers
    (workers.py): a worker that dies is replaced, SIGINT/SIGTERM stops them all.
    """
    sockets = bind_sockets(config.server.port, config.server.host, backlog=LISTEN_BACKLOG)
    asyncio.run(prepare_store(config))

    def work() -> None:
        asyncio.run(serve(config, sockets))

    # a graceful stop drains for up to DRAIN_SECONDS, then closes the backends
    return Supervisor(config.server.workers, work, stop_timeout=DRAIN_SECONDS + 5).run()


def parse_args(argv: list[str]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML config file")
    common.add_argument("--host", help="address to listen on")
    common.add_argument("--port", type=int, help="port to listen on")
    common.add_argument("--data-dir", type=Path, help="where the SQLite file lives")
    common.add_argument("--store", help="store URL (default: SQLite under the data dir)")
    common.add_argument("--redis-url", help="Redis for scaled mode (sessions, pub/sub, counters)")
    common.add_argument("--redis-cluster", action="store_true", default=None,
                        help="--redis-url names a node of a Redis Cluster (sharded pub/sub)")
    common.add_argument("--workers", type=int, help="processes on one port, a dead one replaced (needs --redis-url)")
    common.add_argument("--dev", action="store_true", default=None, help="development mode")
    common.add_argument("--no-seed", action="store_true", help="do not add demo data on first start")

    parser = argparse.ArgumentParser(prog="server.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", parents=[common], help="run the server (default)")
    create_user = commands.add_parser("create-user", parents=[common], help="add an account")
    create_user.add_argument("username")
    create_user.add_argument("--admin", action="store_true", help="give it the admin role")
    create_user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    commands.add_parser("reconcile", parents=[common], help="recount every teacher's good/bad counts from the votes")
    if not argv or argv[0] not in commands.choices:
        argv = ["serve", *argv]
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "server.host": args.host,
            "server.port": args.port,
            "server.data_dir": args.data_dir,
            "server.dev": args.dev,
            "store.url": args.store,
            "redis.url": args.redis_url,
            "redis.cluster": args.redis_cluster,
            "server.workers": args.workers,
        }.items()
        if value is not None
    }
    if args.no_seed:
        overrides["server.seed"] = False
    return load_config(args.config, overrides=overrides)


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise DomainError("The two passwords differ.")
    return password


async def create_user(config: Config, username: str, admin: bool, password: str) -> User:
    services = await build_services(config)
    try:
        body = {"username": username, "password": password}
        return await services.accounts.register(body, role="admin" if admin else "user")
    finally:
        await close_services(services)


async def reconcile_counts(config: Config) -> int:
    """Recount every teacher from its votes (say after a crash on a standalone MongoDB); how many were fixed."""
    store = open_store(config, serving=False)
    await store.open()
    try:
        return await store.reconcile()
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(args)
        if args.command == "create-user":
            user = asyncio.run(create_user(config, args.username, args.admin, read_password(args.password_stdin)))
            print(f"created {user.role} {user.username} (id {user.id})")
        elif args.command == "reconcile":
            fixed = asyncio.run(reconcile_counts(config))
            print(f"reconcile: corrected {fixed} teacher{'s' * (fixed != 1)} whose counts differed from the votes"
                  " (recounted, version bumped)" if fixed else "reconcile: all counts agree with the votes; nothing to fix")
        elif config.server.workers > 1:
            return run_workers(config)
        else:
            asyncio.run(serve(config))
    except ConfigError as exc:
        print(f"livevote: {exc}", file=sys.stderr)
        return 2
    except DomainError as exc:
        details = "; ".join(f"{e.field}: {e.message}" for e in getattr(exc, "errors", []))
        print(f"livevote: {exc.detail} {details}".rstrip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
