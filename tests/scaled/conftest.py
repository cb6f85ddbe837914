"""Fixtures of the Redis Cluster suites."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from tests.harness.redis_cluster import ClusterServers


@pytest.fixture
async def cluster_client(redis_cluster: ClusterServers) -> AsyncIterator[RedisCluster]:
    """redis-py's asyncio cluster client from one node's URL, with its slot map loaded."""
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    yield client
    await client.aclose()
