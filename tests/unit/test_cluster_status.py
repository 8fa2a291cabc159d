"""`GET /_lamina/cluster`'s document and `lamina cluster status`'s table, from a real
membership on the machine's Redis and a real (SQLite) async queue.

The command against real servers is tested in tests/integration/test_cluster_status.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.api.cluster_status import status_document
from lamina.cluster.membership import Membership
from lamina.commands.cluster import render
from lamina.store.protocols.nodes import NodeReport
from lamina.store.protocols.queue import AsyncEvent, AsyncQueue
from lamina.store.redis import open_redis_nodes
from lamina.store.sqlite import open_stores
from tests.support.redis import REDIS_URL, dead_url, delete_prefix, unique_prefix

HEARTBEAT_S = 0.2
EXPIRY_S = 1.0


@pytest.fixture
def queue(tmp_path: Path) -> AsyncQueue:
    """Three queued events of two functions (one retrying), one in flight, one failed."""
    queue = open_stores(tmp_path / "data").queue
    now = time.time()

    def event(event_id: str, function: str, **fields: Any) -> AsyncEvent:
        return AsyncEvent(event_id, function, None, b"{}", now, now, **fields)

    queue.enqueue(
        [
            event("1", "f"),
            event("2", "f", attempts=1),
            event("3", "g"),
            event("4", "g"),
            event("5", "g", state="failed"),
        ]
    )
    (claimed,) = queue.claim("node", now, 1, 60)
    assert claimed.event_id in {"1", "3", "4"}
    return queue


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    delete_prefix(prefix)


def worker(node_id: str, **load: Any) -> NodeReport:
    return NodeReport(node_id, f"http://{node_id}.test:9000", True, **load)


def test_a_single_node_answers_for_itself_alone(queue: AsyncQueue) -> None:
    here = worker("solo", capacity_mb=3072, memory_used_mb=256, environments=2, in_flight=1)
    document = status_document(None, here, queue.counts(), now=1000.0)
    assert document["queue"] == {"queued": 2, "retrying": 1, "in_flight": 1, "failed": 1}
    (row,) = document["nodes"]
    assert row["epoch"] is None and row["this"] and row["heartbeat_age_s"] == 0
    assert (row["capacity_mb"], row["memory_used_mb"], row["environments"]) == (3072, 256, 2)

    lines = render(document).splitlines()
    assert lines[1].split() == [
        "solo",
        "(this)",
        "http://solo.test:9000",
        "worker",
        "-",
        "0.0",
        "s",
        "2",
        "1",
        "256",
        "/",
        "3072",
        "MB",
    ]
    assert lines[-1] == "Async queue: 2 queued, 1 retrying, 1 in flight, 1 failed"


def test_a_cluster_node_lists_the_live_nodes_and_its_suspects(
    queue: AsyncQueue, prefix: str
) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, int]]:
        registries = [open_redis_nodes(REDIS_URL, EXPIRY_S, prefix=prefix) for _ in range(3)]
        reports = [
            lambda: worker("a", environments=1),
            lambda: worker("b"),
            lambda: NodeReport("front", "http://front.test:9000", False),
        ]
        members = [
            Membership(registry, report, HEARTBEAT_S, EXPIRY_S)
            for registry, report in zip(registries, reports, strict=True)
        ]
        a = members[0]
        for member in members:
            await member.start()
        try:
            deadline = time.monotonic() + 15
            while len(a.nodes()) < 3:
                assert time.monotonic() < deadline, "a never saw every node"
                await asyncio.sleep(0.02)
            a.suspect("b")
            epochs = {member.node_id: member.epoch for member in members}
            return status_document(a, worker("a"), queue.counts(), time.time()), epochs
        finally:
            for member in members:
                await member.close()
            for registry in registries:
                registry.close()

    document, epochs = asyncio.run(scenario())
    rows = {row["node_id"]: row for row in document["nodes"]}
    assert {node_id: row["epoch"] for node_id, row in rows.items()} == epochs
    assert [node_id for node_id, row in rows.items() if row["this"]] == ["a"]
    assert [node_id for node_id, row in rows.items() if row["suspect"]] == ["b"]
    assert rows["a"]["environments"] == 1
    assert not rows["front"]["worker"]

    table = render(document)
    by_node = {line.split()[0]: line.split() for line in table.splitlines()[1:4]}
    assert by_node["a"][1:5] == ["(this)", "http://a.test:9000", "worker", str(epochs["a"])]
    assert by_node["front"][1:4] == ["http://front.test:9000", "frontend", str(epochs["front"])]
    assert by_node["front"][-1] == "-"
    assert "Suspect (a connection failed; no calls until it heartbeats again):\n  b" in table


def test_a_node_the_registry_does_not_show_still_lists_itself(queue: AsyncQueue) -> None:
    async def scenario() -> dict[str, Any]:
        registry = open_redis_nodes(dead_url(), EXPIRY_S, prefix=unique_prefix())
        membership = Membership(registry, lambda: worker("a"), HEARTBEAT_S, EXPIRY_S)
        await membership.start()
        try:
            return status_document(membership, worker("a", in_flight=3), queue.counts(), 50.0)
        finally:
            await membership.close()
            registry.close()

    document = asyncio.run(scenario())
    (row,) = document["nodes"]
    assert (row["node_id"], row["this"], row["epoch"], row["in_flight"]) == ("a", True, None, 3)
