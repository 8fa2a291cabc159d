"""Tags over HTTP: TagResource, UntagResource, ListTags on function ARNs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.lambda_api import error_of


def test_tags_from_create_function_are_listed(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    config = create_function(Tags={"team": "core", "stage": "dev"})
    assert lambda_client.list_tags(Resource=config["FunctionArn"])["Tags"] == {
        "team": "core",
        "stage": "dev",
    }


def test_tag_and_untag_resource(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    config = create_function(Tags={"team": "core"})
    arn = config["FunctionArn"]
    response = lambda_client.tag_resource(Resource=arn, Tags={"team": "edge", "cost": "42"})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"team": "edge", "cost": "42"}
    found = lambda_client.get_function(FunctionName=config["FunctionName"])
    assert found["Tags"] == {"team": "edge", "cost": "42"}
    response = lambda_client.untag_resource(Resource=arn, TagKeys=["team", "absent"])
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"cost": "42"}
    lambda_client.untag_resource(Resource=arn, TagKeys=["cost"])
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {}
    assert "Tags" not in lambda_client.get_function(FunctionName=config["FunctionName"])


def test_qualified_arn_is_rejected(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    config = create_function(Publish=True)
    for operation in (
        lambda: lambda_client.list_tags(Resource=config["FunctionArn"]),
        lambda: lambda_client.tag_resource(Resource=config["FunctionArn"], Tags={"a": "b"}),
        lambda: lambda_client.untag_resource(Resource=config["FunctionArn"], TagKeys=["a"]),
    ):
        with pytest.raises(ClientError) as excinfo:
            operation()
        assert error_of(excinfo)[0::2] == ("InvalidParameterValueException", 400)


def test_non_function_arn_is_rejected(lambda_client: Any) -> None:
    # Functions and event source mappings take tags here (test_event_source_mappings).
    arn = "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdef0"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_tags(Resource=arn)
    assert error_of(excinfo)[0] == "InvalidParameterValueException"


def test_unknown_function_is_not_found(lambda_client: Any) -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:no-such-fn"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(Resource=arn, Tags={"a": "b"})
    assert error_of(excinfo) == ("ResourceNotFoundException", f"Function not found: {arn}", 404)


def test_another_accounts_function_is_access_denied(lambda_client: Any) -> None:
    arn = "arn:aws:lambda:us-east-1:111111111111:function:no-such-fn"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(Resource=arn, Tags={"a": "b"})
    assert error_of(excinfo) == (
        "AccessDeniedException",
        "User: arn:aws:iam::000000000000:root is not authorized to perform: "
        f"lambda:TagResource on resource: {arn} because no resource-based policy allows the "
        "lambda:TagResource action",
        403,
    )


def test_reserved_keys_are_rejected(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    arn = create_function()["FunctionArn"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(Resource=arn, Tags={"aws:owner": "me"})
    code, message, status = error_of(excinfo)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "aws:owner" in message
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {}


def test_at_most_fifty_tags(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    arn = create_function()["FunctionArn"]
    lambda_client.tag_resource(Resource=arn, Tags={f"k{index}": "v" for index in range(50)})
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(Resource=arn, Tags={"one-more": "v"})
    assert error_of(excinfo)[0] == "InvalidParameterValueException"
    # Overwriting an existing key does not add one.
    lambda_client.tag_resource(Resource=arn, Tags={"k0": "changed"})
    tags = lambda_client.list_tags(Resource=arn)["Tags"]
    assert len(tags) == 50
    assert tags["k0"] == "changed"


def test_create_function_applies_tag_rules(create_function: Callable[..., Any]) -> None:
    with pytest.raises(ClientError) as excinfo:
        create_function(Tags={"aws:owner": "me"})
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as excinfo:
        create_function(Tags={f"k{n}": "v" for n in range(51)})
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException"
