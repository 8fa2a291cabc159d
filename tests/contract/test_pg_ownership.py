"""Ownership leases on PostgreSQL (`PgOwnershipLeases`): two owners on one schema are two
nodes. A lease is one owner's until it lapses or is released; then another owner takes it.
And two poller supervisors on one store run one poller per mapping between them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lamina.aws.clients import ClientCache
from lamina.metrics import MetricsRegistry
from lamina.model.mappings import SQS
from lamina.pollers.context import PollerContext
from lamina.pollers.invoking import BatchInvoker
from lamina.pollers.supervisor import PollerSupervisor
from lamina.store.postgres.ownership import PgOwnershipLeases
from tests.support.backends import Postgres
from tests.support.domain import ACCOUNT
from tests.unit.test_poller_supervisor import ScriptedPoller, mapping


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Postgres]:
    instance = Postgres(tmp_path)
    yield instance
    instance.close()


def owner(backend: Postgres, name: str, ttl_s: float = 30.0) -> PgOwnershipLeases:
    return PgOwnershipLeases(backend.database(), name, ttl_s)


def test_a_lease_is_one_owners(backend: Postgres) -> None:
    a, b = owner(backend, "a"), owner(backend, "b")
    assert a.claim(["x", "y"]) == {"x", "y"}
    assert b.claim(["x", "y", "z"]) == {"z"}
    assert a.claim(["x", "y", "z"]) == {"x", "y"}  # renewed, and z is b's
    assert a.holders(["x", "y", "z"]) == {"x": "a", "y": "a", "z": "b"}
    assert a.claim([]) == set()


def test_a_released_lease_is_taken_at_once(backend: Postgres) -> None:
    a, b = owner(backend, "a"), owner(backend, "b")
    a.claim(["x", "y"])
    a.release(["x"])
    b.release(["y"])  # not b's: nothing happens
    assert b.claim(["x", "y"]) == {"x"}


def test_a_lease_not_renewed_lapses_and_moves(backend: Postgres) -> None:
    a, b = owner(backend, "a", ttl_s=0.5), owner(backend, "b", ttl_s=0.5)
    assert a.claim(["x"]) == {"x"}
    assert b.claim(["x"]) == set()
    time.sleep(0.6)  # a (dead, say) renews nothing
    assert b.claim(["x"]) == {"x"}
    assert a.claim(["x"]) == set()


def test_renewing_keeps_a_lease_past_its_first_term(backend: Postgres) -> None:
    a, b = owner(backend, "a", ttl_s=1.5), owner(backend, "b", ttl_s=1.5)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert a.claim(["x"]) == {"x"}
        assert b.claim(["x"]) == set()
        time.sleep(0.05)


def test_two_supervisors_run_one_poller_per_mapping(backend: Postgres) -> None:
    store = backend.stores().mappings
    log: list[tuple[str, str, float]] = []

    def supervisor(name: str) -> PollerSupervisor:
        context = PollerContext(
            invoker=BatchInvoker(engine=None),  # type: ignore[arg-type]  # never invoked
            store=backend.stores().mappings,
            metrics=MetricsRegistry(),
            clients=ClientCache("us-east-1"),
            threads=ThreadPoolExecutor(2),
            account=ACCOUNT,
        )
        return PollerSupervisor(
            context,
            {SQS: lambda m, _: ScriptedPoller(m, log)},
            interval_s=0.01,
            leases=owner(backend, name),
        )

    async def scenario() -> None:
        for uuid in "abc":
            store.put(mapping(uuid))
        first, second = supervisor("first"), supervisor("second")
        for _ in range(3):
            await first.reconcile()
            await second.reconcile()
        assert set(first.statuses()) == {"a", "b", "c"}
        assert second.statuses() == {}
        await first.close()  # releases its leases: the second takes them at its next round
        await second.reconcile()
        assert set(second.statuses()) == {"a", "b", "c"}
        await second.close()
        assert [entry[:2] for entry in log].count(("run", "a")) == 2

    asyncio.run(scenario())
