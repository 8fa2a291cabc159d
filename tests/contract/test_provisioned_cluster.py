"""Provisioned concurrency spread over a cluster's workers: three nodes' pools on one store,
each holding only its share, the config READY once every share is, and a dead worker's
environments started again by the others.

The control plane is real (one SQLite store, or PostgreSQL with a database connection pool
per node); the environments are stand-ins, as in tests/unit/test_provisioned_pool.py, since
what is under test is who starts how many.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from lamina.arns import FunctionRef
from lamina.cluster.placement import PlacementView, assignment, share
from lamina.cluster.provisioned_status import SHARE_KIND, StoredShareReadiness
from lamina.control.aliases import AliasService
from lamina.control.concurrency import ConcurrencyService, ProvisionedConcurrency
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.invoke.provisioned import ProvisionedPool
from lamina.model.functions import FunctionConfig
from lamina.sandbox.environment import ExecutionEnvironment, State
from lamina.store.protocols import Stores
from lamina.store.sqlite import open_stores
from tests.support.backends import Postgres
from tests.support.domain import ACCOUNT, S3Objects, function_settings, source
from tests.support.waiting import wait_until

FN = FunctionRef("fn", None)
WORKERS = ["node-a", "node-b", "node-c"]


class StandInEnvironment:
    def __init__(self, config: FunctionConfig) -> None:
        self.version = config.version
        self.state = State.IDLE
        self.init_error: bytes | None = None

    def destroy(self) -> None:
        self.state = State.DEAD


class Workers:
    """The live workers as membership would see them, with its version."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = list(ids)
        self.version = 0

    def leave(self, node_id: str) -> None:
        self.ids.remove(node_id)
        self.version += 1

    def join(self, node_id: str) -> None:
        self.ids.append(node_id)
        self.version += 1

    def vanish(self) -> list[str]:
        """The registry stops answering: every node's view empties."""
        ids, self.ids = self.ids, []
        self.version += 1
        return ids

    def reappear(self, ids: list[str]) -> None:
        self.ids = ids
        self.version += 1


class Node:
    """One `lamina serve`'s control plane and provisioned pool."""

    def __init__(self, node_id: str, stores: Stores, workers: Workers) -> None:
        self.node_id = node_id
        domain = Domain(stores=stores, account=ACCOUNT, s3=S3Objects(), account_concurrency=1000)
        self.functions = FunctionService(domain)
        self.aliases = AliasService(domain, self.functions)
        self.concurrency = ConcurrencyService(domain, self.functions)
        self.store = stores.functions
        self.started: list[StandInEnvironment] = []
        # Set: the function's initialisation fails on this node.
        self.failing = False

        async def start(config: FunctionConfig, initialization_type: str) -> ExecutionEnvironment:
            environment = StandInEnvironment(config)
            if self.failing:
                environment.init_error = b"Runtime.ExitError"
            self.started.append(environment)
            return cast(ExecutionEnvironment, environment)

        # Wired as the server wires it, on membership's worker ids and version.
        view = PlacementView(node_id, lambda: workers.ids, lambda: workers.version)
        self.pool = ProvisionedPool(
            self.concurrency,
            start,
            stores.functions.change_stamp,
            share=view.share,
            placement_version=view.version,
            readiness=StoredShareReadiness(stores.functions, node_id, view.ids),
        )

    def reconcile(self) -> None:
        asyncio.run(self.pool.reconcile())

    def held(self) -> int:
        return self.pool.held("fn")

    def config(self, qualifier: str = "live") -> ProvisionedConcurrency:
        return self.concurrency.get_provisioned(FN, qualifier)


@pytest.fixture(params=["sqlite", "postgresql"])
def node_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Stores]]:
    """Each call: the stores of one more node. SQLite is one process's store, shared; on
    PostgreSQL each node has its own connections and learns of the others' writes by
    NOTIFY, as separate machines do."""
    if request.param == "sqlite":
        stores = open_stores(tmp_path / "data")
        yield lambda: stores
        return
    backend = Postgres(tmp_path)
    yield backend.stores
    backend.close()


@pytest.fixture
def workers() -> Workers:
    return Workers(WORKERS)


@pytest.fixture
def nodes(node_stores: Callable[[], Stores], workers: Workers) -> Iterator[dict[str, Node]]:
    """Three worker nodes; `fn` has versions 1 and 2, and alias `live` points at 2."""
    cluster = {node_id: Node(node_id, node_stores(), workers) for node_id in WORKERS}
    first = cluster[WORKERS[0]]
    first.functions.create("fn", function_settings(), source(), publish=True)
    first.functions.update_configuration(FN, {"timeout": 10}, None)
    first.functions.publish_version(FN, None, None, None)
    first.aliases.create(FN, "live", "2", None, None)
    yield cluster
    for node in cluster.values():
        node.pool.close()


def settle(nodes: list[Node], done: Callable[[], bool]) -> None:
    """Reconcile the nodes, pass after pass, until `done` (a node sees another's writes
    within about a second on PostgreSQL)."""

    def passed() -> bool:
        for node in nodes:
            node.reconcile()
        return done()

    wait_until(passed, timeout=10, interval=0.05)


def test_each_node_holds_its_share_and_the_config_is_ready_once_all_are(
    nodes: dict[str, Node], workers: Workers
) -> None:
    a, b, c = nodes.values()
    wanted = assignment(workers.ids, "fn", "live", 9)
    assert len(wanted) == 3  # every node has a share, so every node must report

    a.concurrency.put_provisioned(FN, "live", 9)
    settle([a, b], lambda: a.held() == wanted["node-a"] and b.held() == wanted["node-b"])
    # Two of three shares are ready: still IN_PROGRESS, and nothing allocated yet.
    for _ in range(3):
        for node in (a, b):
            node.reconcile()
    assert (a.config().status, a.config().allocated) == ("IN_PROGRESS", 0)
    assert c.held() == 0

    settle([a, b, c], lambda: c.config().status == "READY")
    config = c.config()
    assert (config.requested, config.allocated, config.available) == (9, 9, 9)
    assert {node.node_id: node.held() for node in nodes.values()} == wanted
    # The notes of each share went with the READY.
    assert a.store.list_children("fn", SHARE_KIND) == []


def test_a_dead_workers_environments_are_started_by_the_others(
    nodes: dict[str, Node], workers: Workers
) -> None:
    a, b, c = nodes.values()
    a.concurrency.put_provisioned(FN, "live", 9)
    settle([a, b, c], lambda: a.config().status == "READY")
    before = {node.node_id: node.held() for node in nodes.values()}

    c.pool.close()  # node-c dies with its environments
    workers.leave("node-c")
    after = assignment(workers.ids, "fn", "live", 9)
    settle([a, b], lambda: {"node-a": a.held(), "node-b": b.held()} == after)
    # Only node-c's environments moved: the survivors kept theirs and took its share.
    assert a.held() >= before["node-a"] and b.held() >= before["node-b"]
    assert a.held() + b.held() == 9
    # READY throughout, as AWS keeps a config READY while it replaces environments.
    assert (a.config().status, a.config().allocated) == ("READY", 9)


def test_a_joining_worker_takes_environments_from_the_others(
    nodes: dict[str, Node], workers: Workers, node_stores: Callable[[], Stores]
) -> None:
    a, b, c = nodes.values()
    a.concurrency.put_provisioned(FN, "live", 12)
    settle([a, b, c], lambda: a.config().status == "READY")

    e = Node("node-e", node_stores(), workers)
    try:
        workers.join("node-e")
        everyone = [a, b, c, e]
        after = assignment(workers.ids, "fn", "live", 12)
        assert after.get("node-e")
        settle(everyone, lambda: {node.node_id: node.held() for node in everyone} == after)
        # The environments the others no longer hold were destroyed, not leaked.
        for node in (a, b, c):
            alive = [env for env in node.started if env.state is State.IDLE]
            assert len(alive) == after[node.node_id]
    finally:
        e.pool.close()


def test_a_node_whose_share_changed_must_report_again_before_ready(
    nodes: dict[str, Node], workers: Workers
) -> None:
    a, b, c = nodes.values()
    a.concurrency.put_provisioned(FN, "live", 9)
    # node-a and node-c note their shares; node-c dies before node-b is ready.
    settle([a, c], lambda: len(a.store.list_children("fn", SHARE_KIND)) == 2)
    c.pool.close()
    workers.leave("node-c")
    after = assignment(workers.ids, "fn", "live", 9)
    assert after["node-a"] != share(WORKERS, "node-a", "fn", "live", 9)  # node-a inherits
    settle([b], lambda: b.held() == after["node-b"])
    for _ in range(3):
        b.reconcile()
    # node-a's note is of a share it no longer has to hold, and node-c's counts no more.
    assert b.config().status == "IN_PROGRESS"
    settle([a, b], lambda: b.config().status == "READY")
    assert a.held() + b.held() == 9
    assert b.config().allocated == 9


def test_a_node_without_a_share_writes_nothing(nodes: dict[str, Node], workers: Workers) -> None:
    (holder,) = assignment(workers.ids, "fn", "live", 1)
    others = [node for node in nodes.values() if node.node_id != holder]
    others[0].concurrency.put_provisioned(FN, "live", 1)
    for _ in range(3):
        for node in others:
            node.reconcile()
    assert [node.held() for node in others] == [0, 0]
    assert others[0].config().status == "IN_PROGRESS"
    assert others[0].store.list_children("fn", SHARE_KIND) == []
    settle(list(nodes.values()), lambda: others[0].config().status == "READY")
    assert others[0].config().allocated == 1


def test_a_weighted_alias_keeps_the_single_node_split_over_the_cluster(
    nodes: dict[str, Node],
) -> None:
    a = nodes["node-a"]
    a.aliases.update(FN, "live", "2", None, {"1": 0.25}, None)
    a.concurrency.put_provisioned(FN, "live", 8)
    everyone = list(nodes.values())

    def idle(version: str) -> int:
        return sum(node.pool.idle_by_version().get(f"fn:{version}", 0) for node in everyone)

    settle(everyone, lambda: a.config().status == "READY")
    # One node alone holds 6 of version 2 and 2 of version 1; the cluster holds the same.
    assert (idle("2"), idle("1")) == (6, 2)
    # Each node's heartbeat reports the memory its share holds (128 MB each).
    assert [node.pool.memory_mb() for node in everyone] == [128 * node.held() for node in everyone]
    # A call takes one: it is no longer idle, and the heartbeat says so.
    taker = next(node for node in everyone if node.pool.idle_by_version().get("fn:1"))
    version_1 = taker.functions.resolve(FN, "1").config
    taken = taker.pool.take("fn", "live", version_1)
    assert taken is not None
    assert idle("1") == 1
    # Busy, it still holds its memory.
    assert sum(node.pool.memory_mb() for node in everyone) == 8 * 128
    taker.pool.release(taken)
    assert idle("1") == 2


def test_a_share_that_fails_to_initialise_fails_the_config_everywhere(
    nodes: dict[str, Node],
) -> None:
    a, b, c = nodes.values()
    b.failing = True
    a.concurrency.put_provisioned(FN, "live", 9)
    settle([a, b, c], lambda: a.config().status == "FAILED")
    assert a.config().status_reason == "FUNCTION_ERROR_INIT_FAILURE"
    settle([a, b, c], lambda: a.held() + b.held() + c.held() == 0)
    # A new Put starts again, on every node.
    b.failing = False
    a.concurrency.put_provisioned(FN, "live", 9)
    settle([a, b, c], lambda: a.config().status == "READY")
    assert a.held() + b.held() + c.held() == 9


def test_nodes_that_lose_sight_of_every_worker_keep_what_they_hold(
    nodes: dict[str, Node], workers: Workers
) -> None:
    everyone = list(nodes.values())
    everyone[0].concurrency.put_provisioned(FN, "live", 9)
    settle(everyone, lambda: everyone[0].config().status == "READY")
    held = [node.held() for node in everyone]

    ids = workers.vanish()
    for _ in range(3):
        for node in everyone:
            node.reconcile()
    assert [node.held() for node in everyone] == held
    assert all(env.state is State.IDLE for node in everyone for env in node.started)

    workers.reappear(ids)
    for node in everyone:
        node.reconcile()
    assert [node.held() for node in everyone] == held
