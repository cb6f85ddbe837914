"""Operational endpoints: liveness, readiness and the API description."""

from __future__ import annotations

from redis.exceptions import RedisError

from handlers.base import ApiHandler
from handlers.openapi import openapi_document
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
        try:
            self.write_json(await self.services.stats.snapshot())
        except (OSError, RedisError) as exc:
            raise Unavailable(f"Socket counts are unavailable: {type(exc).__name__}.") from exc
