"""Operational endpoints: liveness, readiness and the API description."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from tornado.web import HTTPError

from handlers.base import AllowOn405, ApiHandler
from handlers.openapi import openapi_document
from services.container import Services
from services.errors import Unavailable


class HealthHandler(ApiHandler):
    async def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(ApiHandler):
    async def get(self) -> None:
        backends = self.services.backends
        for name, ping in (("store", backends.store.ping), ("sessions", backends.session_store.ping),
                           ("broker", backends.broker.ping)):
            try:
                await ping()
            except Exception as exc:
                raise Unavailable(f"The {name} is not reachable: {type(exc).__name__}.") from exc
        self.write_json({"status": "ready"})


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
