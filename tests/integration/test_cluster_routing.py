"""Routing in a cluster: three worker nodes and one API-only node on one PostgreSQL database
and one Redis (`lamina serve --store ... --redis ...`, `--no-worker`).

Real server processes. A function reports where it ran by its task root, which lies under
the data directory of the node that runs it (with the process backend: the namespace
backend mounts it at /var/task). Each worker lends its environments 256 MB, so
it holds two 128 MB environments: enough to see a busy worker pass calls on, and the cluster
throttle when every worker is busy.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, error_of, invoke, log_tail
from tests.support.postgres import fresh_database
from tests.support.redis import REDIS_URL
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

WORKERS = 3

HANDLER = """
import os, time

def handler(event, context):
    if event.get("fail"):
        print("about to fail")
        raise ValueError("asked to fail")
    time.sleep(event.get("sleep", 0))
    return {"root": os.environ["LAMBDA_TASK_ROOT"], "pid": os.getpid()}
"""


STREAMING = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('routed ');
  await new Promise((resolve) => setTimeout(resolve, 10));
  responseStream.end('stream');
});

exports.failsMidway = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('partial');
  await new Promise((resolve) => setTimeout(resolve, 10));
  throw new Error('after some bytes');
});
"""


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    with fresh_database("lamina_routing") as url:
        yield url


@pytest.fixture(scope="module")
def cluster(
    store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LaminaServer]]:
    """Three workers, then one API-only node (last)."""
    root = tmp_path_factory.mktemp("routing")
    env = {
        "LAMINA_WORKER_MEMORY_MB": "256",
        "LAMINA_IDLE_TIMEOUT": "600",
        "LAMINA_ISOLATION": "process",
        # One key for the cluster's sealed environment variables, as an operator would give.
        "LAMINA_MASTER_KEY_FILE": str(root / "master-key"),
    }
    servers = [LaminaServer(root / f"worker{index}", env=env) for index in range(WORKERS)]
    servers.append(LaminaServer(root / "frontend", env=env))
    try:
        for server in servers[:WORKERS]:
            server.start("--store", store_url, "--redis", REDIS_URL, timeout=30)
        servers[-1].start("--store", store_url, "--redis", REDIS_URL, "--no-worker", timeout=30)
        wait_until(lambda: len(cluster_status(servers[-1])["nodes"]) == WORKERS + 1, timeout=10)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def clients(cluster: list[LaminaServer]) -> Iterator[list[Any]]:
    made = [node.client("lambda", read_timeout=60) for node in cluster]
    yield made
    for client in made:
        client.close()


@pytest.fixture
def function(clients: list[Any]) -> Callable[..., str]:
    def make(**settings: Any) -> str:
        name = f"routed-{uuid.uuid4().hex[:8]}"
        clients[0].create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": HANDLER})},
            MemorySize=128,
            Timeout=30,
            **settings,
        )
        clients[0].get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
        )
        return name

    return make


def provisioned_by_node(cluster: list[LaminaServer], key: str) -> dict[str, int]:
    """Idle provisioned environments of `key` ("function:version") by node id."""
    return {
        node["node_id"]: node["provisioned"].get(key, 0)
        for node in cluster_status(cluster[-1])["nodes"]
        if node["provisioned"].get(key)
    }


def cluster_status(node: LaminaServer) -> dict[str, Any]:
    with urllib.request.urlopen(f"{node.endpoint}/_lamina/cluster", timeout=5) as response:
        return dict(json.loads(response.read()))


def ran_on(cluster: list[LaminaServer], result: dict[str, Any]) -> int:
    """Which node ran an invocation, from the task root it reported."""
    root = Path(result["root"])
    found = [index for index, node in enumerate(cluster) if root.is_relative_to(node.data_dir)]
    assert len(found) == 1, (root, [node.data_dir for node in cluster])
    return found[0]


def test_every_node_sends_a_function_to_the_same_warm_worker(
    cluster: list[LaminaServer], clients: list[Any], function: Callable[..., str]
) -> None:
    name = function()
    results = [invoke(client, name) for _ in range(4) for client in clients]
    assert len({ran_on(cluster, result) for result in results}) == 1
    # One environment served them all: the first call's cold start, then warm.
    assert len({result["pid"] for result in results}) == 1


def test_an_api_only_node_runs_nothing(
    cluster: list[LaminaServer], clients: list[Any], function: Callable[..., str]
) -> None:
    name = function()
    assert ran_on(cluster, invoke(clients[-1], name)) < WORKERS

    # A node's view is refreshed from Redis every half heartbeat and kept as it was while
    # Redis does not answer (the CI machine's Redis has stalled for seconds): it lists every
    # node eventually, not at any given moment.
    def every_node() -> list[dict[str, Any]] | None:
        nodes: list[dict[str, Any]] = cluster_status(cluster[0])["nodes"]
        return nodes if len(nodes) == WORKERS + 1 else None

    nodes = wait_until(every_node, timeout=10)
    workers = sorted(node["worker"] for node in nodes)
    assert workers == [False, True, True, True]


def test_a_busy_worker_passes_calls_on_and_a_full_cluster_throttles(
    cluster: list[LaminaServer], clients: list[Any], function: Callable[..., str]
) -> None:
    name = function()
    capacity = 2 * WORKERS  # two 128 MB environments in each worker's 256 MB
    frontend = clients[-1]
    with ThreadPoolExecutor(capacity) as pool:
        running = [pool.submit(invoke, frontend, name, {"sleep": 6}) for _ in range(capacity)]
        wait_until(
            lambda: (
                sum(node["in_flight"] for node in cluster_status(cluster[0])["nodes"]) == capacity
            ),
            timeout=30,
        )
        with pytest.raises(ClientError) as refused:
            invoke(frontend, name)
        places = [ran_on(cluster, future.result()) for future in running]
    assert error_of(refused) == ("TooManyRequestsException", "Rate Exceeded.", 429)
    assert refused.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert sorted(places) == sorted(list(range(WORKERS)) * 2)
    # Room again once the calls ended.
    assert ran_on(cluster, invoke(frontend, name)) < WORKERS


def test_errors_and_log_tails_cross_the_hop(
    clients: list[Any], function: Callable[..., str]
) -> None:
    name = function()
    response = clients[-1].invoke(FunctionName=name, Payload=b'{"fail": true}', LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorMessage"] == "asked to fail"
    assert "about to fail" in log_tail(response)
    assert "REPORT RequestId:" in log_tail(response)
    clients[0].put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for client in clients:
        with pytest.raises(ClientError) as refused:
            client.invoke(FunctionName=name, Payload=b"{}")
        assert error_of(refused)[0] == "TooManyRequestsException"
        assert refused.value.response["Reason"] == (
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        )
    with pytest.raises(ClientError) as missing:
        clients[-1].invoke(FunctionName=name + "-missing", Payload=b"{}")
    assert error_of(missing)[0] == "ResourceNotFoundException"


def test_asynchronous_events_accepted_by_the_api_only_node_run_on_workers(
    cluster: list[LaminaServer], clients: list[Any], function: Callable[..., str]
) -> None:
    name = function()
    for _ in range(3):
        clients[-1].invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    logs = cluster[0].client("logs")
    group = f"/aws/lambda/{name}"

    def reports() -> int:
        events = logs.filter_log_events(logGroupName=group)["events"]
        return sum(event["message"].startswith("REPORT") for event in events)

    wait_until(lambda: reports() == 3, timeout=30, ignoring=(ClientError,))
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert streams
    logs.close()


def test_streamed_responses_cross_the_hop(clients: list[Any]) -> None:
    name = f"routed-stream-{uuid.uuid4().hex[:8]}"
    clients[0].create_function(
        FunctionName=name,
        Runtime="nodejs20.x",
        Role=ROLE,
        Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": STREAMING})},
    )
    clients[0].get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )

    def events(handler: str) -> list[dict[str, Any]]:
        clients[0].update_function_configuration(FunctionName=name, Handler=handler)
        clients[0].get_waiter("function_updated_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
        )
        # Through the API-only node: the stream is relayed from the worker that runs it.
        response = clients[-1].invoke_with_response_stream(FunctionName=name, Payload=b"{}")
        assert response["ExecutedVersion"] == "$LATEST"
        stream = response["EventStream"]
        try:
            return list(stream)
        finally:
            stream.close()

    streamed = events("index.handler")
    assert b"".join(event["PayloadChunk"]["Payload"] for event in streamed[:-1]) == (
        b"routed stream"
    )
    assert streamed[-1] == {"InvokeComplete": {}}
    failed = events("index.failsMidway")
    assert b"".join(event["PayloadChunk"]["Payload"] for event in failed[:-1]) == b"partial"
    assert "after some bytes" in failed[-1]["InvokeComplete"]["ErrorDetails"]


def test_provisioned_concurrency_is_spread_over_the_workers(
    cluster: list[LaminaServer], clients: list[Any], function: Callable[..., str]
) -> None:
    name = function()
    version = clients[0].publish_version(FunctionName=name)["Version"]
    clients[0].put_provisioned_concurrency_config(
        FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=4
    )
    wait_until(
        lambda: (
            clients[1].get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)[
                "Status"
            ]
            == "READY"
        ),
        timeout=60,
        interval=0.3,
    )
    config = clients[2].get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    assert config["AllocatedProvisionedConcurrentExecutions"] == 4
    key = f"{name}:{version}"
    wait_until(lambda: sum(provisioned_by_node(cluster, key).values()) == 4, timeout=15)
    # Every call of the version finds a provisioned environment, on whichever worker.
    for client in clients:
        response = client.invoke(FunctionName=name, Qualifier=version, Payload=b"{}")
        assert "FunctionError" not in response
    clients[0].delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    wait_until(lambda: not provisioned_by_node(cluster, key), timeout=15)


def test_a_code_link_from_one_node_downloads_from_another(
    cluster: list[LaminaServer], clients: list[Any], function: Callable[..., str]
) -> None:
    name = function()
    location = clients[0].get_function(FunctionName=name)["Code"]["Location"]
    other = location.replace(cluster[0].endpoint, cluster[2].endpoint)
    with urllib.request.urlopen(other, timeout=5) as response:
        assert response.read()[:2] == b"PK"


def test_the_internal_endpoint_refuses_calls_without_the_clusters_signature(
    cluster: list[LaminaServer],
) -> None:
    url = f"{cluster[0].endpoint}/_lamina/internal/invoke"
    for headers in ({}, {"x-lamina-node-auth": "1700000000:00", "x-lamina-invocation": "e30="}):
        request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        refused.value.close()
        assert refused.value.code == 401


def test_a_killed_worker_stops_getting_calls(
    cluster: list[LaminaServer], clients: list[Any], function: Callable[..., str]
) -> None:
    """Last in the module: it kills a worker."""
    name = function()
    home = ran_on(cluster, invoke(clients[-1], name))
    version = clients[0].publish_version(FunctionName=name)["Version"]
    clients[0].put_provisioned_concurrency_config(
        FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=3
    )
    key = f"{name}:{version}"
    wait_until(lambda: sum(provisioned_by_node(cluster, key).values()) == 3, timeout=60)
    cluster[home].kill()
    survivors = [index for index in range(WORKERS) if index != home]
    # At once: the dead home refuses connections, so the call moves on.
    for index in [*survivors, len(cluster) - 1]:
        assert ran_on(cluster, invoke(clients[index], name)) in survivors
    # Within the heartbeat expiry the registry forgets it.
    wait_until(
        lambda: len(cluster_status(cluster[-1])["nodes"]) == WORKERS, timeout=10, interval=0.2
    )
    # Its provisioned environments are started again by the workers that inherit them.
    wait_until(lambda: sum(provisioned_by_node(cluster, key).values()) == 3, timeout=60)
    assert len(provisioned_by_node(cluster, key)) <= WORKERS - 1
