"""Membership over the real node registry (the machine's Redis, a key prefix per test): nodes
see each other, a silent node drops out, suspects stay out until they heartbeat, a lapsed
registration comes back under a higher epoch, and `version` follows the live workers.

Outages go through a forwarder that the test cuts, or a Redis of the test's own that it
restarts; the machine's Redis is never stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from lamina.cluster.membership import Membership
from lamina.store.protocols.nodes import NodeReport
from lamina.store.redis import RedisNodeRegistry, open_redis_nodes
from tests.support.forwarder import Forwarder
from tests.support.redis import REDIS_URL, dead_url, delete_prefix, unique_prefix
from tests.support.redis_process import RedisProcess, available

HEARTBEAT_S = 0.2
EXPIRY_S = 1.0

T = TypeVar("T")


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def registry(prefix: str) -> Iterator[RedisNodeRegistry]:
    """The registry as an outside observer (or a node that never heartbeats) sees it."""
    registry = open_redis_nodes(REDIS_URL, EXPIRY_S, prefix=prefix)
    yield registry
    registry.close()


def load(node_id: str, worker: bool = True, environments: int = 0) -> NodeReport:
    return NodeReport(node_id, f"http://{node_id}.test:9000", worker, environments=environments)


@asynccontextmanager
async def member(
    prefix: str,
    node_id: str,
    worker: bool = True,
    report: Callable[[], NodeReport] | None = None,
    url: str = REDIS_URL,
) -> AsyncIterator[Membership]:
    """A started node, with a Redis client of its own; it leaves on the way out."""
    registry = open_redis_nodes(url, EXPIRY_S, prefix=prefix)
    membership = Membership(
        registry, report or (lambda: load(node_id, worker)), HEARTBEAT_S, EXPIRY_S
    )
    await membership.start()
    try:
        yield membership
    finally:
        await membership.close()
        registry.close()


async def eventually(
    predicate: Callable[[], T | None], timeout: float = 15.0, message: str = ""
) -> T:
    """Poll `predicate` on the event loop (membership runs there) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message or 'the condition never held'} (within {timeout} s)")
        await asyncio.sleep(0.02)


def ids(nodes: list[NodeReport]) -> set[str]:
    return {node.node_id for node in nodes}


def test_nodes_see_each_other_and_their_load(prefix: str) -> None:
    async def scenario() -> None:
        async with (
            member(prefix, "a") as a,
            member(prefix, "b", report=lambda: load("b", environments=2)),
            member(prefix, "front", worker=False),
        ):
            await eventually(lambda: ids(a.nodes()) == {"a", "b", "front"})
            assert ids(a.workers()) == {"a", "b"}
            assert a.worker_ids() == ["a", "b"]
            seen = {node.node_id: node for node in a.nodes()}
            assert seen["b"].environments == 2
            assert seen["a"].epoch == a.epoch > 0
            assert len({node.epoch for node in seen.values()}) == 3
            assert all(node.started_at > 0 for node in seen.values())

    asyncio.run(scenario())


def test_a_silent_node_drops_out_of_the_view(prefix: str, registry: RedisNodeRegistry) -> None:
    async def scenario() -> None:
        async with member(prefix, "a") as a:
            registry.join(load("ghost"))  # joins, then never heartbeats
            await eventually(lambda: "ghost" in ids(a.workers()))
            await eventually(lambda: "ghost" not in ids(a.nodes()), message="ghost stayed")
            assert ids(a.nodes()) == {"a"}

    asyncio.run(scenario())


def test_a_suspect_is_left_out_until_it_heartbeats_again(prefix: str) -> None:
    async def scenario() -> None:
        async with member(prefix, "a") as a, member(prefix, "b"):
            await eventually(lambda: "b" in ids(a.workers()))
            a.suspect("b")
            assert "b" not in ids(a.workers())
            assert "b" in ids(a.nodes()) and a.is_suspect("b")
            assert a.worker_ids() == ["a", "b"]  # placement does not move on a suspicion
            await eventually(lambda: "b" in ids(a.workers()), message="b never came back")
            assert not a.is_suspect("b")
            a.suspect("a")  # a node does not suspect itself
            assert "a" in ids(a.workers())

    asyncio.run(scenario())


def test_a_suspect_that_never_heartbeats_stays_out_until_it_lapses(
    prefix: str, registry: RedisNodeRegistry
) -> None:
    async def scenario() -> None:
        async with member(prefix, "a") as a:
            registry.join(load("ghost"))
            await eventually(lambda: "ghost" in ids(a.workers()))
            a.suspect("ghost")

            def gone() -> bool:
                assert "ghost" not in ids(a.workers()), "a suspect came back without a heartbeat"
                return "ghost" not in ids(a.nodes())

            await eventually(gone)
            assert not a.is_suspect("ghost")

    asyncio.run(scenario())


def test_a_registration_that_lapsed_comes_back_under_a_higher_epoch(
    prefix: str, registry: RedisNodeRegistry
) -> None:
    stall = False

    def report() -> NodeReport:
        nonlocal stall
        if stall:
            stall = False
            time.sleep(2 * EXPIRY_S)  # the whole node stops (a pause, a swap storm)
        return load("a")

    async def scenario() -> None:
        nonlocal stall
        async with member(prefix, "a", report=report) as a:
            first = a.epoch
            stall = True
            await eventually(lambda: a.epoch > first, message="a never joined again")
            await eventually(
                lambda: {n.node_id: n.epoch for n in registry.nodes()} == {"a": a.epoch}
            )

            # Another registration of the same id supersedes it: it joins once more.
            taken = registry.join(load("a"))
            await eventually(lambda: a.epoch > taken, message="a never took its id back")
            assert {n.node_id: n.epoch for n in registry.nodes()} == {"a": a.epoch}

    asyncio.run(scenario())


def test_version_changes_when_a_worker_joins_or_leaves(prefix: str) -> None:
    async def scenario() -> None:
        async with member(prefix, "a") as a:
            alone = a.version
            assert a.worker_ids() == ["a"]
            async with member(prefix, "b"):
                await eventually(lambda: a.worker_ids() == ["a", "b"])
                with_b = a.version
                assert with_b != alone
                async with member(prefix, "front", worker=False):
                    await eventually(lambda: "front" in ids(a.nodes()))
                    assert a.version == with_b  # a frontend places nothing
                    a.suspect("b")
                    assert a.version == with_b
            await eventually(lambda: a.worker_ids() == ["a"])
            assert a.version not in (alone, with_b)

    asyncio.run(scenario())


def test_close_leaves_at_once(prefix: str, registry: RedisNodeRegistry) -> None:
    async def scenario() -> None:
        async with member(prefix, "a") as a:
            async with member(prefix, "b") as b:
                await eventually(lambda: "b" in ids(a.nodes()))
            assert b.epoch == 0
            assert ids(registry.nodes()) == {"a"}
            await eventually(lambda: ids(a.nodes()) == {"a"})

    asyncio.run(scenario())


def test_an_unreachable_registry_does_not_stop_the_node_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="lamina.cluster.membership")

    async def scenario() -> None:
        async with member(unique_prefix(), "a", url=dead_url()) as a:
            assert a.epoch == 0
            assert a.nodes() == [] and a.workers() == []
            await asyncio.sleep(5 * HEARTBEAT_S)  # several failed beats and refreshes

    asyncio.run(scenario())
    warnings = [record for record in caplog.records if "unreachable" in record.getMessage()]
    assert len(warnings) == 1


def test_an_outage_keeps_the_view_until_its_nodes_would_have_lapsed(
    prefix: str, registry: RedisNodeRegistry
) -> None:
    forwarder = Forwarder("127.0.0.1", "127.0.0.1", int(REDIS_URL.split(":")[2].split("/")[0]))
    forwarder.start()
    url = f"redis://127.0.0.1:{forwarder.port}/0"

    async def scenario() -> None:
        async with member(prefix, "a", url=url) as a, member(prefix, "b"):
            await eventually(lambda: ids(a.nodes()) == {"a", "b"})
            before = a.epoch
            forwarder.pause()

            def only_fresh_left() -> bool:
                cutoff = time.time() - EXPIRY_S - HEARTBEAT_S  # a refresh may be due
                assert all(node.heartbeat_at >= cutoff for node in a.nodes())
                return not a.nodes()

            await eventually(only_fresh_left, message="the view kept nodes that had lapsed")
            await eventually(lambda: "a" not in ids(registry.nodes()))  # its entry lapsed too
            forwarder.resume()
            await eventually(lambda: ids(a.nodes()) == {"a", "b"}, message="a never recovered")
            assert a.epoch > before

    try:
        asyncio.run(scenario())
    finally:
        forwarder.close()


@pytest.mark.skipif(not available(), reason="needs redis-server")
def test_after_redis_restarts_empty_every_node_joins_under_a_higher_epoch(
    tmp_path: Path,
) -> None:
    server = RedisProcess(tmp_path / "redis").start()
    prefix = unique_prefix()

    async def scenario() -> None:
        async with (
            member(prefix, "a", url=server.url) as a,
            member(prefix, "b", url=server.url) as b,
        ):
            await eventually(lambda: ids(a.nodes()) == {"a", "b"})
            before = max(a.epoch, b.epoch)
            await asyncio.to_thread(server.restart)
            await eventually(lambda: min(a.epoch, b.epoch) > before, message="no new epochs")
            await eventually(lambda: ids(a.nodes()) == ids(b.nodes()) == {"a", "b"})

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_reports_carry_the_epoch_and_start_the_membership_fills_in(
    prefix: str, registry: RedisNodeRegistry
) -> None:
    """Whatever `report` says of epoch and start time, the registry gets the membership's."""

    async def scenario() -> None:
        wrong = replace(load("a"), epoch=999, started_at=1.0)
        async with member(prefix, "a", report=lambda: wrong) as a:
            await eventually(registry.nodes)
            (seen,) = registry.nodes()
            assert seen.epoch == a.epoch != 999
            assert seen.started_at > 1.0

    asyncio.run(scenario())
