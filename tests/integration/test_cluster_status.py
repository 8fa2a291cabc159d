"""`lamina cluster status` against real servers: a single node shows itself with no epoch; a
cluster (a worker and an API-only node on one PostgreSQL database and one Redis) shows every
node with its role and epoch, from whichever node is asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.lamina_cli import run_lamina
from tests.support.ports import free_port
from tests.support.postgres import fresh_database
from tests.support.redis import REDIS_URL
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

EMPTY_QUEUE = {"queued": 0, "retrying": 0, "in_flight": 0, "failed": 0}


def status(server: LaminaServer, *args: str) -> str:
    result = run_lamina("cluster", "status", "--endpoint", server.endpoint, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def document(server: LaminaServer) -> dict[str, Any]:
    return dict(json.loads(status(server, "--json")))


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    server = LaminaServer(tmp_path_factory.mktemp("single") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LaminaServer]]:
    """A worker, then an API-only node."""
    root: Path = tmp_path_factory.mktemp("cluster-status")
    with fresh_database("lamina_status") as store_url:
        env = {"LAMINA_MASTER_KEY_FILE": str(root / "master-key")}
        servers = [LaminaServer(root / "worker", env=env), LaminaServer(root / "frontend", env=env)]
        try:
            servers[0].start("--store", store_url, "--redis", REDIS_URL, timeout=30)
            servers[1].start("--store", store_url, "--redis", REDIS_URL, "--no-worker", timeout=30)
            yield servers
        finally:
            for server in servers:
                server.stop()


def test_a_single_node_shows_itself_with_no_epoch(single: LaminaServer) -> None:
    seen = document(single)
    (node,) = seen["nodes"]
    assert node["this"] and node["worker"] and not node["suspect"]
    assert node["epoch"] is None
    assert node["address"] == single.endpoint
    assert seen["queue"] == EMPTY_QUEUE

    lines = status(single).splitlines()
    assert lines[0].split()[:4] == ["NODE", "ADDRESS", "ROLE", "EPOCH"]
    row = lines[1].split()
    assert row[:5] == [node["node_id"], "(this)", single.endpoint, "worker", "-"]
    assert lines[-1] == "Async queue: 0 queued, 0 retrying, 0 in flight, 0 failed"


def test_a_cluster_shows_every_node_from_any_node(cluster: list[LaminaServer]) -> None:
    worker, frontend = cluster
    wait_until(lambda: len(document(frontend)["nodes"]) == 2, timeout=15)
    wait_until(lambda: len(document(worker)["nodes"]) == 2, timeout=15)
    seen = document(frontend)
    nodes = {node["address"]: node for node in seen["nodes"]}
    assert set(nodes) == {worker.endpoint, frontend.endpoint}
    assert nodes[worker.endpoint]["worker"] and not nodes[frontend.endpoint]["worker"]
    assert nodes[frontend.endpoint]["this"] and not nodes[worker.endpoint]["this"]
    epochs = [node["epoch"] for node in nodes.values()]
    assert all(isinstance(epoch, int) and epoch > 0 for epoch in epochs)
    assert len(set(epochs)) == 2
    assert nodes[worker.endpoint]["capacity_mb"] > 0
    assert seen["queue"] == EMPTY_QUEUE

    rows = {line.split()[0]: line for line in status(frontend).splitlines()[1:3]}
    frontend_row = rows[nodes[frontend.endpoint]["node_id"]].split()
    frontend_epoch = str(nodes[frontend.endpoint]["epoch"])
    assert frontend_row[1:5] == ["(this)", frontend.endpoint, "frontend", frontend_epoch]
    assert frontend_row[-1] == "-"  # a frontend lends no memory
    worker_row = rows[nodes[worker.endpoint]["node_id"]].split()
    assert worker_row[1:4] == [worker.endpoint, "worker", str(nodes[worker.endpoint]["epoch"])]
    assert worker_row[-1] == "MB"


def test_no_server_answering_is_an_error_that_says_so() -> None:
    result = run_lamina("cluster", "status", "--endpoint", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "no Lamina server answers" in result.stderr
