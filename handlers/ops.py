"""Operational endpoints: liveness, readiness, the cluster's totals, metrics and the API description."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from tornado.web import HTTPError
from typing_extensions import TypedDict

from handlers.base import AllowOn405, ApiHandler, HeadAsGet
from handlers.openapi import Operation, openapi_document, served_routes
from services.container import Services
from services.errors import Unavailable
from services.stats import StatsJson


class HealthJson(TypedDict):
    status: str


ALIVE: HealthJson = {"status": "ok"}
READY: HealthJson = {"status": "ready"}


class HealthHandler(ApiHandler):
    @Operation("getHealth", "operations", "Liveness", ok="The process serves", returns=HealthJson)
    def get(self) -> None:
        self.write_json(ALIVE)


class ReadyHandler(ApiHandler):
    """503 names the backend that failed, and where it is, so that an operator knows what to look at."""

    @Operation("getReadiness", "operations", "Readiness: store, sessions and broker reachable", ok="Ready",
               returns=HealthJson, errors=(503,),
               notes={503: "The store, the session store or the broker is not reachable"})
    async def get(self) -> None:
        for backend, ping in self.checks():
            try:
                await ping()
            except Exception as exc:
                raise Unavailable(f"{backend[0].upper()}{backend[1:]} is unreachable.") from exc
        self.write_json(READY)

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
    """The document describes the routes of the application that serves it."""

    @Operation("getOpenApiDocument", "operations", "This document", ok="OpenAPI 3.1", returns=dict[str, Any])
    async def get(self) -> None:
        self.write_json(openapi_document(served_routes(self.application)))


class StatsHandler(ApiHandler):
    @Operation("getStats", "live", "Votes per subject and open sockets, cluster-wide",
               ok="The totals the dashboard starts from", returns=StatsJson, errors=(503,))
    async def get(self) -> None:
        self.write_json(await self.services.stats.snapshot(await self.reader()))


class MetricsHandler(HeadAsGet, AllowOn405):
    """Prometheus text format; `server.metrics: false` hides it (404)."""

    def initialize(self, services: Services) -> None:
        self.services = services

    @Operation("getMetrics", "operations", "Prometheus metrics of this process", ok="Prometheus text format",
               media_type="text/plain", plain={404: "Metrics are turned off (server.metrics: false)"})
    def get(self) -> None:
        if not self.services.config.server.metrics:
            raise HTTPError(404)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(self.services.metrics.render())
