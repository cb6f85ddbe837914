"""livevote: a realtime voting server on Tornado.

    python server.py [serve] [--config FILE] [--host H] [--port P] [--data-dir D] [--dev] [--no-seed]

`make_app(services)` builds the Tornado application from running services;
`build_services(config)` opens the backends the config names. The tests use
both, exactly as `serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import StaticFileHandler

from handlers.base import LivevoteApplication, NotFoundHandler
from handlers.catalog import (
    SubjectHandler,
    SubjectListHandler,
    SubjectTeachersHandler,
    TeacherHandler,
    TeacherListHandler,
)
from handlers.ops import HealthHandler, OpenApiHandler, ReadyHandler
from services.backends.sqlite_store import SqliteStore, sqlite_path
from services.backends.store import Store
from services.catalog import CatalogService
from services.config import Config, ConfigError, load_config
from services.container import Services
from services.seed import seed_demo_data

log = logging.getLogger("livevote")

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "config.yaml"
STATIC_DIR = ROOT / "static"
DRAIN_SECONDS = 10.0
HARD_BODY_LIMIT = 64 * 1024 * 1024


def make_app(services: Services) -> LivevoteApplication:
    api = {"services": services}
    routes: list[tuple[str, Any, dict[str, Any]]] = [
        (r"/api/subjects/?", SubjectListHandler, api),
        (r"/api/subjects/(\d+)/?", SubjectHandler, api),
        (r"/api/subjects/(\d+)/teachers/?", SubjectTeachersHandler, api),
        (r"/api/teachers/?", TeacherListHandler, api),
        (r"/api/teachers/(\d+)/?", TeacherHandler, api),
        (r"/api/openapi\.json", OpenApiHandler, api),
        (r"/healthz", HealthHandler, api),
        (r"/readyz", ReadyHandler, api),
        (r"/static/(.*)", StaticFileHandler, {"path": str(STATIC_DIR)}),
    ]
    return LivevoteApplication(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=api,
    )


def open_store(config: Config) -> Store:
    url = config.store_url
    if url.startswith("sqlite:///"):
        return SqliteStore(sqlite_path(url))
    raise ConfigError(f"store.url: unsupported store {url!r} (expected sqlite:///PATH)")


async def build_services(config: Config) -> Services:
    store = open_store(config)
    created = await store.open()
    if created and config.server.seed:
        await seed_demo_data(store)
        log.info("seeded demo subjects and teachers")
    return Services(config=config, store=store, catalog=CatalogService(store))


async def close_services(services: Services) -> None:
    await services.store.close()


async def serve(config: Config) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    services = await build_services(config)
    app = make_app(services)
    server = HTTPServer(app, xheaders=False, max_body_size=HARD_BODY_LIMIT)
    sockets = bind_sockets(config.server.port, config.server.host)
    server.add_sockets(sockets)
    log.info("livevote listening on http://%s:%s", config.server.host, sockets[0].getsockname()[1])

    await stopping.wait()

    log.info("stopping: no new connections, letting %d request(s) finish", app.in_flight)
    server.stop()
    if not await app.wait_idle(DRAIN_SECONDS):
        log.warning("%d request(s) still running after %.0f s; closing anyway", app.in_flight, DRAIN_SECONDS)
    await server.close_all_connections()
    await close_services(services)
    log.info("stopped")


def parse_args(argv: list[str]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML config file")
    common.add_argument("--host", help="address to listen on")
    common.add_argument("--port", type=int, help="port to listen on")
    common.add_argument("--data-dir", type=Path, help="where the SQLite file lives")
    common.add_argument("--store", help="store URL (default: SQLite under the data dir)")
    common.add_argument("--dev", action="store_true", default=None, help="development mode")
    common.add_argument("--no-seed", action="store_true", help="do not add demo data on first start")

    parser = argparse.ArgumentParser(prog="server.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", parents=[common], help="run the server (default)")
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
        }.items()
        if value is not None
    }
    if args.no_seed:
        overrides["server.seed"] = False
    return load_config(args.config, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(args)
        asyncio.run(serve(config))
    except ConfigError as exc:
        print(f"livevote: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
