"""The Redis client that sessions, counters and presence share: one Redis, or a Redis Cluster.

With `redis.cluster: true` the URL names any node of a cluster, whose slot map
redis-py reads and follows (MOVED, failover). Every script of those stores
touches one key only, so none can fail with CROSSSLOT.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import EncodableT

RedisClient = Redis | RedisCluster


class OneKeyScript:
    """A Lua script on one key, sent whole with EVAL each time (Redis caches it compiled).

    Not redis-py's registered scripts: after NOSCRIPT (a replica just promoted has an empty
    script cache) the cluster client loads the script on every master, and one master down
    fails the call even when the key lives elsewhere. Sessions, counters and presence run a
    script a few times per login or heartbeat, so the bytes are nothing. One key per script
    is also what keeps a Redis Cluster from refusing it with CROSSSLOT.
    """

    def __init__(self, client: RedisClient, text: str) -> None:
        self._client = client
        self._text = text

    async def __call__(self, key: str, *args: EncodableT) -> Any:
        return await self._client.eval(self._text, 1, key, *args)

POOL_SIZE = 64
"""Per process (per node on a cluster); a request waits up to TIMEOUT for a free connection."""
TIMEOUT = 2.0


async def connect_redis(url: str, cluster: bool) -> RedisClient:
    """A lost pooled connection (a Redis restart) is replaced once, at once; a Redis that does
    not answer fails after TIMEOUT, as 503, instead of holding requests.

    A cluster client reads the slot map here, before any command: with redis-py 8.1, commands
    that reach a fresh cluster client together (fifty logins at once) fail with AttributeError
    as the client's lazy first read of the map runs under them."""
    if cluster:
        client = RedisCluster.from_url(
            url, max_connections=POOL_SIZE, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
        )
        await client.initialize()
        return client
    pool = BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=TIMEOUT, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError],
    )
    return Redis.from_pool(pool)
