"""Operational endpoints: liveness, readiness and the API description."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST
from tornado.web import HTTPError

from handlers.base import AllowOn405, ApiHandler
from handlers.openapi import openapi_document
from services.container import Services
from services.errors import Unavailable


class HealthHandler(ApiHandler):
    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(ApiHandler):
    """503 names the backend that failed, and where it is, so that an operator knows what to look at."""

    async def get(self) -> None:
        for backend, ping in self.checks():
            try:
                await ping()
            except Exception as exc:
                raise Unavailable(f"{backend[0].upper()}{backend[1:]} is unreachable.") from exc
        self.write_json({"status": "ready"})

    def checks(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """Each backend in words ("the session store (Redis at 127.0.0.1:6379)"), and its ping."""
        backends, config = self.services.backends, self.services.config
        store = config.store_description
        redis = config.redis_description
        return [
            (f"the store ({store})", backends.store.ping),
            (f"the session store ({redis or store})", backends.session_store.ping),
            (f"the broker ({redis or 'in this process'})", backends.broker.ping),
        ]


class OpenApiHandler(ApiHandler):
    async def get(self) -> None:
        self.write_json(openapi_document())


class StatsHandler(ApiHandler):
    async def get(self) -> None:
        self.write_json(await self.services.stats.snapshot())


class MetricsHandler(AllowOn405):
    """Prometheus text format; `server.metrics: false` hides it (404)."""

    def initialize(self, services: Services) -> None:
        self.services = services

    def get(self) -> None:
        if not self.services.config.server.metrics:
            raise HTTPError(404)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(self.services.metrics.render())
