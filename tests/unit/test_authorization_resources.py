"""Enforced mode names each operation's action and resource as AWS does: checked through the
refusal sentence a user without policies gets (over a real SQLite IAM store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lamina.api.authorization import PolicyAuthorizer
from lamina.arns import Account
from lamina.control.access import Authority
from lamina.control.iam import IamService
from lamina.errors import AccessDenied
from lamina.identity.caller import Caller, CallerKind
from lamina.identity.sigv4 import Signer
from lamina.store.sqlite import open_stores

ACCOUNT = Account("111122223333", "eu-west-1")
PREFIX = "arn:aws:lambda:eu-west-1:111122223333"
USER = "arn:aws:iam::111122223333:user/alice"

CASES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("lambda", "Invoke", {"FunctionName": "f"}, "lambda:InvokeFunction", f"{PREFIX}:function:f"),
    (
        "lambda",
        "InvokeWithResponseStream",
        {"FunctionName": "f", "Qualifier": "live"},
        "lambda:InvokeFunction",
        f"{PREFIX}:function:f:live",
    ),
    (
        "lambda",
        "GetFunction",
        {"FunctionName": f"{PREFIX}:function:f:3"},
        "lambda:GetFunction",
        f"{PREFIX}:function:f:3",
    ),
    ("lambda", "ListFunctions", {}, "lambda:ListFunctions", "*"),
    (
        "lambda",
        "GetLayerVersion",
        {"LayerName": "deps", "VersionNumber": 2},
        "lambda:GetLayerVersion",
        f"{PREFIX}:layer:deps:2",
    ),
    (
        "lambda",
        "GetEventSourceMapping",
        {"UUID": "u-1"},
        "lambda:GetEventSourceMapping",
        f"{PREFIX}:event-source-mapping:u-1",
    ),
    (
        "lambda",
        "CreateEventSourceMapping",
        {"FunctionName": "f"},
        "lambda:CreateEventSourceMapping",
        "*",
    ),
    (
        "logs",
        "PutLogEvents",
        {"logGroupName": "/g", "logStreamName": "s"},
        "logs:PutLogEvents",
        "arn:aws:logs:eu-west-1:111122223333:log-group:/g:log-stream:s",
    ),
    (
        "events",
        "PutTargets",
        {"Rule": "r", "EventBusName": "orders"},
        "events:PutTargets",
        "arn:aws:events:eu-west-1:111122223333:rule/orders/r",
    ),
    (
        "events",
        "PutEvents",
        {},
        "events:PutEvents",
        "arn:aws:events:eu-west-1:111122223333:event-bus/default",
    ),
    (
        "kms",
        "Encrypt",
        {"KeyId": "1234abcd"},
        "kms:Encrypt",
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd",
    ),
    (
        "kms",
        "DescribeKey",
        {"KeyId": "alias/app"},
        "kms:DescribeKey",
        "arn:aws:kms:eu-west-1:111122223333:alias/app",
    ),
    ("monitoring", "ListMetrics", {}, "cloudwatch:ListMetrics", "*"),
    (
        "iam",
        "GetRole",
        {"RoleName": "r"},
        "iam:GetRole",
        "arn:aws:iam::111122223333:role/r",
    ),
    ("iam", "ListAccessKeys", {}, "iam:ListAccessKeys", USER),
    (
        "sts",
        "AssumeRole",
        {"RoleArn": "arn:aws:iam::111122223333:role/none", "RoleSessionName": "s"},
        "sts:AssumeRole",
        "arn:aws:iam::111122223333:role/none",
    ),
]


@pytest.fixture
def authorizer(tmp_path: Path) -> PolicyAuthorizer:
    stores = open_stores(tmp_path / "data")
    iam = IamService(stores.iam, ACCOUNT)
    iam.create_user("alice")
    return PolicyAuthorizer(Authority(iam, stores.functions), iam, ACCOUNT)


def signer(kind: CallerKind = CallerKind.USER) -> Signer:
    arn = USER if kind is CallerKind.USER else "arn:aws:iam::111122223333:root"
    return Signer(Caller(arn, ACCOUNT.account_id, kind, "alice"), "eu-west-1")


@pytest.mark.parametrize(("service", "operation", "params", "action", "resource"), CASES)
def test_a_user_without_policies_is_refused_on_the_resource_aws_names(
    authorizer: PolicyAuthorizer,
    service: str,
    operation: str,
    params: dict[str, Any],
    action: str,
    resource: str,
) -> None:
    with pytest.raises(AccessDenied) as refused:
        authorizer.authorize(service, operation, params, signer(), "10.0.0.1")
    assert refused.value.message == (
        f"User: {USER} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


@pytest.mark.parametrize(("service", "operation", "params", "action", "resource"), CASES)
def test_the_root_user_is_allowed_everything(
    authorizer: PolicyAuthorizer,
    service: str,
    operation: str,
    params: dict[str, Any],
    action: str,
    resource: str,
) -> None:
    authorizer.authorize(service, operation, params, signer(CallerKind.ROOT), None)


def test_who_one_is_needs_no_permission(authorizer: PolicyAuthorizer) -> None:
    authorizer.authorize("sts", "GetCallerIdentity", {}, signer(), None)
