"""Asynchronous-invocation configs over HTTP: put, update, get, delete, list."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.lambda_api import error_of
from tests.support.server import LaminaServer

ARN = "arn:aws:lambda:us-east-1:000000000000:function"
QUEUE = "arn:aws:sqs:us-east-1:000000000000:failures"
TOPIC = "arn:aws:sns:us-east-1:000000000000:results"
BUS = "arn:aws:events:us-east-1:000000000000:event-bus/default"
BUCKET = "arn:aws:s3:::failed-events"


def test_put_then_get_returns_the_config(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    put = lambda_client.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=300,
        DestinationConfig={
            "OnSuccess": {"Destination": TOPIC},
            "OnFailure": {"Destination": QUEUE},
        },
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert put["FunctionArn"] == f"{ARN}:{name}:$LATEST"
    assert isinstance(put["LastModified"], datetime)
    got = lambda_client.get_function_event_invoke_config(FunctionName=name)
    assert got["FunctionArn"] == f"{ARN}:{name}:$LATEST"
    assert got["MaximumRetryAttempts"] == 1
    assert got["MaximumEventAgeInSeconds"] == 300
    assert got["DestinationConfig"] == {
        "OnSuccess": {"Destination": TOPIC},
        "OnFailure": {"Destination": QUEUE},
    }


def test_put_replaces_and_update_merges(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    lambda_client.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=0,
        MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnFailure": {"Destination": QUEUE}},
    )
    replaced = lambda_client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=2
    )
    assert replaced["MaximumRetryAttempts"] == 2
    assert "MaximumEventAgeInSeconds" not in replaced
    assert replaced["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}

    merged = lambda_client.update_function_event_invoke_config(
        FunctionName=name,
        MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnSuccess": {"Destination": BUS}},
    )
    assert merged["MaximumRetryAttempts"] == 2
    assert merged["MaximumEventAgeInSeconds"] == 3600
    assert merged["DestinationConfig"]["OnSuccess"] == {"Destination": BUS}
    merged = lambda_client.update_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": BUCKET}}
    )
    assert merged["DestinationConfig"] == {
        "OnSuccess": {"Destination": BUS},
        "OnFailure": {"Destination": BUCKET},
    }
    stored = lambda_client.get_function_event_invoke_config(FunctionName=name)
    assert stored["MaximumEventAgeInSeconds"] == 3600


def test_update_without_a_config_is_not_found(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"The function {ARN}:{name}:$LATEST doesn't have an EventInvokeConfig",
        404,
    )


def test_configs_are_per_qualifier(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    name = create_function(Publish=True)["FunctionName"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    by_name = lambda_client.put_function_event_invoke_config(
        FunctionName=f"{name}:1", MaximumRetryAttempts=0
    )
    assert by_name["FunctionArn"] == f"{ARN}:{name}:1"
    by_query = lambda_client.put_function_event_invoke_config(
        FunctionName=name, Qualifier="live", MaximumRetryAttempts=1
    )
    assert by_query["FunctionArn"] == f"{ARN}:{name}:live"
    alias = lambda_client.get_function_event_invoke_config(FunctionName=f"{name}:live")
    assert alias["MaximumRetryAttempts"] == 1
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function_event_invoke_config(FunctionName=name)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_unknown_qualifier_and_function_are_not_found(
    lambda_client: Any, create_function: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_event_invoke_config(
            FunctionName=name, Qualifier="9", MaximumRetryAttempts=1
        )
    assert error_of(excinfo) == ("ResourceNotFoundException", "The function doesn't exist.", 404)
    missing = unique_name("missing")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function_event_invoke_config(FunctionName=missing)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"The function {ARN}:{missing}:$LATEST doesn't have an EventInvokeConfig",
        404,
    )


@pytest.mark.parametrize(
    ("condition", "arn"),
    [
        ("OnSuccess", BUCKET),
        ("OnSuccess", "arn:aws:iam::000000000000:role/not-a-destination"),
        ("OnFailure", "arn:aws:dynamodb:us-east-1:000000000000:table/events"),
    ],
)
def test_destinations_of_the_wrong_kind_are_refused(
    lambda_client: Any, create_function: Callable[..., Any], condition: str, arn: str
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={condition: {"Destination": arn}}
        )
    on_success = f"OnSuccess(destination={arn})" if condition == "OnSuccess" else "null"
    on_failure = f"OnFailure(destination={arn})" if condition == "OnFailure" else "null"
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        f"The provided destination config DestinationConfig(onSuccess={on_success}, "
        f"onFailure={on_failure}) is invalid.",
        400,
    )


def test_a_function_may_not_be_its_own_destination_even_by_version(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    config = create_function()
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_event_invoke_config(
            FunctionName=config["FunctionName"],
            DestinationConfig={"OnSuccess": {"Destination": f"{config['FunctionArn']}:$LATEST"}},
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "You can't specify the function as a destination for itself.",
        400,
    )


def test_out_of_range_settings_fail_validation(
    lambda_client: Any, server: LaminaServer, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=3)
    assert error_of(excinfo)[0] == "ValidationException"
    # boto3 itself checks minimums, so send this one unchecked to reach the server.
    with (
        closing(server.client("lambda", parameter_validation=False)) as unchecked,
        pytest.raises(ClientError) as excinfo,
    ):
        unchecked.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=59)
    assert error_of(excinfo)[0] == "ValidationException"


def test_delete_removes_the_config(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    name = create_function()["FunctionName"]
    lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    deleted = lambda_client.delete_function_event_invoke_config(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function_event_invoke_config(FunctionName=name)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"The function {ARN}:{name}:$LATEST doesn't have an EventInvokeConfig",
        404,
    )


def test_list_pages_through_every_qualifier(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    for qualifier in ("$LATEST", "1", "live"):
        lambda_client.put_function_event_invoke_config(
            FunctionName=name, Qualifier=qualifier, MaximumRetryAttempts=1
        )
    seen: list[str] = []
    kwargs: dict[str, Any] = {"FunctionName": name, "MaxItems": 2}
    while True:
        page = lambda_client.list_function_event_invoke_configs(**kwargs)
        assert len(page["FunctionEventInvokeConfigs"]) <= 2
        seen += [item["FunctionArn"] for item in page["FunctionEventInvokeConfigs"]]
        if "NextMarker" not in page:
            break
        kwargs["Marker"] = page["NextMarker"]
    assert sorted(seen) == sorted(f"{ARN}:{name}:{q}" for q in ("$LATEST", "1", "live"))


def test_list_refuses_a_qualified_name(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_function_event_invoke_configs(FunctionName=f"{name}:1")
    assert error_of(excinfo)[0] == "InvalidParameterValueException"
