"""Concurrency leases in Redis: one sorted set per pool, a lease's score its expiry (ms).

One Lua script drops what expired, checks every limited pool and enters the lease in all of
them, so two nodes never both take the last slot. Expiry uses Redis's clock (`TIME`), the one
clock all nodes share. A pool's key expires with its longest lease, so nothing is left behind
when the nodes using it are gone.

The calls are synchronous: admission never awaits, and one round trip on loopback costs tens
of microseconds (bench/redis_governor.py). Short socket timeouts and no retries bound what an
unreachable Redis costs a caller, and after a failure `take` refuses at once for a moment
instead of blocking every caller on a dead address.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lamina.store.protocols.leases import LeaseRefused, LeasesUnavailable

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "lamina:leases:"
# Bounds on what a Redis that does not answer costs the caller (the event loop's thread).
CONNECT_TIMEOUT_S = 0.25
SOCKET_TIMEOUT_S = 0.25
# After a failure, `take` refuses without asking for this long.
RETRY_AFTER_S = 0.5
# Releases that failed are retried later; past this many the oldest are left to lapse.
RELEASES_PER_TAKE = 16
MAX_UNRELEASED = 10_000

# KEYS: the pools. ARGV: token, ttl (ms), then one limit per pool (-1: none).
# Returns 0 when the lease was taken, else the (1-based) index of the first full pool.
# Every pool is purged of what expired, limited or not: a busy pool's key never expires,
# and the leases of a dead node must not pile up in it.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local limit = tonumber(ARGV[i + 2])
    if limit >= 0 and redis.call('ZCARD', key) >= limit then
        return i
    end
end
for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, now + ttl, ARGV[1])
    if redis.call('PTTL', key) < ttl then
        redis.call('PEXPIRE', key, ttl)
    end
end
return 0
"""

_GIVE_BACK = """
for _, key in ipairs(KEYS) do
    redis.call('ZREM', key, ARGV[1])
end
return 0
"""

_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


class RedisLeases:
    """`ConcurrencyLeases` in one Redis, under a key prefix (one per cluster)."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._take = client.register_script(_TAKE)
        self._give_back = client.register_script(_GIVE_BACK)
        self._count = client.register_script(_COUNT)
        # Tokens: unique per node, cheap per lease.
        self._node = uuid.uuid4().hex[:12]
        self._sequence = itertools.count()
        self._down_until = 0.0
        self._unreleased: deque[tuple[list[str], str]] = deque(maxlen=MAX_UNRELEASED)
        self._lock = threading.Lock()

    def take(self, pools: Sequence[tuple[str, int | None]], ttl_s: float) -> str:
        if self._down_until and time.monotonic() < self._down_until:
            raise LeasesUnavailable("Redis did not answer a moment ago")
        if self._unreleased:
            self._retry_releases()
        token = f"{self._node}:{next(self._sequence)}"
        keys = [self._prefix + name for name, _ in pools]
        limits = [-1 if limit is None else limit for _, limit in pools]
        try:
            full = self._take(keys=keys, args=[token, max(1, int(ttl_s * 1000)), *limits])
        except redis.RedisError as error:
            self._down_until = time.monotonic() + RETRY_AFTER_S
            raise LeasesUnavailable(f"Redis: {error}") from error
        self._down_until = 0.0
        if full:
            raise LeaseRefused(pools[int(full) - 1][0])
        return token

    def give_back(self, pools: Sequence[str], token: str) -> None:
        keys = [self._prefix + name for name in pools]
        if self._down_until and time.monotonic() < self._down_until:
            self._unreleased.append((keys, token))  # no waiting on a Redis just found dead
            return
        try:
            self._give_back(keys=keys, args=[token])
        except redis.RedisError as error:
            log.warning("Redis: lease %s not released now (%s); retried later", token, error)
            self._unreleased.append((keys, token))

    def count(self, pool: str) -> int:
        try:
            return int(self._count(keys=[self._prefix + pool]))
        except redis.RedisError as error:
            raise LeasesUnavailable(f"Redis: {error}") from error

    def close(self) -> None:
        self._client.close()

    def _retry_releases(self) -> None:
        """A few of the releases a Redis outage left behind, per admission: the drain must
        not hold the event loop for thousands of round trips at once."""
        with self._lock:
            for _ in range(min(len(self._unreleased), RELEASES_PER_TAKE)):
                keys, token = self._unreleased[0]
                try:
                    self._give_back(keys=keys, args=[token])
                except redis.RedisError:
                    return  # still down: `take` finds out and refuses
                self._unreleased.popleft()


def open_redis_leases(url: str, *, prefix: str = DEFAULT_PREFIX) -> RedisLeases:
    """Leases in the Redis at `url` (`redis://host:port/db`). Connects lazily: an
    unreachable Redis refuses admissions, it does not stop the node from starting."""
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return RedisLeases(client, prefix)
