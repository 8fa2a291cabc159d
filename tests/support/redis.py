"""The machine's Redis for the cluster governor's tests, one key prefix per test.

Tests never stop the machine's Redis: "Redis is down" is a URL where nothing listens.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from lamina.store.redis import RedisLeases, open_redis_leases
from tests.support.ports import free_port

# The machine's Redis (started before the session); LAMINA_TEST_REDIS points elsewhere.
REDIS_URL = os.environ.get("LAMINA_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    return f"lamina-test:{uuid.uuid4().hex[:12]}:"


def dead_url() -> str:
    """A Redis URL on a port where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


def delete_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Remove what a test left under `prefix`."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


@contextmanager
def nodes(count: int, prefix: str | None = None) -> Iterator[list[RedisLeases]]:
    """`count` nodes' leases (each its own client and connections) under one prefix,
    closed and deleted after."""
    prefix = prefix or unique_prefix()
    opened = [open_redis_leases(REDIS_URL, prefix=prefix) for _ in range(count)]
    try:
        yield opened
    finally:
        for leases in opened:
            leases.close()
        delete_prefix(prefix)
