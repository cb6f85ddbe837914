"""Backend failures become Unavailable (503 on HTTP, `unavailable` on the socket), never a 500."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import redis
from redis.exceptions import RedisError

from services.errors import Unavailable

P = ParamSpec("P")
T = TypeVar("T")

REDIS_PACKAGE = os.path.dirname(redis.__file__) + os.sep


def redis_outage(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"Redis is unreachable ({type(exc).__name__}); try again shortly.") from exc
        except AttributeError as exc:
            if not raised_inside_redis_py(exc.__traceback__):
                raise
            raise Unavailable("Redis is unreachable (its connection was dropped); try again shortly.") from exc

    return translated


def raised_inside_redis_py(traceback: TracebackType | None) -> bool:
    """redis-py 8.1's cluster client drops every node's connections on a failover, also those
    that other commands are writing on; they fail with AttributeError ('NoneType' object has no
    attribute 'writelines'). That one is an outage; an AttributeError of our own is a bug."""
    last = traceback
    while last is not None and last.tb_next is not None:
        last = last.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(REDIS_PACKAGE)
