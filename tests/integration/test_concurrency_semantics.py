"""How reserved and provisioned concurrency share a function's reservation, over HTTP.

AWS carves provisioned concurrency out of the reservation: what runs on demand ($LATEST, any
qualifier without provisioned concurrency, and spillover from busy provisioned environments)
gets only what provisioning leaves. The texts of the refusals below were recorded on AWS.

The module's server has a small account pool (ACCOUNT_LIMIT), so its unreserved minimum is in
reach and no other module sees what these tests reserve.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.environments import handlers_zip, in_parallel
from tests.support.lambda_api import ROLE, error_of, invoke
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

ACCOUNT_LIMIT = 110
MINIMUM = 100
PROVISIONED = "provisioned-concurrency"
ON_DEMAND = "on-demand"
RESERVED_EXCEEDED = "ReservedFunctionConcurrentInvocationLimitExceeded"


@pytest.fixture(scope="module")
def small_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    data_dir: Path = tmp_path_factory.mktemp("concurrency-semantics") / "data"
    instance = LaminaServer(data_dir, env={"LAMINA_ACCOUNT_CONCURRENCY": str(ACCOUNT_LIMIT)})
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(small_account: LaminaServer) -> Iterator[Any]:
    instance = small_account.client("lambda", max_pool_connections=8)
    yield instance
    instance.close()


@pytest.fixture
def function(client: Any, unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """Published functions of the engine tests' handlers; deleted (and torn down) after, so
    the pool they reserved is free for the next test."""
    created: list[str] = []

    def make(**overrides: Any) -> str:
        name = unique_name("cs")
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.describe",
            Code={"ZipFile": handlers_zip()},
            Timeout=10,
            Publish=True,
            **overrides,
        )
        client.get_waiter("function_active_v2").wait(FunctionName=name)
        created.append(name)
        return name

    yield make
    for name in created:
        client.delete_function(FunctionName=name)


def provision(client: Any, name: str, qualifier: str, count: int) -> None:
    """Put a provisioned concurrency config and wait until it is READY."""
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier=qualifier, ProvisionedConcurrentExecutions=count
    )

    def ready() -> dict[str, Any] | None:
        config: dict[str, Any] = client.get_provisioned_concurrency_config(
            FunctionName=name, Qualifier=qualifier
        )
        assert config["Status"] != "FAILED", config
        return config if config["Status"] == "READY" else None

    config = wait_until(ready, timeout=60, message=f"{name}:{qualifier} never became READY")
    assert config["AllocatedProvisionedConcurrentExecutions"] == count


def throttle_reason(error: Any) -> str:
    assert isinstance(error, ClientError), error
    response = error.response
    assert response["Error"]["Code"] == "TooManyRequestsException"
    assert response["Error"]["Message"] == "Rate Exceeded."
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    return str(response["Reason"])


def unreserved(client: Any) -> int:
    limits = client.get_account_settings()["AccountLimit"]
    assert limits["ConcurrentExecutions"] == ACCOUNT_LIMIT
    return int(limits["UnreservedConcurrentExecutions"])


# ------------------------------------------------- the reservation, shared out


def test_latest_throttles_when_the_reservation_is_all_provisioned(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    assert invoke(client, name)["init"] == ON_DEMAND
    provision(client, name, "1", 1)
    # Nothing of the reservation is left to run anything on demand.
    with pytest.raises(ClientError) as excinfo:
        client.invoke(FunctionName=name, Qualifier="$LATEST", Payload=b"{}")
    assert throttle_reason(excinfo.value) == RESERVED_EXCEEDED
    # The provisioned version still runs, on its provisioned environment...
    assert invoke(client, name, Qualifier="1")["init"] == PROVISIONED
    # ...and $LATEST stays throttled, idle as that environment is.
    with pytest.raises(ClientError) as excinfo:
        client.invoke(FunctionName=name, Payload=b"{}")
    assert throttle_reason(excinfo.value) == RESERVED_EXCEEDED
    # Without the provisioned concurrency the reservation is on demand again.
    client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    wait_until(
        lambda: invoke(client, name)["init"] == ON_DEMAND,
        timeout=10,
        ignoring=(ClientError,),
        message="$LATEST stayed throttled after the provisioned config was deleted",
    )


def test_spillover_runs_on_demand_within_what_the_reservation_leaves(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    provision(client, name, "live", 1)
    # On demand, the function has 2 - 1 = 1 left, however idle the provisioned environment.
    # Each call sleeps long enough that the calls overlap even on a loaded machine.
    latest = in_parallel([lambda: invoke(client, name, {"sleep": 3})] * 2)
    assert [result["init"] for result in latest if not isinstance(result, ClientError)] == [
        ON_DEMAND
    ]
    assert [throttle_reason(error) for error in latest if isinstance(error, ClientError)] == [
        RESERVED_EXCEEDED
    ]
    results = in_parallel([lambda: invoke(client, f"{name}:live", {"sleep": 3})] * 3)
    throttled = [result for result in results if isinstance(result, ClientError)]
    served = sorted(result["init"] for result in results if not isinstance(result, ClientError))
    # One on the provisioned environment, one spilled over on demand, and the third finds
    # the reservation (2) full.
    assert served == [ON_DEMAND, PROVISIONED]
    assert [throttle_reason(error) for error in throttled] == [RESERVED_EXCEEDED]


# --------------------------------------------------------- over-subscription


def test_provisioned_concurrency_must_fit_the_reservation(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    with pytest.raises(ClientError) as excinfo:
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Requested Provisioned Concurrency should not be greater than the "
        "reservedConcurrentExecution for function",
        400,
    )
    with pytest.raises(ClientError) as excinfo:
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        " ReservedConcurrentExecutions  0 should not be lower than function's total "
        "provisioned concurrency [1].",
        400,
    )
    assert client.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 1
    # Removing the reservation is never refused: the provisioned concurrency it held moves
    # to the account's commitments.
    before = unreserved(client)
    client.delete_function_concurrency(FunctionName=name)
    assert unreserved(client) == before


def test_the_unreserved_minimum_is_kept(client: Any, function: Callable[..., str]) -> None:
    name = function()
    room = unreserved(client) - MINIMUM
    with pytest.raises(ClientError) as excinfo:
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=room + 1
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Specified ConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100].",
        400,
    )
    with pytest.raises(ClientError) as excinfo:
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=room + 1)
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100].",
        400,
    )
    # Provisioned concurrency without a reservation takes from the same pool.
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    with pytest.raises(ClientError) as excinfo:
        client.put_function_concurrency(FunctionName=function(), ReservedConcurrentExecutions=room)
    assert error_of(excinfo)[0] == "InvalidParameterValueException"
    # A change that lowers nothing is allowed at the minimum: reserving what the function
    # already provisions, or reserving 0.
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    client.put_function_concurrency(FunctionName=function(), ReservedConcurrentExecutions=0)
    assert unreserved(client) == MINIMUM + room - 1


def test_a_version_is_provisioned_directly_or_through_an_alias(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    with pytest.raises(ClientError) as excinfo:
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1
        )
    assert error_of(excinfo) == (
        "ResourceConflictException",
        "Alias can't be used for Provisioned Concurrency configuration on an already "
        "Provisioned version",
        409,
    )
    client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    with pytest.raises(ClientError) as excinfo:
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
        )
    assert error_of(excinfo) == (
        "ResourceConflictException",
        "Version is pointed by a Provisioned Concurrency alias",
        409,
    )


def test_unreserved_concurrency_leaves_out_reservations_and_unreserved_provisioning(
    client: Any, function: Callable[..., str]
) -> None:
    start = unreserved(client)
    plain, reserved = function(), function()
    client.put_provisioned_concurrency_config(
        FunctionName=plain, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    assert unreserved(client) == start - 1
    client.put_function_concurrency(FunctionName=reserved, ReservedConcurrentExecutions=3)
    assert unreserved(client) == start - 4
    # Provisioned concurrency inside a reservation takes nothing more.
    client.put_provisioned_concurrency_config(
        FunctionName=reserved, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    assert unreserved(client) == start - 4
    client.delete_provisioned_concurrency_config(FunctionName=plain, Qualifier="1")
    assert unreserved(client) == start - 3


# ------------------------------------------------------- provisioned aliases


def test_an_alias_serves_from_its_provisioned_environments(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    provision(client, name, "live", 1)
    first = invoke(client, f"{name}:live")
    assert (first["init"], first["version"]) == (PROVISIONED, "1")
    # The environments belong to the version: calling it by number finds them too.
    again = invoke(client, name, Qualifier="1")
    assert (again["init"], again["stream"]) == (PROVISIONED, first["stream"])
    assert invoke(client, name)["init"] == ON_DEMAND


def test_a_weighted_alias_provisions_both_versions_by_weight(
    client: Any, function: Callable[..., str], small_account: LaminaServer
) -> None:
    name = function(Environment={"Variables": {"STAGE": "one"}})
    client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"STAGE": "two"}}
    )
    client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert client.publish_version(FunctionName=name)["Version"] == "2"
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    provision(client, name, "live", 2)
    # Routing half the alias's traffic to version 1 moves half its environments there.
    client.update_alias(
        FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}}
    )

    def provisioned_on_version_1() -> dict[str, Any] | None:
        result: dict[str, Any] = invoke(client, f"{name}:live")
        return result if (result["version"], result["init"]) == ("1", PROVISIONED) else None

    wait_until(
        provisioned_on_version_1,
        timeout=30,
        message="no provisioned environment of version 1 served the alias",
    )
    results = [invoke(client, f"{name}:live") for _ in range(30)]
    assert {result["init"] for result in results} == {PROVISIONED}
    # Both versions served, each from its one pre-initialised environment.
    streams: dict[str, set[str]] = {}
    for result in results:
        streams.setdefault(result["version"], set()).add(result["stream"])
    assert {version: len(found) for version, found in streams.items()} == {"1": 1, "2": 1}
    assert {result["version"]: result["stage"] for result in results} == {"1": "one", "2": "two"}
    config = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert (config["Status"], config["AllocatedProvisionedConcurrentExecutions"]) == ("READY", 2)
    # Each of those calls counts as provisioned, for the alias.
    cloudwatch = small_account.client("cloudwatch")
    try:
        wait_until(
            lambda: provisioned_invocations(cloudwatch, name, "live") >= len(results),
            timeout=30,
            message="the alias's provisioned invocations were not all counted",
        )
    finally:
        cloudwatch.close()


def provisioned_invocations(cloudwatch: Any, name: str, qualifier: str) -> float:
    now = datetime.datetime.now(datetime.UTC)
    datapoints = cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="ProvisionedConcurrencyInvocations",
        Dimensions=[
            {"Name": "FunctionName", "Value": name},
            {"Name": "Resource", "Value": f"{name}:{qualifier}"},
        ],
        StartTime=now - datetime.timedelta(minutes=30),
        EndTime=now + datetime.timedelta(minutes=1),
        Period=3600,
        Statistics=["Sum"],
    )["Datapoints"]
    return float(sum(point["Sum"] for point in datapoints))
