"""livevote: a realtime voting server on Tornado.

    python server.py [serve] [--config FILE] [--host H] [--port P] [--data-dir D] [--store URL]
                     [--redis-url URL] [--redis-cluster] [--workers N] [--dev] [--no-seed]
    python server.py create-user NAME [--admin] [--password-stdin] [--config FILE] [--data-dir D] [--store URL]
                     [--redis-url URL] [--redis-cluster] [--no-seed]
    python server.py set-role NAME user|admin [--config FILE] [--data-dir D] [--store URL]
    python server.py reconcile [--config FILE] [--data-dir D] [--store URL]
    python server.py migrate [--config FILE] [--data-dir D] [--store URL] [--no-seed]

The command line, serving one process or N workers, and the sub-commands. The
application is handlers/app.py's `make_app(services)`; the services come from
services/wiring.py's `build_services(config)`. The tests use both, exactly as
`serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import logging
import os
import resource
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from handlers.app import LivevoteApplication, http_server, make_app
from services.audit import COMMAND_LINE
from services.config import Config, ConfigError, ConfigSources, load_config_and_sources
from services.container import Services
from services.errors import DomainError, Invalid
from services.gc_pauses import Freezer
from services.models import User
from services.schemas import ROLES, Registration, parse
from services.wiring import (
    CLOSE_SECONDS,
    Unreachable,
    build_services,
    close_services,
    failure_reason,
    migrate_store,
    open_reachable,
    open_store_to_reconcile,
    prepare_store,
)
from services.workers import Supervisor

log = logging.getLogger("livevote")

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "config.yaml"
DRAIN_SECONDS = 10.0
LISTEN_BACKLOG = 4096
"""Connections the kernel queues before accept (it caps this at net.core.somaxconn, 4096 by
default since Linux 5.4): pages that come back while the process starts wait there, where past
it their SYNs are dropped and they try again only a second or three later."""


class UsageError(Exception):
    """The command cannot run as it was given: one line, exit 2."""


def listen(config: Config) -> list[socket.socket]:
    """Bind first, before anything is created in the data directory: a port in use is then
    one line, and leaves nothing behind."""
    host, port = config.server.host, config.server.port
    try:
        return bind_sockets(port, host, backlog=LISTEN_BACKLOG)
    except socket.gaierror:  # neither an address nor a name that resolves: errno is a resolver code
        raise ConfigError(f"cannot listen on {host}:{port}: not an address of this host", "server.host") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{host}:{port} is already in use", "server.port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"cannot listen on {host}:{port}: not an address of this host", "server.host") from None
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
        raise_open_file_limit()
    app = make_app(services)
    server = http_server(app, services)
    Freezer().start()
    server.add_sockets(sockets)
    who = f"worker {worker} (pid {os.getpid()})" if worker else "livevote"
    log.info("%s listening on http://%s:%s", who, config.server.host, sockets[0].getsockname()[1])
    log.info("%s accepts up to %d connections at once (server.max_connections)", who, server.max_connections)

    await stopping.wait()
    await shut_down(server, app, services)
    log.info("stopped")


def raise_open_file_limit() -> None:
    """Every connection is a file descriptor, and the usual soft limit (1,024) is far below what
    one process can serve: raise it to the hard limit, once the start has succeeded (a failed
    start says one line), before serving; workers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files: could not raise the soft limit %d to the hard limit %s: %s", soft, hard, exc)
            return
        log.info("open files: soft limit raised from %d to %s (the hard limit)", soft, _limit(hard))
    else:
        log.info("open files: limit %s (soft and hard)", _limit(hard))


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def log_backends(config: Config) -> None:
    """Say what this server runs on, once its backends are open (no credentials: see Config.store_description)."""
    redis = config.redis_description or "no Redis (embedded mode)"
    log.info("data directory %s; store: %s; %s", config.server.data_dir.resolve(), config.store_description, redis)


async def shut_down(server: HTTPServer, app: LivevoteApplication, services: Services) -> None:
    """Stop accepting, close sockets with 1001, let requests in flight finish, close the backends."""
    log.info("stopping: no new connections, letting %d request(s) finish", app.in_flight.count)
    server.stop()
    services.hub.close_all()
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            await app.in_flight.idle()
    except TimeoutError:
        log.warning("%d request(s) still running after %.0f s; closing anyway", app.in_flight.count, DRAIN_SECONDS)
    await server.close_all_connections()
    await close_services(services)


def run_workers(config: Config, sockets: list[socket.socket]) -> int:
    """N processes on one listening socket, sharing nothing but the store and Redis.

    The parent prepares the store once, then supervises the workers (services/workers.py):
    a worker that dies is replaced under its number, SIGINT/SIGTERM stops them all.
    """
    asyncio.run(prepare_store(config))
    log_backends(config)
    raise_open_file_limit()
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
    set_role = commands.add_parser("set-role", parents=[flag_parser(*STORE_KEYS)], help="change an account's role",
                                   description="Make an account a user or an admin (docs/api.md: when it bites).")
    set_role.add_argument("username", metavar="NAME", help="the account's username")
    set_role.add_argument("role", metavar="ROLE", help=" or ".join(ROLES))
    commands.add_parser(
        "reconcile", parents=[flag_parser(*STORE_KEYS)],
        help="recount every teacher's good/bad counts from the votes",
        description="Recount every teacher's good/bad counts from the vote records of an existing store.",
    )
    commands.add_parser(
        "migrate", parents=[flag_parser(*STORE_KEYS, "server.seed")],
        help="bring the store's schema up to date, then exit",
        description="Apply the store's pending schema migrations, as every start does, for deployments that"
                    " migrate before rolling a new version out (a store this creates is seeded unless --no-seed)."
                    " Safe while other processes start or serve.",
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


async def set_role(config: Config, username: str, role: str) -> User:
    services = await build_services(config)
    try:
        user = await services.accounts.find(username)
        return await services.accounts.set_role(user.id, {"role": role}, COMMAND_LINE)
    finally:
        await close_services(services)


async def reconcile_counts(config: Config) -> int:
    """Recount every teacher from its votes (say after a crash on a standalone MongoDB); how many were fixed."""
    store = open_store_to_reconcile(config)
    await open_reachable(store, config)
    try:
        return await store.reconcile()
    finally:
        await store.close()


def run_command(args: argparse.Namespace, config: Config) -> int:
    if args.command == "create-user":
        password = read_password(args.password_stdin)
        parse(Registration, {"username": args.username, "password": password})  # before the store is touched
        user = asyncio.run(create_user(config, args.username, args.admin, password))
        print(f"created {user.role} {user.username} (id {user.id})")
    elif args.command == "set-role":
        if args.role not in ROLES:
            raise UsageError(f"ROLE is {' or '.join(ROLES)}, not {args.role!r}")
        user = asyncio.run(set_role(config, args.username, args.role))
        print(f"{user.username} (id {user.id}) is now {user.role}")
    elif args.command == "reconcile":
        fixed = asyncio.run(reconcile_counts(config))
        print(f"reconcile: corrected {fixed} teacher{'s' * (fixed != 1)} whose counts differed from the votes"
              " (recounted, version bumped)" if fixed else "reconcile: all counts agree with the votes; nothing to fix")
    elif args.command == "migrate":
        created = asyncio.run(migrate_store(config))
        seeded = " and seeded it with demo data" if created and config.server.seed else ""
        print(f"migrate: created the schema of {config.store_description}{seeded}" if created
              else f"migrate: the schema of {config.store_description} is up to date")
    else:
        sockets = listen(config)
        if config.server.workers > 1:
            return run_workers(config, sockets)
        asyncio.run(serve(config, sockets))
    return 0


ARGUMENT_NAMES = {"username": "NAME", "password": "password"}
"""create-user's input in the words of its command line: the API's checks name body fields."""


def main(argv: list[str] | None = None) -> int:
    """Exit 2 for a configuration or usage error (an unfit NAME or password too), 1 for a
    backend that cannot be reached or a refused request; either way one line on stderr."""
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
    except Invalid as exc:
        return fail("; ".join(f"{ARGUMENT_NAMES.get(e.field, e.field)}: {e.message[:1].lower()}{e.message[1:]}"
                              for e in exc.errors), 2)
    except DomainError as exc:
        return fail(exc.detail, 1)


def fail(message: str, code: int) -> int:
    print(f"livevote: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
