"""livevote: a realtime voting server on Tornado.

    python server.py [serve] [--config FILE] [--host H] [--port P] [--data-dir D] [--store URL]
                     [--redis-url URL] [--redis-cluster] [--workers N] [--dev] [--no-seed]
    python server.py create-user NAME [--admin] [--password-stdin] [--config FILE] [--data-dir D] [--store URL]
                     [--redis-url URL] [--redis-cluster] [--no-seed]
    python server.py reconcile [--config FILE] [--data-dir D] [--store URL]

`make_app(services)` builds the Tornado application from running services;
`build_services(config)` opens the backends the config names. The tests use
both, exactly as `serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from redis.exceptions import RedisClusterException, RedisError
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import RequestHandler

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
from handlers.auth import (
    LoginHandler,
    LogoutAllHandler,
    LogoutHandler,
    MeHandler,
    RefreshHandler,
    RegisterHandler,
    SessionCookieHandler,
    ViewerHandler,
)
from handlers.protocol import text_frame
from handlers.votes import VoteHandler
from services.auth.accounts import AccountService
from services.backends.broker import LocalBroker
from services.backends.counters import LocalCounters
from services.backends.store_mongo import MongoStore, is_mongo_url
from services.backends.presence import LocalPresence
from services.backends.broker_redis_cluster import ClusterBroker
from services.backends.broker_redis import RedisBroker
from services.backends.redis_client import RedisClient, connect_redis
from services.backends.counters_redis import RedisCounters
from services.backends.presence_redis import RedisPresence
from services.backends.sessions_redis import RedisSessionStore
from services.backends.sessions_sqlite import SqliteSessionStore
from services.backends.store_sqlite import SqliteStore, sqlite_path
from services.backends.store import Store
from services.catalog import CatalogService
from services.config import Config, ConfigError, ConfigSources, load_config_and_sources
from services.container import Backends, Services
from services.errors import DomainError
from services.events import EventBus
from services.live.heartbeat import Heartbeat
from services.live.hub import Hub
from services.metrics import Metrics
from services.models import User
from services.auth.passwords import Passwords
from services.auth.secret_file import load_or_create_secret
from services.seed import seed_demo_data
from services.auth.sessions import SessionService
from services.stats import StatsService
from services.auth.throttle import LoginThrottle
from services.live.token_clock import TokenClock
from services.auth.tokens import TokenService
from services.votes import VoteService
from services.live.presence import WatchingService
from services.workers import Supervisor

log = logging.getLogger("livevote")

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "config.yaml"
STATIC_DIR = ROOT / "static"
DRAIN_SECONDS = 10.0
CLOSE_SECONDS = 5.0
"""How long closing the services may take at shutdown: a Redis node that is down or failing
over must not hold the exit (redis-py retries its commands for longer)."""
LISTEN_BACKLOG = 2048
"""Connections the kernel queues before accept: a reconnect storm of pages must not see SYNs dropped."""


class Unreachable(Exception):
    """A backend that config key `key` names cannot be reached at start: one line, exit 1."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class UsageError(Exception):
    """The command cannot run as it was given: one line, exit 2."""


def make_app(services: Services) -> LivevoteApplication:
    api = {"services": services}
    # tornado tries the rules in order: the most requested come first (probes, votes, sockets)
    routes: list[tuple[str, Any, dict[str, Any]]] = [
        (r"/healthz", HealthHandler, api),
        (r"/api/teachers/([0-9]+)/vote/?", VoteHandler, api),
        (r"/ws", LiveSocket, api),
        (r"/api/subjects/?", SubjectListHandler, api),
        (r"/api/subjects/([0-9]+)/?", SubjectHandler, api),
        (r"/api/subjects/([0-9]+)/teachers/?", SubjectTeachersHandler, api),
        (r"/api/teachers/?", TeacherListHandler, api),
        (r"/api/teachers/([0-9]+)/?", TeacherHandler, api),
        (r"/api/auth/register/?", RegisterHandler, api),
        (r"/api/auth/login/?", LoginHandler, api),
        (r"/api/auth/refresh/?", RefreshHandler, api),
        (r"/api/auth/logout/?", LogoutHandler, api),
        (r"/api/auth/logout-all/?", LogoutAllHandler, api),
        (r"/api/auth/viewer/?", ViewerHandler, api),
        (r"/api/auth/session/?", SessionCookieHandler, api),
        (r"/api/auth/me/?", MeHandler, api),
        (r"/api/stats/?", StatsHandler, api),
        (r"/metrics", MetricsHandler, api),
        (r"/api/openapi\.json", OpenApiHandler, api),
        (r"/readyz", ReadyHandler, api),
        (r"/api/docs/?()", PageHandler, {"path": str(STATIC_DIR / "docs.html")}),
        (r"/()", PageHandler, {"path": str(STATIC_DIR), "default_filename": "index.html"}),
        (r"/([a-z-]+\.html)", PageHandler, {"path": str(STATIC_DIR)}),
        (r"/static/(.*)", PageHandler, {"path": str(STATIC_DIR)}),
    ]
    # pings: services/live/heartbeat.py, not tornado's task per socket
    return LivevoteApplication(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=api,
        websocket_max_message_size=services.config.ws.max_message_size,
        **({} if services.config.server.access_log else {"log_function": _no_access_log}),
    )


def _no_access_log(_handler: RequestHandler) -> None:
    """server.access_log: false. Errors are still logged where they happen."""


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
            raise ConfigError("a MongoDB store needs redis.url too (sessions and pub/sub live in Redis)", "store.url")
        try:
            return MongoStore.from_url(url)
        except ValueError as exc:
            raise ConfigError(str(exc), "store.url") from None
    raise ConfigError(f"unsupported store {url!r} (expected sqlite:///PATH or mongodb://HOST/DATABASE)", "store.url")


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
        client = await open_redis(config)
        backends = Backends(
            store, RedisSessionStore(client), RedisCounters(client),
            ClusterBroker(url) if cluster else RedisBroker(url),
            RedisPresence(client, lifetime=3 * config.ws.watching_interval), client,
        )
    await backends.session_store.open()
    return backends, created


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
    watching = WatchingService(backends.presence, hub, config.ws.watching_interval)
    await watching.start()
    metrics.count_sockets(lambda: hub.peer_count)
    metrics.start()
    accounts = AccountService(backends.store, passwords, throttle)
    sessions = SessionService(backends.session_store, accounts, tokens, events, auth, throttle)
    await sessions.start()
    return Services(
        config=config,
        backends=backends,
        events=events,
        catalog=CatalogService(backends.store, events),
        tokens=tokens,
        accounts=accounts,
        sessions=sessions,
        votes=VoteService(backends.store, events, metrics),
        hub=hub,
        token_clock=TokenClock(auth.refresh_ahead, auth.push_tokens),
        heartbeat=Heartbeat(config.ws.ping_interval),
        stats=StatsService(backends.store, watching),
        watching=watching,
        metrics=metrics,
    )


async def close_services(services: Services) -> None:
    services.token_clock.close()
    services.heartbeat.close()
    closing = {
        "the vote publisher": services.votes.close,
        "the session service": services.sessions.close,
        "presence": services.watching.close,
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


def listen(config: Config) -> list[socket.socket]:
    """Bind first, before anything is created in the data directory: a port in use is then
    one line, and leaves nothing behind."""
    host, port = config.server.host, config.server.port
    try:
        return bind_sockets(port, host, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{host}:{port} is already in use", "server.port") from None
        key = "server.port" if exc.errno == errno.EACCES else "server.host"
        raise ConfigError(f"cannot listen on {host}:{port}: {failure_reason(exc)}", key) from None


async def serve(config: Config, sockets: list[socket.socket], worker: str | None = None) -> None:
    """One process: serve until SIGINT or SIGTERM, then stop gracefully. `worker` ("2/3")
    names a worker of --workers, whose parent has already logged the backends."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    services = await build_services(config)
    if worker is None:
        log_backends(config)
    app = make_app(services)
    server = http_server(app, config)
    server.add_sockets(sockets)
    who = f"worker {worker} (pid {os.getpid()})" if worker else "livevote"
    log.info("%s listening on http://%s:%s", who, config.server.host, sockets[0].getsockname()[1])

    await stopping.wait()
    await shut_down(server, app, services)
    log.info("stopped")


def log_backends(config: Config) -> None:
    """Say what this server runs on, once its backends are open (no credentials: see Config.store_description)."""
    redis = config.redis_description or "no Redis (embedded mode)"
    log.info("data directory %s; store: %s; %s", config.server.data_dir.resolve(), config.store_description, redis)


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


def run_workers(config: Config, sockets: list[socket.socket]) -> int:
    """N processes on one listening socket, sharing nothing but the store and Redis.

    The parent prepares the store once, then supervises the workers (services/workers.py):
    a worker that dies is replaced under its number, SIGINT/SIGTERM stops them all.
    """
    asyncio.run(prepare_store(config))
    log_backends(config)
    count = config.server.workers

    def work(number: int) -> None:
        asyncio.run(serve(config, sockets, worker=f"{number}/{count}"))

    # a graceful stop drains for up to DRAIN_SECONDS, then closes the services within CLOSE_SECONDS
    return Supervisor(count, work, stop_timeout=DRAIN_SECONDS + CLOSE_SECONDS + 2).run()


CONFIG_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "server.host": ("--host", {"metavar": "HOST", "help": "address to listen on"}),
    "server.port": ("--port", {"metavar": "PORT", "type": int, "help": "port to listen on"}),
    "server.workers": ("--workers", {"metavar": "N", "type": int,
                                     "help": "processes on one port, a dead one replaced (needs --redis-url)"}),
    "server.dev": ("--dev", {"action": "store_true", "default": None, "help": "development mode"}),
    "server.seed": ("--no-seed", {"action": "store_false", "default": None,
                                  "help": "do not add demo data when the store is created"}),
    "server.data_dir": ("--data-dir", {"metavar": "DIR", "type": Path,
                                       "help": "where the SQLite file and secret.key live (default ./data)"}),
    "store.url": ("--store", {"metavar": "URL", "help": "store URL (default: SQLite under the data dir)"}),
    "redis.url": ("--redis-url", {"metavar": "URL", "help": "Redis for scaled mode (sessions, pub/sub, counters)"}),
    "redis.cluster": ("--redis-cluster", {"action": "store_true", "default": None,
                                          "help": "--redis-url names a node of a Redis Cluster (sharded pub/sub)"}),
}
"""The flags that set config keys: config key -> (flag, argparse options). The parsed value lands
under the key itself, so that config_from_args and messages need no second table."""

STORE_KEYS = ("server.data_dir", "store.url")
REDIS_KEYS = ("redis.url", "redis.cluster")


def flag_parser(*keys: str) -> argparse.ArgumentParser:
    """A parent parser with --config and the flags of these config keys."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE",
                        help="YAML config file (default: config.yaml beside server.py)")
    for key in keys:
        flag, options = CONFIG_FLAGS[key]
        parser.add_argument(flag, dest=key, **options)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Each sub-command takes only the flags it uses."""
    parser = argparse.ArgumentParser(
        prog="server.py", description=__doc__.splitlines()[0],
        epilog="Without a sub-command, server.py serves: `server.py --port 8001` is `server.py serve --port 8001`.",
    )
    commands = parser.add_subparsers(dest="command", title="sub-commands")
    commands.add_parser("serve", parents=[flag_parser(*CONFIG_FLAGS)], help="run the server (the default)",
                        description="Run the server until SIGINT or SIGTERM.")
    create_user = commands.add_parser(
        "create-user", parents=[flag_parser(*STORE_KEYS, *REDIS_KEYS, "server.seed")], help="add an account",
        description="Add an account to the store (created, and seeded unless --no-seed, if it does not exist yet)."
                    " The password is asked for on the terminal, or read from standard input.",
    )
    create_user.add_argument("username", metavar="NAME", help="the account's username")
    create_user.add_argument("--admin", action="store_true", help="give it the admin role")
    create_user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    commands.add_parser(
        "reconcile", parents=[flag_parser(*STORE_KEYS)],
        help="recount every teacher's good/bad counts from the votes",
        description="Recount every teacher's good/bad counts from the vote records of an existing store.",
    )
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """No sub-command means serve, flags and all; `--help` alone is the overview."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> tuple[Config, ConfigSources]:
    """The config of file, environment and the flags given, and where each key was set."""
    overrides = {key: value for key, value in vars(args).items() if key in CONFIG_FLAGS and value is not None}
    flags = {key: CONFIG_FLAGS[key][0] for key in overrides}
    return load_config_and_sources(args.config, overrides=overrides, flags=flags)


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not has_terminal():
        raise UsageError("no terminal to ask the password on; use --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise DomainError("The two passwords differ.")
    return password


def has_terminal() -> bool:
    """Whether getpass can ask on a terminal (it opens /dev/tty, whatever stdin is)."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


async def create_user(config: Config, username: str, admin: bool, password: str) -> User:
    services = await build_services(config)
    try:
        body = {"username": username, "password": password}
        return await services.accounts.register(body, role="admin" if admin else "user")
    finally:
        await close_services(services)


async def reconcile_counts(config: Config) -> int:
    """Recount every teacher from its votes (say after a crash on a standalone MongoDB); how many were fixed.

    A SQLite file that does not exist is refused rather than created: an empty store has nothing to
    reconcile, and a new file where the operator expected the real one would hide a wrong path."""
    url = config.store_url
    if url.startswith("sqlite:///") and not sqlite_path(url).is_file():
        raise ConfigError(f"no database at {sqlite_path(url)}; nothing to reconcile",
                          "store.url" if config.store.url else "server.data_dir")
    store = open_store(config, serving=False)
    await store.open()
    try:
        return await store.reconcile()
    finally:
        await store.close()


def run_command(args: argparse.Namespace, config: Config) -> int:
    if args.command == "create-user":
        user = asyncio.run(create_user(config, args.username, args.admin, read_password(args.password_stdin)))
        print(f"created {user.role} {user.username} (id {user.id})")
    elif args.command == "reconcile":
        fixed = asyncio.run(reconcile_counts(config))
        print(f"reconcile: corrected {fixed} teacher{'s' * (fixed != 1)} whose counts differed from the votes"
              " (recounted, version bumped)" if fixed else "reconcile: all counts agree with the votes; nothing to fix")
    else:
        sockets = listen(config)
        if config.server.workers > 1:
            return run_workers(config, sockets)
        asyncio.run(serve(config, sockets))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit 2 for a configuration or usage error, 1 for a backend that cannot be reached or a
    refused request; either way one line on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sources = ConfigSources()
    try:
        config, sources = config_from_args(args)
        return run_command(args, config)
    except ConfigError as exc:
        return fail(sources.explain(exc), 2)
    except UsageError as exc:
        return fail(str(exc), 2)
    except Unreachable as exc:
        return fail(f"{sources.name(exc.key)}: {exc}", 1)
    except DomainError as exc:
        details = "; ".join(f"{e.field}: {e.message}" for e in getattr(exc, "errors", []))
        return fail(f"{exc.detail} {details}".rstrip(), 1)


def fail(message: str, code: int) -> int:
    print(f"livevote: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
