"""The node registry in Redis: one hash per node that expires unless its node heartbeats.

Keys, under a prefix (one per cluster sharing a Redis):
- `nodes:epoch`: the counter every join increments; never expires, so epochs only grow
  (and when Redis loses it, it restarts from the clock: see `_JOIN`).
- `nodes:node:{id}`: a hash of `epoch` and `report` (JSON), with PEXPIRE = the expiry.
- `nodes:index`: the set of ids, so listing needs no SCAN over the whole database. Ids whose
  hash lapsed are dropped from it when the nodes are listed; it expires with the last node.

Join and heartbeat are each one script, so a heartbeat never revives an entry that lapsed or
overwrites a newer registration of the same node between its check and its write.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lamina.store.protocols.nodes import NodeReport, NodesUnavailable
from lamina.store.redis.leases import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S

DEFAULT_PREFIX = "lamina:"

# KEYS: epoch counter, index, node. ARGV: node id, report JSON, ttl (ms).
# A counter that is missing (a Redis restarted empty: it need keep nothing on disk) starts
# again from Redis's clock in microseconds, above every epoch given before unless joins had
# outpaced a million a second: epochs must keep growing, or fencing would take a new
# registration for an old one. Milliseconds were not enough: a node that joined, saw Redis
# lose everything and joined again within one millisecond got its old epoch back.
# Microseconds since 1970 stay below 2^53, exact in Lua's numbers.
_JOIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    redis.call('SET', KEYS[1], string.format('%d', now))
end
local epoch = redis.call('INCR', KEYS[1])
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'epoch', epoch, 'report', ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return epoch
"""

# KEYS: index, node. ARGV: node id, epoch, report JSON, ttl (ms). 1: written; 0: the entry
# is gone or holds another epoch, and nothing was written.
_HEARTBEAT = """
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[2] then
    return 0
end
redis.call('HSET', KEYS[2], 'report', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: index. ARGV: the prefix of node keys. Returns epoch, report, epoch, report, ...
# The node keys are built in the script (so it suits one Redis, not Redis Cluster): the
# index and the entries are read at one instant, and lapsed ids leave the index here.
_LIST = """
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local entry = redis.call('HMGET', ARGV[1] .. id, 'epoch', 'report')
    if entry[1] then
        table.insert(found, entry[1])
        table.insert(found, entry[2])
    else
        redis.call('SREM', KEYS[1], id)
    end
end
return found
"""

_FIELDS = frozenset(field.name for field in dataclasses.fields(NodeReport))


class RedisNodeRegistry:
    """`NodeRegistry` in one Redis, under a key prefix (one per cluster)."""

    def __init__(
        self, client: redis.Redis | str, expiry_s: float, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self._client = _connect(client) if isinstance(client, str) else client
        self._ttl_ms = max(1, int(expiry_s * 1000))
        self._counter = f"{prefix}nodes:epoch"
        self._index = f"{prefix}nodes:index"
        self._node_prefix = f"{prefix}nodes:node:"
        self._join = self._client.register_script(_JOIN)
        self._heartbeat = self._client.register_script(_HEARTBEAT)
        self._list = self._client.register_script(_LIST)

    def join(self, report: NodeReport) -> int:
        keys = [self._counter, self._index, self._node_key(report.node_id)]
        args: list[str | bytes | int] = [report.node_id, _encode(report), self._ttl_ms]
        try:
            return int(self._join(keys=keys, args=args))
        except redis.RedisError as error:
            raise NodesUnavailable(f"Redis: {error}") from error

    def heartbeat(self, report: NodeReport) -> bool:
        keys = [self._index, self._node_key(report.node_id)]
        args: list[str | bytes | int] = [
            report.node_id,
            report.epoch,
            _encode(report),
            self._ttl_ms,
        ]
        try:
            return bool(self._heartbeat(keys=keys, args=args))
        except redis.RedisError as error:
            raise NodesUnavailable(f"Redis: {error}") from error

    def nodes(self) -> list[NodeReport]:
        try:
            found = self._list(keys=[self._index], args=[self._node_prefix])
        except redis.RedisError as error:
            raise NodesUnavailable(f"Redis: {error}") from error
        return [_decode(found[i], found[i + 1]) for i in range(0, len(found), 2)]

    def leave(self, node_id: str) -> None:
        try:
            with self._client.pipeline(transaction=True) as pipeline:
                pipeline.delete(self._node_key(node_id))
                pipeline.srem(self._index, node_id)
                pipeline.execute()
        except redis.RedisError as error:
            raise NodesUnavailable(f"Redis: {error}") from error

    def close(self) -> None:
        self._client.close()

    def _node_key(self, node_id: str) -> str:
        return self._node_prefix + node_id


def _encode(report: NodeReport) -> bytes:
    """The report as stored, stamped with the time of this write. The epoch is kept apart
    (the script gives or checks it)."""
    document: dict[str, Any] = {name: getattr(report, name) for name in _FIELDS}
    del document["epoch"]
    document["heartbeat_at"] = time.time()
    # orjson writes dicts, not every Mapping (a read-only proxy, say).
    document["idle"] = dict(report.idle)
    document["provisioned"] = dict(report.provisioned)
    return orjson.dumps(document)


def _decode(epoch: bytes, report: bytes) -> NodeReport:
    document = orjson.loads(report)
    # Fields this version does not know (a newer node, mid-upgrade) are left out, not fatal.
    known = {name: value for name, value in document.items() if name in _FIELDS}
    return NodeReport(**known, epoch=int(epoch))


def _connect(url: str) -> redis.Redis:
    # Short timeouts and no retries, as for the leases: a heartbeat that cannot be written
    # soon is better reported than blocked on a dead address.
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def open_redis_nodes(
    url: str, expiry_s: float, *, prefix: str = DEFAULT_PREFIX
) -> RedisNodeRegistry:
    """The node registry in the Redis at `url` (`redis://host:port/db`), entries lapsing
    `expiry_s` after their last heartbeat. Connects lazily: an unreachable Redis fails the
    calls (NodesUnavailable), not the opening."""
    return RedisNodeRegistry(_connect(url), expiry_s, prefix)
