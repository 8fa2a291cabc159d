"""Concurrency limits across nodes (`lamina serve` with LAMINA_REDIS): two servers on one
Redis share a function's reservation, and a node whose Redis does not answer refuses
invocations with AWS's throttle rather than run them uncounted.

The two servers keep their own SQLite stores (the shared PostgreSQL store is tested on its
own): each creates the function under the same name, and the leases are per function name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lamina.invoke.cluster_governor import function_pool
from lamina.store.redis import open_redis_leases
from tests.support.environments import handlers_zip
from tests.support.lambda_api import ROLE, invoke
from tests.support.redis import REDIS_URL, dead_url
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

RESERVED_EXCEEDED = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_EXCEEDED = "ConcurrentInvocationLimitExceeded"
# Long enough that the held call is surely still running when the other node is asked.
HOLD_S = 8


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[LaminaServer]]:
    started: list[LaminaServer] = []
    try:
        for node in ("a", "b"):
            (tmp_path / node).mkdir()
            server = LaminaServer(tmp_path / node / "data", env={"LAMINA_REDIS": REDIS_URL})
            started.append(server.start())
        yield started
    finally:
        for server in started:
            server.stop()


def create(client: Any, name: str, reserved: int) -> None:
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.describe",
        Code={"ZipFile": handlers_zip()},
        Timeout=HOLD_S + 20,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)


def throttle_reason(error: Any) -> str:
    assert isinstance(error, ClientError), error
    response = error.response
    assert response["Error"]["Code"] == "TooManyRequestsException"
    assert response["Error"]["Message"] == "Rate Exceeded."
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    return str(response["Reason"])


@pytest.mark.slow
def test_two_nodes_share_a_reservation(servers: list[LaminaServer]) -> None:
    name = f"cluster-{uuid.uuid4().hex[:12]}"
    clients = [server.client("lambda", read_timeout=HOLD_S + 30) for server in servers]
    for client in clients:
        create(client, name, reserved=1)
    leases = open_redis_leases(REDIS_URL)
    try:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(invoke, clients[0], name, {"sleep": HOLD_S})
            wait_until(lambda: leases.count(function_pool(name)) == 1, timeout=30)
            with pytest.raises(ClientError) as excinfo:
                clients[1].invoke(FunctionName=name, Payload=b"{}")
            assert throttle_reason(excinfo.value) == RESERVED_EXCEEDED
            held.result(timeout=HOLD_S + 30)
        assert leases.count(function_pool(name)) == 0
        # The slot is back for either node.
        invoke(clients[1], name)
    finally:
        leases.close()
        for client in clients:
            client.delete_function(FunctionName=name)
            client.close()


def test_a_node_without_its_redis_throttles(tmp_path: Path) -> None:
    server = LaminaServer(tmp_path / "data", env={"LAMINA_REDIS": dead_url()}).start()
    client = server.client("lambda")
    try:
        name = f"cluster-{uuid.uuid4().hex[:12]}"
        create(client, name, reserved=5)  # the control plane does not need Redis
        with pytest.raises(ClientError) as excinfo:
            client.invoke(FunctionName=name, Payload=b"{}")
        assert throttle_reason(excinfo.value) == ACCOUNT_EXCEEDED
        client.delete_function_concurrency(FunctionName=name)
        with pytest.raises(ClientError) as excinfo:
            client.invoke(FunctionName=name, Payload=b"{}")
        assert throttle_reason(excinfo.value) == ACCOUNT_EXCEEDED
    finally:
        client.close()
        server.stop()
