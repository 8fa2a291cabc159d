"""The cluster harness the chaos test stands on (tests/support/cluster.py): nodes in their
own network namespaces answer over the bridge, a probe's ledger knows which node ran it, and
each fault the harness injects does what it says."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis

from tests.support import cluster as cluster_support
from tests.support.archives import make_zip
from tests.support.cluster import Cluster
from tests.support.lambda_api import ROLE, invoke
from tests.support.ledger import PROBE_SOURCE, Ledger
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(
    not cluster_support.available(),
    reason="needs root, iproute2 (network namespaces) and redis-server",
)

NODES = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("harness"), NODES) as running:
        yield running


@pytest.fixture(scope="module")
def probe(cluster: Cluster) -> Iterator[tuple[str, Ledger]]:
    """A probe function, created through node 0, and its ledger."""
    ledger = Ledger(cluster.network.gateway).start()
    name = f"probe-{uuid.uuid4().hex[:8]}"
    client = cluster.client(0)
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="probe.handler",
        Code={"ZipFile": make_zip({"probe.py": PROBE_SOURCE})},
        Timeout=10,
        Environment={"Variables": {"LEDGER": ledger.url}},
    )
    client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )
    client.close()
    yield name, ledger
    ledger.close()


def health(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/_lamina/health", timeout=1):
        return True


def run_on(cluster: Cluster, index: int, function: str) -> str:
    """Call the function through one node; its request id."""
    client = cluster.client(index)
    try:
        return str(invoke(client, function, {"n": index})["request"])
    finally:
        client.close()


def test_nodes_answer_over_the_bridge_and_the_ledger_knows_who_ran(
    cluster: Cluster, probe: tuple[str, Ledger]
) -> None:
    name, ledger = probe
    addresses = {node.address for node in cluster.nodes}
    assert len(addresses) == NODES and all(a.startswith("10.77.") for a in addresses)
    for index in range(NODES):
        request = run_on(cluster, index, name)
        (run,) = [run for run in ledger.runs(name) if run.request == request]
        # Today each node runs what it receives; routed, any node may run it.
        assert run.node in addresses and run.end is not None and run.end >= run.start
        assert cluster.node_of(run.node) in range(NODES)


def test_a_cut_node_is_unreachable_until_healed(cluster: Cluster) -> None:
    node = cluster.nodes[1]
    cluster.cut(1)
    try:
        with pytest.raises(OSError):
            health(node.endpoint)
        assert node.alive  # cut off, not dead
    finally:
        cluster.heal(1)
    wait_until(lambda: health(node.endpoint), timeout=30, ignoring=(OSError,))


def test_a_killed_node_leaves_nothing_behind_and_restarts(
    cluster: Cluster, probe: tuple[str, Ledger]
) -> None:
    name, ledger = probe
    request = run_on(cluster, 1, name)
    # The node that ran it (routed, not always the one asked) has an environment running.
    (ran,) = [run for run in ledger.runs(name) if run.request == request]
    index = cluster.node_of(ran.node)
    node = cluster.nodes[index]
    assert len(node.host.pids()) > 1
    cluster.kill(index)
    assert not node.alive
    assert node.host.pids() == []
    with pytest.raises(OSError):
        health(node.endpoint)
    cluster.restart(index)
    wait_until(lambda: run_on(cluster, index, name), timeout=30, ignoring=(Exception,))


def test_restarting_redis_loses_every_key(cluster: Cluster) -> None:
    with redis.Redis(port=cluster.redis.port) as client:
        client.set("harness", "1")
        cluster.restart_redis()
        assert client.get("harness") is None


def test_a_store_outage_refuses_the_nodes_way_to_postgresql(cluster: Cluster) -> None:
    forwarded = cluster.postgres_forwarder
    # The nodes' way in: the forwarder on the bridge.
    dsn = f"host={forwarded.host} port={forwarded.port} user=postgres dbname=test"
    with psycopg.connect(dsn, connect_timeout=5) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
        with cluster.store_outage():
            with pytest.raises(psycopg.OperationalError):
                connection.execute("SELECT 1")
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(dsn, connect_timeout=5).close()
    with psycopg.connect(dsn, connect_timeout=5) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_the_store_is_a_fresh_database(cluster: Cluster) -> None:
    with psycopg.connect(cluster.store_url) as connection:
        name = connection.execute("SELECT current_database()").fetchone()
    assert name is not None and str(name[0]).startswith("lamina_chaos_")
