"""The node registry on the machine's Redis: epochs only grow, entries lapse without
heartbeats, a lapsed or superseded registration is refused, and an unreachable Redis says so.

Each test has a key prefix of its own; nothing here stops the machine's Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import orjson
import pytest
import redis

from lamina.store.errors import StorageError
from lamina.store.protocols.nodes import NodeReport, NodesUnavailable
from lamina.store.redis import RedisNodeRegistry, open_redis_nodes
from tests.support.redis import REDIS_URL, dead_url, delete_prefix, unique_prefix
from tests.support.waiting import wait_until

# Short, so that lapses happen within a test; long enough for a loaded machine's round trips.
EXPIRY_S = 0.5


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def registry(prefix: str) -> Iterator[RedisNodeRegistry]:
    registry = open_redis_nodes(REDIS_URL, EXPIRY_S, prefix=prefix)
    yield registry
    registry.close()


def report(node_id: str, **load: Any) -> NodeReport:
    return NodeReport(node_id, f"http://{node_id}.test:9000", worker=True, **load)


def by_id(registry: RedisNodeRegistry) -> dict[str, NodeReport]:
    return {node.node_id: node for node in registry.nodes()}


def test_every_join_gets_a_higher_epoch(registry: RedisNodeRegistry) -> None:
    first = registry.join(report("a"))
    second = registry.join(report("b"))
    again = registry.join(report("a"))
    assert first < second < again
    live = by_id(registry)
    assert {node_id: node.epoch for node_id, node in live.items()} == {"a": again, "b": second}


def test_epochs_keep_growing_when_redis_lost_the_counter(
    registry: RedisNodeRegistry, prefix: str
) -> None:
    before = registry.join(report("a"))
    # What a Redis restarted with nothing on disk looks like to the registry, again and
    # again as fast as this loop goes: each restart well within one millisecond of the last.
    with redis.Redis.from_url(REDIS_URL) as client:
        for _ in range(20):
            client.delete(f"{prefix}nodes:epoch")
            again = registry.join(report("a"))
            assert again > before
            before = again
    assert registry.join(report("b")) > before


def test_a_heartbeat_rewrites_the_report(registry: RedisNodeRegistry) -> None:
    epoch = registry.join(report("a", capacity_mb=1024))
    joined = by_id(registry)["a"]
    loaded = report(
        "a",
        epoch=epoch,
        started_at=123.5,
        capacity_mb=1024,
        memory_used_mb=384,
        environments=3,
        in_flight=2,
        idle=MappingProxyType({"f:1": 1}),
        provisioned={"g:3": 2},
    )
    wait_until(
        lambda: (
            registry.heartbeat(loaded) and by_id(registry)["a"].heartbeat_at > joined.heartbeat_at
        )
    )
    seen = by_id(registry)["a"]
    assert seen == NodeReport(
        "a",
        "http://a.test:9000",
        worker=True,
        epoch=epoch,
        started_at=123.5,
        heartbeat_at=seen.heartbeat_at,
        capacity_mb=1024,
        memory_used_mb=384,
        environments=3,
        in_flight=2,
        idle={"f:1": 1},
        provisioned={"g:3": 2},
    )


def test_heartbeats_keep_an_entry_past_its_expiry(registry: RedisNodeRegistry) -> None:
    epoch = registry.join(report("a"))
    joined_at = by_id(registry)["a"].heartbeat_at

    def alive_for_two_expiries() -> bool:
        assert registry.heartbeat(report("a", epoch=epoch)), "a heartbeat was refused"
        return by_id(registry)["a"].heartbeat_at > joined_at + 2 * EXPIRY_S

    wait_until(alive_for_two_expiries, timeout=10, interval=EXPIRY_S / 5)


def test_a_heartbeat_after_the_entry_lapsed_is_refused(registry: RedisNodeRegistry) -> None:
    epoch = registry.join(report("a"))
    wait_until(lambda: "a" not in by_id(registry), timeout=10)
    assert registry.heartbeat(report("a", epoch=epoch)) is False
    assert "a" not in by_id(registry)  # the refused heartbeat did not revive it
    assert registry.join(report("a")) > epoch


def test_a_heartbeat_under_a_superseded_epoch_is_refused(registry: RedisNodeRegistry) -> None:
    old = registry.join(report("a", environments=1))
    new = registry.join(report("a", environments=2))
    assert registry.heartbeat(report("a", epoch=old, environments=9)) is False
    seen = by_id(registry)["a"]
    assert (seen.epoch, seen.environments) == (new, 2)
    assert registry.heartbeat(report("a", epoch=new, environments=3)) is True
    assert by_id(registry)["a"].environments == 3


def test_nodes_leaves_out_the_lapsed_ones_and_forgets_them(
    registry: RedisNodeRegistry, prefix: str
) -> None:
    alive = registry.join(report("alive"))
    registry.join(report("silent"))
    assert set(by_id(registry)) == {"alive", "silent"}

    def only_alive_left() -> bool:
        assert registry.heartbeat(report("alive", epoch=alive))
        return set(by_id(registry)) == {"alive"}

    wait_until(only_alive_left, timeout=10, interval=EXPIRY_S / 5)
    with redis.Redis.from_url(REDIS_URL) as client:
        assert client.smembers(f"{prefix}nodes:index") == {b"alive"}


def test_leave_removes_a_node_at_once(registry: RedisNodeRegistry) -> None:
    epoch = registry.join(report("a"))
    registry.join(report("b"))
    registry.leave("a")
    assert set(by_id(registry)) == {"b"}
    assert registry.heartbeat(report("a", epoch=epoch)) is False


def test_prefixes_keep_clusters_apart(registry: RedisNodeRegistry) -> None:
    other_prefix = unique_prefix()
    other = open_redis_nodes(REDIS_URL, EXPIRY_S, prefix=other_prefix)
    try:
        registry.join(report("a"))
        other.join(report("b"))
        assert set(by_id(registry)) == {"a"}
        assert [node.node_id for node in other.nodes()] == ["b"]
    finally:
        other.close()
        delete_prefix(other_prefix)


def test_fields_a_newer_node_writes_are_ignored(registry: RedisNodeRegistry, prefix: str) -> None:
    """Mid-upgrade, a node of a later version may report more than this one knows."""
    epoch = registry.join(report("a"))
    document = {
        "node_id": "a",
        "address": "http://a.test:9000",
        "worker": False,
        "heartbeat_at": 5.0,
        "gpus": 4,
    }
    with redis.Redis.from_url(REDIS_URL) as client:
        client.hset(f"{prefix}nodes:node:a", "report", orjson.dumps(document))
    assert by_id(registry)["a"] == NodeReport(
        "a", "http://a.test:9000", worker=False, epoch=epoch, heartbeat_at=5.0
    )


def test_an_unreachable_redis_raises_nodes_unavailable() -> None:
    registry = open_redis_nodes(dead_url(), EXPIRY_S, prefix=unique_prefix())
    try:
        calls: list[Callable[[], object]] = [
            lambda: registry.join(report("a")),
            lambda: registry.heartbeat(report("a", epoch=1)),
            registry.nodes,
            lambda: registry.leave("a"),
        ]
        for call in calls:
            with pytest.raises(NodesUnavailable, match="Redis") as raised:
                call()
            assert isinstance(raised.value, StorageError)
    finally:
        registry.close()
