"""Redis: what the nodes of a cluster coordinate through (`lamina serve --redis redis://…`).

The only package that imports redis-py (an import-linter contract says so). What is kept here
is soft state: it expires by itself and can be lost with Redis, at the price of admitting a
little more than the limit until the leases of in-flight invocations are back.
"""

from __future__ import annotations

from lamina.store.redis.leases import RedisLeases, open_redis_leases
from lamina.store.redis.nodes import RedisNodeRegistry, open_redis_nodes

__all__ = ["RedisLeases", "RedisNodeRegistry", "open_redis_leases", "open_redis_nodes"]
