"""Reserved and provisioned concurrency over HTTP.

These tests run against their own server with a small account pool (ACCOUNT_LIMIT), so the
limits are reachable and no other test module sees the concurrency they reserve.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.lambda_api import error_of
from tests.support.server import LaminaServer

ACCOUNT_LIMIT = 400
RESERVABLE = ACCOUNT_LIMIT - 100
ARN_PREFIX = "arn:aws:lambda:us-east-1:000000000000:function:"
UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."


@pytest.fixture(scope="module")
def small_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    data_dir: Path = tmp_path_factory.mktemp("concurrency") / "data"
    instance = LaminaServer(data_dir, env={"LAMINA_ACCOUNT_CONCURRENCY": str(ACCOUNT_LIMIT)})
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def lambda_client(small_account: LaminaServer) -> Any:
    # Overrides the session client, so `create_function` builds functions on this server too.
    return small_account.client("lambda")


@pytest.fixture
def function(
    lambda_client: Any, create_function: Callable[..., Any]
) -> Iterator[Callable[..., str]]:
    """Create functions that are deleted after the test, returning the pool they held."""
    created: list[str] = []

    def make(**overrides: Any) -> str:
        name: str = create_function(**overrides)["FunctionName"]
        created.append(name)
        return name

    yield make
    for name in created:
        lambda_client.delete_function(FunctionName=name)


def unreserved(lambda_client: Any) -> int:
    limits = lambda_client.get_account_settings()["AccountLimit"]
    assert limits["ConcurrentExecutions"] == ACCOUNT_LIMIT
    return int(limits["UnreservedConcurrentExecutions"])


# ---------------------------------------------------------------------- reserved


def test_put_get_delete_function_concurrency(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    assert "ReservedConcurrentExecutions" not in lambda_client.get_function_concurrency(
        FunctionName=name
    )
    before = unreserved(lambda_client)
    response = lambda_client.put_function_concurrency(
        FunctionName=name, ReservedConcurrentExecutions=25
    )
    assert response["ReservedConcurrentExecutions"] == 25
    assert (
        lambda_client.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"]
        == 25
    )
    assert lambda_client.get_function(FunctionName=name)["Concurrency"] == {
        "ReservedConcurrentExecutions": 25
    }
    assert unreserved(lambda_client) == before - 25
    response = lambda_client.delete_function_concurrency(FunctionName=name)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "ReservedConcurrentExecutions" not in lambda_client.get_function_concurrency(
        FunctionName=name
    )
    assert unreserved(lambda_client) == before


def test_zero_reserved_concurrency_is_allowed(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert (
        lambda_client.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"]
        == 0
    )


def test_reserved_concurrency_keeps_the_unreserved_minimum(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    first, second = function(), function()
    lambda_client.put_function_concurrency(
        FunctionName=first, ReservedConcurrentExecutions=RESERVABLE - 10
    )
    assert unreserved(lambda_client) == 110
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_concurrency(FunctionName=second, ReservedConcurrentExecutions=11)
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100].",
        400,
    )
    # Replacing a function's own reservation only counts the new value.
    lambda_client.put_function_concurrency(
        FunctionName=first, ReservedConcurrentExecutions=RESERVABLE
    )
    assert unreserved(lambda_client) == 100


def test_qualified_or_unknown_function_is_rejected(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Publish=True)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_concurrency(
            FunctionName=f"{name}:1", ReservedConcurrentExecutions=5
        )
    assert error_of(excinfo)[0::2] == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function_concurrency(FunctionName="no-such-function")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function_concurrency(FunctionName="no-such-function")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)


# ------------------------------------------------------------------- provisioned


def test_put_and_get_provisioned_concurrency(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Publish=True)
    response = lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=3
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert response["RequestedProvisionedConcurrentExecutions"] == 3
    assert response["AllocatedProvisionedConcurrentExecutions"] == 0
    assert response["AvailableProvisionedConcurrentExecutions"] == 0
    assert response["Status"] == "IN_PROGRESS"
    assert response["LastModified"].endswith("+0000")
    found = lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert found["RequestedProvisionedConcurrentExecutions"] == 3
    # The engine may already have provisioned it (see tests/integration/test_provisioned.py).
    assert found["Status"] in {"IN_PROGRESS", "READY"}
    assert found["LastModified"] == response["LastModified"]
    # A second Put replaces the config.
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=f"{name}:1", Qualifier="1", ProvisionedConcurrentExecutions=5
    )
    found = lambda_client.get_provisioned_concurrency_config(
        FunctionName=f"{name}:1", Qualifier="1"
    )
    assert found["RequestedProvisionedConcurrentExecutions"] == 5


def test_provisioned_concurrency_on_alias(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function(Publish=True)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lambda_client.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2
    )
    assert (
        lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")[
            "RequestedProvisionedConcurrentExecutions"
        ]
        == 2
    )
    for qualifier in ("$LATEST", "edge"):
        with pytest.raises(ClientError) as excinfo:
            lambda_client.put_provisioned_concurrency_config(
                FunctionName=name, Qualifier=qualifier, ProvisionedConcurrentExecutions=1
            )
        assert error_of(excinfo) == ("InvalidParameterValueException", UNPUBLISHED, 400)


def test_provisioned_concurrency_needs_an_existing_qualifier(
    lambda_client: Any, function: Callable[..., str], small_account: LaminaServer
) -> None:
    name = function(Publish=True)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="9", ProvisionedConcurrentExecutions=1
        )
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Function not found: {ARN_PREFIX}{name}:9",
        404,
    )
    unchecked = small_account.client("lambda", parameter_validation=False)
    with pytest.raises(ClientError) as excinfo:
        unchecked.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=0
        )
    unchecked.close()
    assert error_of(excinfo)[0] == "ValidationException"


def test_missing_provisioned_config_is_not_found(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Publish=True)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert error_of(excinfo) == (
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function",
        404,
    )


def test_delete_provisioned_concurrency(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function(Publish=True)
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    response = lambda_client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert error_of(excinfo)[0] == "ProvisionedConcurrencyConfigNotFoundException"


def test_provisioned_is_capped_by_reserved_concurrency(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Publish=True)
    # Two aliases of one version may each be provisioned (the version itself then may not).
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lambda_client.create_alias(FunctionName=name, Name="blue", FunctionVersion="1")
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=10)
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="blue", ProvisionedConcurrentExecutions=6
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=5
        )
    code, message, _ = error_of(excinfo)
    assert code == "InvalidParameterValueException"
    assert "reservedConcurrentExecution" in message
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=4
    )
    # Reserved concurrency may not drop below what is provisioned.
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=9)
    assert error_of(excinfo)[0] == "InvalidParameterValueException"


def test_provisioned_keeps_the_unreserved_minimum(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Publish=True)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=RESERVABLE + 1
        )
    code, message, _ = error_of(excinfo)
    assert code == "InvalidParameterValueException"
    assert "[100]" in message
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=RESERVABLE
    )
    other = function()
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_concurrency(FunctionName=other, ReservedConcurrentExecutions=1)
    assert error_of(excinfo)[0] == "InvalidParameterValueException"


def test_list_provisioned_concurrency_configs(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Publish=True)
    for alias in ("amber", "blue", "green"):
        lambda_client.create_alias(FunctionName=name, Name=alias, FunctionVersion="1")
    for qualifier, count in (("amber", 1), ("blue", 2), ("green", 3)):
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier=qualifier, ProvisionedConcurrentExecutions=count
        )
    listed = lambda_client.list_provisioned_concurrency_configs(FunctionName=name)
    configs = listed["ProvisionedConcurrencyConfigs"]
    assert [config["FunctionArn"] for config in configs] == [
        f"{ARN_PREFIX}{name}:amber",
        f"{ARN_PREFIX}{name}:blue",
        f"{ARN_PREFIX}{name}:green",
    ]
    assert [config["RequestedProvisionedConcurrentExecutions"] for config in configs] == [1, 2, 3]
    assert {config["Status"] for config in configs} <= {"IN_PROGRESS", "READY"}
    assert "NextMarker" not in listed

    first = lambda_client.list_provisioned_concurrency_configs(FunctionName=name, MaxItems=2)
    assert len(first["ProvisionedConcurrencyConfigs"]) == 2
    rest = lambda_client.list_provisioned_concurrency_configs(
        FunctionName=name, MaxItems=2, Marker=first["NextMarker"]
    )
    assert [config["FunctionArn"] for config in rest["ProvisionedConcurrencyConfigs"]] == [
        f"{ARN_PREFIX}{name}:green"
    ]
    assert "NextMarker" not in rest

    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_provisioned_concurrency_configs(FunctionName="no-such-function")
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_deleting_a_version_deletes_its_provisioned_config(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Publish=True)
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=RESERVABLE
    )
    lambda_client.delete_function(FunctionName=name, Qualifier="1")
    assert (
        lambda_client.list_provisioned_concurrency_configs(FunctionName=name)[
            "ProvisionedConcurrencyConfigs"
        ]
        == []
    )
    # The pool it held is free again.
    other = function()
    lambda_client.put_function_concurrency(FunctionName=other, ReservedConcurrentExecutions=1)
