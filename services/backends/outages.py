"""Backend failures become Unavailable (503 on HTTP, `unavailable` on the socket), never a 500."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import RedisError

from services.errors import Unavailable

P = ParamSpec("P")
T = TypeVar("T")


def redis_outage(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"Redis is unreachable ({type(exc).__name__}); try again shortly.") from exc

    return translated
