"""Resource-based policies over HTTP: AddPermission, GetPolicy, RemovePermission."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.lambda_api import error_of

ARN_PREFIX = "arn:aws:lambda:us-east-1:000000000000:function:"
BUCKET = "arn:aws:s3:::my-bucket"


def test_add_permission_returns_statement_in_aws_format(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    response = lambda_client.add_permission(
        FunctionName=name,
        StatementId="s3-invoke",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn=BUCKET,
        SourceAccount="123456789012",
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(response["Statement"]) == {
        "Sid": "s3-invoke",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": ARN_PREFIX + name,
        "Condition": {
            "StringEquals": {"AWS:SourceAccount": "123456789012"},
            "ArnLike": {"AWS:SourceArn": BUCKET},
        },
    }


def test_get_policy_lists_every_statement(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    lambda_client.add_permission(
        FunctionName=name, StatementId="acct", Action="lambda:*", Principal="123456789012"
    )
    lambda_client.add_permission(
        FunctionName=name,
        StatementId="url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    lambda_client.add_permission(
        FunctionName=name,
        StatementId="org",
        Action="lambda:InvokeFunction",
        Principal="*",
        PrincipalOrgID="o-abcdefghij",
    )
    response = lambda_client.get_policy(FunctionName=name)
    policy = json.loads(response["Policy"])
    assert policy["Version"] == "2012-10-17"
    assert policy["Id"] == "default"
    statements = {statement["Sid"]: statement for statement in policy["Statement"]}
    assert list(statements) == ["acct", "url", "org"]
    assert statements["acct"]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert statements["url"]["Principal"] == "*"
    assert statements["url"]["Condition"] == {
        "StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}
    }
    assert statements["org"]["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}
    }
    assert response["RevisionId"]


def test_qualified_permission_uses_qualified_resource(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    by_query = lambda_client.add_permission(
        FunctionName=name,
        Qualifier="live",
        StatementId="a",
        Action="lambda:InvokeFunction",
        Principal="arn:aws:iam::123456789012:role/caller",
    )
    by_name = lambda_client.add_permission(
        FunctionName=f"{name}:1",
        StatementId="b",
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
    )
    assert json.loads(by_query["Statement"])["Resource"] == f"{ARN_PREFIX}{name}:live"
    assert json.loads(by_query["Statement"])["Principal"] == {
        "AWS": "arn:aws:iam::123456789012:role/caller"
    }
    assert json.loads(by_name["Statement"])["Resource"] == f"{ARN_PREFIX}{name}:1"
    # Each qualifier has its own policy; the unqualified function has none.
    alias_policy = json.loads(
        lambda_client.get_policy(FunctionName=name, Qualifier="live")["Policy"]
    )
    assert [statement["Sid"] for statement in alias_policy["Statement"]] == ["a"]
    version_policy = json.loads(lambda_client.get_policy(FunctionName=f"{name}:1")["Policy"])
    assert [statement["Sid"] for statement in version_policy["Statement"]] == ["b"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_policy(FunctionName=name)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_latest_qualifier_is_rejected(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(
            FunctionName=name,
            Qualifier="$LATEST",
            StatementId="s",
            Action="lambda:InvokeFunction",
            Principal="*",
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "We currently do not support adding policies for $LATEST.",
        400,
    )


def test_unknown_qualifier_or_function_is_not_found(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(
            FunctionName=name,
            Qualifier="7",
            StatementId="s",
            Action="lambda:InvokeFunction",
            Principal="*",
        )
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Function not found: {ARN_PREFIX}{name}:7",
        404,
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_policy(FunctionName="no-such-function-here")
    assert error_of(excinfo)[0] == "ResourceNotFoundException"
    assert "no-such-function-here" in error_of(excinfo)[1]


def test_duplicate_statement_id_is_a_conflict(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    params = {
        "FunctionName": name,
        "StatementId": "dup",
        "Action": "lambda:InvokeFunction",
        "Principal": "sns.amazonaws.com",
    }
    lambda_client.add_permission(**params)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(**params)
    assert error_of(excinfo) == (
        "ResourceConflictException",
        "The statement id (dup) provided already exists. Please provide a new statement id, "
        "or remove the existing statement.",
        409,
    )


def test_invalid_principal_is_rejected(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(
            FunctionName=name, StatementId="s", Action="lambda:InvokeFunction", Principal="nobody"
        )
    assert error_of(excinfo)[0] == "InvalidParameterValueException"


def test_revision_id_guards_changes(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    params = {"FunctionName": name, "Action": "lambda:InvokeFunction", "Principal": "*"}
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(StatementId="first", RevisionId="stale", **params)
    assert error_of(excinfo)[0::2] == ("PreconditionFailedException", 412)
    lambda_client.add_permission(StatementId="first", **params)
    revision = lambda_client.get_policy(FunctionName=name)["RevisionId"]
    lambda_client.add_permission(StatementId="second", RevisionId=revision, **params)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(StatementId="third", RevisionId=revision, **params)
    code, message, status = error_of(excinfo)
    assert (code, status) == ("PreconditionFailedException", 412)
    assert "GetPolicy" in message
    with pytest.raises(ClientError) as excinfo:
        lambda_client.remove_permission(FunctionName=name, StatementId="first", RevisionId=revision)
    assert error_of(excinfo)[0] == "PreconditionFailedException"
    current = lambda_client.get_policy(FunctionName=name)["RevisionId"]
    lambda_client.remove_permission(FunctionName=name, StatementId="first", RevisionId=current)
    assert lambda_client.get_policy(FunctionName=name)["RevisionId"] != current


def test_remove_permission(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    name = create_function()["FunctionName"]
    for sid in ("one", "two"):
        lambda_client.add_permission(
            FunctionName=name, StatementId=sid, Action="lambda:InvokeFunction", Principal="*"
        )
    response = lambda_client.remove_permission(FunctionName=name, StatementId="one")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    policy = json.loads(lambda_client.get_policy(FunctionName=name)["Policy"])
    assert [statement["Sid"] for statement in policy["Statement"]] == ["two"]
    # Removing the last statement removes the policy.
    lambda_client.remove_permission(FunctionName=name, StatementId="two")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_policy(FunctionName=name)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "The resource you requested does not exist.",
        404,
    )


def test_remove_unknown_statement_is_not_found(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    lambda_client.add_permission(
        FunctionName=name,
        StatementId="real",
        Action="lambda:InvokeFunction",
        Principal="sns.amazonaws.com",
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.remove_permission(FunctionName=name, StatementId="ghost")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "Statement ghost is not found in resource policy.",
        404,
    )


def test_policy_size_is_limited(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    name = create_function()["FunctionName"]
    source = "arn:aws:s3:::" + "b" * 2000
    with pytest.raises(ClientError) as excinfo:
        for index in range(20):
            lambda_client.add_permission(
                FunctionName=name,
                StatementId=f"s{index}",
                Action="lambda:InvokeFunction",
                Principal="s3.amazonaws.com",
                SourceArn=source,
            )
    code, message, status = error_of(excinfo)
    assert (code, status) == ("PolicyLengthExceededException", 400)
    assert "(20480)" in message
    statements = json.loads(lambda_client.get_policy(FunctionName=name)["Policy"])["Statement"]
    assert 5 <= len(statements) < 20


def test_deleting_an_alias_deletes_its_policy(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    lambda_client.create_alias(FunctionName=name, Name="gone", FunctionVersion="1")
    lambda_client.add_permission(
        FunctionName=f"{name}:gone", StatementId="s", Action="lambda:InvokeFunction", Principal="*"
    )
    lambda_client.delete_alias(FunctionName=name, Name="gone")
    lambda_client.create_alias(FunctionName=name, Name="gone", FunctionVersion="1")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_policy(FunctionName=f"{name}:gone")
    assert error_of(excinfo)[0] == "ResourceNotFoundException"
