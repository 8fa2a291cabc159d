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
# After Redis lost its keys (a restart), nothing is admitted for this long: every node enters
# the leases it holds again first (each looks every WATCH_S).
HOLD_MS = 2000
WATCH_S = 0.25
# The generation key outlives every lease but not an idle cluster forever: each take renews
# it. Should it lapse in a long quiet spell, the next take pays one hold.
GENERATION_TTL_MS = 7 * 24 * 3600 * 1000
MAX_UNRELEASED = 10_000

# Every pool is purged of what expired, limited or not: a busy pool's key never expires,
# and the leases of a dead node must not pile up in it.
# KEYS: the generation key, the hold key, then the pools. ARGV: the generation this node
# knows ('' at first), a new generation should Redis have none, the hold (ms), token, ttl
# (ms), the generation key's lifetime (ms), then one limit per pool (-1: none).
# Returns {code, generation}: code 0 taken, i > 0 the first full pool, -1 Redis lost its
# keys (a new generation and a hold were set), -2 another node found that first (this node
# must re-enter its leases), -3 on hold.
_TAKE = """
local gen = redis.call('GET', KEYS[1])
if not gen then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[6])
    gen = ARGV[2]
    if ARGV[1] ~= '' then
        redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
        return {-1, gen}
    end
elseif ARGV[1] ~= '' and gen ~= ARGV[1] then
    return {-2, gen}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
    return {-3, gen}
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[5])
for i = 3, #KEYS do
    local key = KEYS[i]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local limit = tonumber(ARGV[i + 4])
    if limit >= 0 and redis.call('ZCARD', key) >= limit then
        return {i - 2, gen}
    end
end
for i = 3, #KEYS do
    local key = KEYS[i]
    redis.call('ZADD', key, now + ttl, ARGV[4])
    if redis.call('PTTL', key) < ttl then
        redis.call('PEXPIRE', key, ttl)
    end
end
return {0, gen}
"""

# Enter again a lease Redis lost. KEYS: its pools. ARGV: token, ttl left (ms).
_REENTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, now + ttl, ARGV[1])
    if redis.call('PTTL', key) < ttl then
        redis.call('PEXPIRE', key, ttl)
    end
end
return 0
"""

# KEYS: generation, hold. ARGV: the generation known, a new one, hold (ms), the generation
# key's lifetime (ms). Returns the
# generation now in Redis (a new one, and a hold, if Redis had none).
_WATCH = """
local gen = redis.call('GET', KEYS[1])
if not gen then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
    redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
    return ARGV[2]
end
return gen
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
        self._reenter = client.register_script(_REENTER)
        self._watch = client.register_script(_WATCH)
        # Tokens: unique per node, cheap per lease.
        self._node = uuid.uuid4().hex[:12]
        self._sequence = itertools.count()
        self._down_until = 0.0
        self._unreleased: deque[tuple[list[str], str]] = deque(maxlen=MAX_UNRELEASED)
        self._lock = threading.Lock()
        # What this node holds (token -> pools' keys, monotonic expiry), to enter again in
        # a Redis that lost its keys; and the generation of Redis's keys it last saw.
        self._held: dict[str, tuple[list[str], float]] = {}
        self._generation = ""
        self._closed = threading.Event()
        threading.Thread(target=self._watch_loop, name="lease-watch", daemon=True).start()

    def take(self, pools: Sequence[tuple[str, int | None]], ttl_s: float) -> str:
        if self._down_until and time.monotonic() < self._down_until:
            raise LeasesUnavailable("Redis did not answer a moment ago")
        if self._unreleased:
            self._retry_releases()
        for _ in range(2):
            token = f"{self._node}:{next(self._sequence)}"
            keys = [self._prefix + name for name, _ in pools]
            limits = [-1 if limit is None else limit for _, limit in pools]
            ttl_ms = max(1, int(ttl_s * 1000))
            try:
                code, generation = self._take(
                    keys=[self._prefix + "generation", self._prefix + "hold", *keys],
                    args=[
                        self._generation,
                        uuid.uuid4().hex,
                        HOLD_MS,
                        token,
                        ttl_ms,
                        GENERATION_TTL_MS,
                        *limits,
                    ],
                )
            except redis.RedisError as error:
                self._down_until = time.monotonic() + RETRY_AFTER_S
                # A Redis too slow to answer in time may still have run the script: the
                # lease it entered would hold a slot nobody uses until its ttl (the
                # function's timeout plus a minute). Given back with the next take.
                self._unreleased.append((keys, token))
                raise LeasesUnavailable(f"Redis: {error}") from error
            self._down_until = 0.0
            code = int(code)
            if code in (-1, -2):
                self._reenter_held(generation)
                if code == -1:
                    raise LeasesUnavailable("Redis lost its leases: each node enters its own again")
                continue
            if code == -3:
                raise LeasesUnavailable("Redis lost its leases a moment ago")
            if code:
                raise LeaseRefused(pools[code - 1][0])
            self._generation = generation.decode() if isinstance(generation, bytes) else generation
            with self._lock:
                self._held[token] = (keys, time.monotonic() + ttl_s)
            return token
        raise LeasesUnavailable("Redis's leases changed twice")

    def _reenter_held(self, generation: bytes | str) -> None:
        """Enter again every live lease this node holds, then know `generation`."""
        now = time.monotonic()
        with self._lock:
            # Leases past their expiry lapsed in Redis anyway: forget them here too.
            for token in [t for t, (_, e) in self._held.items() if e <= now]:
                del self._held[token]
            held = [(t, k, e) for t, (k, e) in self._held.items()]
        for token, keys, expires in held:
            # Under the lock, and only if still held: a lease given back meanwhile must not
            # come back to life here (give_back drops it from `_held` under the lock first).
            with self._lock:
                if token in self._held:
                    self._reenter(keys=keys, args=[token, max(1, int((expires - now) * 1000))])
        self._generation = generation.decode() if isinstance(generation, bytes) else generation

    def _watch_loop(self) -> None:
        """Find out soon that Redis lost its keys, even without taking anything: this node's
        leases must be back before the hold ends and anyone admits again."""
        while not self._closed.wait(WATCH_S):
            if not self._generation:
                continue
            try:
                generation = self._watch(
                    keys=[self._prefix + "generation", self._prefix + "hold"],
                    args=[self._generation, uuid.uuid4().hex, HOLD_MS, GENERATION_TTL_MS],
                )
                known = generation.decode() if isinstance(generation, bytes) else generation
                if known != self._generation:
                    self._reenter_held(known)
            except redis.RedisError:
                continue

    def give_back(self, pools: Sequence[str], token: str) -> None:
        with self._lock:
            self._held.pop(token, None)
        keys = [self._prefix + name for name in pools]
        if self._down_until and time.monotonic() < self._down_until:
            self._unreleased.append((keys, token))  # no waiting on a Redis just found dead
            return
        try:
            self._give_back(keys=keys, args=[token])
        except redis.RedisError as error:
            # Kept for the next take, which retries it first: one failed call may be a
            # dropped connection, and if Redis is down that retry finds out.
            log.warning("Redis: lease %s not released now (%s); retried later", token, error)
            self._unreleased.append((keys, token))

    def count(self, pool: str) -> int:
        try:
            return int(self._count(keys=[self._prefix + pool]))
        except redis.RedisError as error:
            raise LeasesUnavailable(f"Redis: {error}") from error

    def close(self) -> None:
        self._closed.set()
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
                    # Still down: this take is refused at once, and so are the next for a
                    # moment, rather than each waiting on Redis again.
                    self._down_until = time.monotonic() + RETRY_AFTER_S
                    raise LeasesUnavailable("Redis did not answer a release") from None
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
