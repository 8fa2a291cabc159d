"""Concurrency in the engine over HTTP: throttles, scale-out, idle reaping, stale environments.

Functions report which environment ran them (its log stream, which names one environment)
and which process it was, so the tests can check on the host that an environment's processes
are really gone.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.environments import alive, handlers_zip, in_parallel, wait_until_gone
from tests.support.lambda_api import ROLE, invoke
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

SMALL_ACCOUNT = 3
IDLE_TIMEOUT_S = 1


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    """A server whose whole account pool is SMALL_ACCOUNT and whose environments idle out
    after IDLE_TIMEOUT_S."""
    instance = LaminaServer(
        tmp_path_factory.mktemp("engine-concurrency") / "data",
        env={
            "LAMINA_ACCOUNT_CONCURRENCY": str(SMALL_ACCOUNT),
            "LAMINA_IDLE_TIMEOUT": str(IDLE_TIMEOUT_S),
        },
    )
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def small_client(small_server: LaminaServer) -> Iterator[Any]:
    client = small_server.client("lambda", max_pool_connections=SMALL_ACCOUNT + 2)
    yield client
    client.close()


@pytest.fixture
def function(create_function: Callable[..., Any]) -> Callable[..., str]:
    """A function of HANDLERS on the session server."""

    def make(**overrides: Any) -> str:
        params = {
            "Handler": "app.describe",
            "Code": {"ZipFile": handlers_zip()},
            "Timeout": 10,
            **overrides,
        }
        return str(create_function(**params)["FunctionName"])

    return make


@pytest.fixture
def small_function(small_client: Any, unique_name: Callable[[str], str]) -> Callable[[], str]:
    """A function of HANDLERS on the small server."""

    def make() -> str:
        name = unique_name("small")
        small_client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.describe",
            Code={"ZipFile": handlers_zip()},
            Timeout=10,
        )
        return name

    return make


@pytest.fixture
def parallel_client(server: LaminaServer) -> Iterator[Any]:
    client = server.client("lambda", max_pool_connections=8)
    yield client
    client.close()


# ------------------------------------------------------------------------ throttles


def throttle_reason(error: Any) -> str:
    assert isinstance(error, ClientError), error
    response = error.response
    assert response["Error"]["Code"] == "TooManyRequestsException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert response["Error"]["Message"] == "Rate Exceeded."
    # AWS sends no Retry-After (retryAfterSeconds) for a concurrency throttle.
    assert "retryAfterSeconds" not in response
    return str(response["Reason"])


def test_reserved_concurrency_zero_throttles_every_call(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for _ in range(2):
        with pytest.raises(ClientError) as excinfo:
            lambda_client.invoke(FunctionName=name, Payload=b"{}")
        assert throttle_reason(excinfo.value) == (
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        )
    lambda_client.delete_function_concurrency(FunctionName=name)
    assert invoke(lambda_client, name)["init"] == "on-demand"


def test_throttle_is_aws_shaped_on_the_wire(
    lambda_client: Any, function: Callable[..., str], server: LaminaServer
) -> None:
    name = function()
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    request = urllib.request.Request(
        f"{server.endpoint}/2015-03-31/functions/{name}/invocations", data=b"{}", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=10)
    with excinfo.value as response:
        assert response.status == 429
        assert response.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
        assert "Retry-After" not in response.headers
        assert response.headers["x-amzn-RequestId"]
        assert json.loads(response.read()) == {
            "Type": "User",
            "message": "Rate Exceeded.",
            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        }


def test_reserved_concurrency_caps_concurrent_calls(
    parallel_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    parallel_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    results = in_parallel([lambda: invoke(parallel_client, name, {"sleep": 2})] * 4)
    throttled = [result for result in results if isinstance(result, ClientError)]
    served = [result for result in results if not isinstance(result, ClientError)]
    assert len(served) == 2
    assert {throttle_reason(error) for error in throttled} == {
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    }
    # The leases were given back: the function runs again.
    assert invoke(parallel_client, name)["init"] == "on-demand"


def account_in_flight(server: LaminaServer) -> int:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/top", timeout=10) as response:
        return int(json.load(response)["Account"]["ConcurrentExecutions"])


def test_exhausted_account_pool_throttles(
    small_server: LaminaServer, small_client: Any, small_function: Callable[[], str]
) -> None:
    name, other = small_function(), small_function()
    settings = small_client.get_account_settings()["AccountLimit"]
    assert settings["ConcurrentExecutions"] == SMALL_ACCOUNT
    assert settings["UnreservedConcurrentExecutions"] == SMALL_ACCOUNT
    calls = [lambda: invoke(small_client, name, {"sleep": 3})] * SMALL_ACCOUNT

    def late_call() -> Any:
        # Only once every other call holds its lease (each sleeps 3 s in the function).
        wait_until(
            lambda: account_in_flight(small_server) >= SMALL_ACCOUNT,
            timeout=20,
            interval=0.05,
            message="the other calls never got in flight",
        )
        return invoke(small_client, other)

    *served, late = in_parallel([*calls, late_call])
    assert all(not isinstance(result, ClientError) for result in served), served
    assert throttle_reason(late) == "ConcurrentInvocationLimitExceeded"
    assert invoke(small_client, other)["init"] == "on-demand"


# ------------------------------------------------------------------------ scale-out


def test_concurrent_calls_scale_out_to_new_environments(
    parallel_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    count = 4
    results = in_parallel([lambda: invoke(parallel_client, name, {"sleep": 2.5})] * count)
    assert not [result for result in results if isinstance(result, ClientError)], results
    assert len({result["stream"] for result in results}) == count
    assert len({(result["process"]["pid"], result["process"]["pidns"]) for result in results}) > 1
    # They ran at the same time: every call started before any of them ended.
    assert max(result["started"] for result in results) < min(result["ended"] for result in results)


# -------------------------------------------------------------------------- reaping


def test_idle_environment_is_reaped_after_the_timeout(
    small_client: Any, small_function: Callable[[], str]
) -> None:
    name = small_function()
    first = invoke(small_client, name)
    assert invoke(small_client, name)["stream"] == first["stream"]  # warm while in use
    wait_until_gone(first["process"])
    second = invoke(small_client, name)
    assert second["stream"] != first["stream"]
    assert alive(second["process"])


def test_changed_configuration_discards_idle_environments(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Environment={"Variables": {"STAGE": "one"}})
    before = invoke(lambda_client, name)
    assert before["stage"] == "one"
    lambda_client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"STAGE": "two"}}
    )
    wait_until_gone(before["process"])
    after = invoke(lambda_client, name)
    assert after["stage"] == "two"
    assert after["stream"] != before["stream"]
    lambda_client.update_function_code(FunctionName=name, ZipFile=handlers_zip("\n# new code\n"))
    wait_until_gone(after["process"])
    assert invoke(lambda_client, name)["stream"] != after["stream"]


def test_deleted_function_environments_are_discarded(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    process = invoke(lambda_client, name)["process"]
    lambda_client.delete_function(FunctionName=name)
    wait_until_gone(process)
