"""The AWS managed policies Lambda users attach: their real ARNs, ids in IAM's shape, and
documents that read as IAM identity policies."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from lamina.identity.managed_policies import (
    AWS_MANAGED_POLICIES,
    BASIC_EXECUTION_ROLE,
    DYNAMODB_EXECUTION_ROLE,
    FULL_ACCESS,
    KINESIS_EXECUTION_ROLE,
    LAMBDA_ROLE,
    READ_ONLY_ACCESS,
    SQS_QUEUE_EXECUTION_ROLE,
    AwsManagedPolicy,
    aws_managed_policies,
)
from lamina.identity.policy import AuthRequest, PolicyKind, evaluate, parse_policy

POLICY_ID = re.compile(r"ANPA[A-Z2-7]{17}")
ACCOUNT = "123456789012"
FUNCTION = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"
LOG_GROUP = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/f"
OTHER_LOG_GROUP = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/app/web"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:jobs"
STREAM = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/s"


def test_the_seven_policies_lambda_users_attach_have_their_real_arns() -> None:
    assert sorted(policy.arn for policy in AWS_MANAGED_POLICIES) == [
        "arn:aws:iam::aws:policy/AWSLambda_FullAccess",
        "arn:aws:iam::aws:policy/AWSLambda_ReadOnlyAccess",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaRole",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
    ]


def test_ids_versions_and_dates_have_iams_shapes() -> None:
    ids = [policy.policy_id for policy in AWS_MANAGED_POLICIES]
    assert len(set(ids)) == len(ids)
    for policy in AWS_MANAGED_POLICIES:
        assert POLICY_ID.fullmatch(policy.policy_id), policy.name
        assert re.fullmatch(r"v[1-9][0-9]*", policy.default_version), policy.name
        created = datetime.fromisoformat(policy.created)
        updated = datetime.fromisoformat(policy.updated)
        assert created.tzinfo == UTC and created <= updated, policy.name
        assert policy.path in ("/", "/service-role/")
        assert policy.description


def test_documents_are_allow_only_identity_policies() -> None:
    for policy in AWS_MANAGED_POLICIES:
        document = json.loads(policy.document_text())
        assert document["Version"] == "2012-10-17"
        assert document["Statement"], policy.name
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            assert statement["Action"] and statement["Resource"]
            assert "Principal" not in statement and "NotPrincipal" not in statement


def test_the_basic_execution_role_lets_a_function_write_its_logs() -> None:
    (statement,) = BASIC_EXECUTION_ROLE.document["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "*",
    }


def test_full_access_passes_roles_only_to_lambda() -> None:
    pass_role = [s for s in FULL_ACCESS.document["Statement"] if s["Action"] == "iam:PassRole"]
    assert pass_role == [
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": "*",
            "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
        }
    ]


def test_the_store_entities_carry_the_default_version() -> None:
    entities = aws_managed_policies()
    assert len(entities) == len(AWS_MANAGED_POLICIES)
    for (policy, version), source in zip(entities, AWS_MANAGED_POLICIES, strict=True):
        assert (policy.name, policy.arn, policy.path) == (source.name, source.arn, source.path)
        assert policy.default_version == version.version_id == source.default_version
        assert version.policy_arn == policy.arn
        assert json.loads(version.document) == source.document
        assert policy.created <= policy.updated == version.created


def test_every_document_is_a_valid_identity_policy() -> None:
    for policy in AWS_MANAGED_POLICIES:
        parse_policy(policy.document_text(), PolicyKind.IDENTITY)


@pytest.mark.parametrize(
    ("policy", "action", "resource", "allowed"),
    [
        (BASIC_EXECUTION_ROLE, "logs:PutLogEvents", LOG_GROUP, True),
        (BASIC_EXECUTION_ROLE, "lambda:InvokeFunction", FUNCTION, False),
        (LAMBDA_ROLE, "lambda:InvokeFunction", FUNCTION, True),
        (LAMBDA_ROLE, "lambda:DeleteFunction", FUNCTION, False),
        (FULL_ACCESS, "lambda:DeleteFunction", FUNCTION, True),
        (FULL_ACCESS, "logs:GetLogEvents", LOG_GROUP, True),
        (FULL_ACCESS, "logs:GetLogEvents", OTHER_LOG_GROUP, False),
        (READ_ONLY_ACCESS, "lambda:GetFunction", FUNCTION, True),
        (READ_ONLY_ACCESS, "lambda:InvokeFunction", FUNCTION, False),
        (SQS_QUEUE_EXECUTION_ROLE, "sqs:ReceiveMessage", QUEUE, True),
        (SQS_QUEUE_EXECUTION_ROLE, "sqs:SendMessage", QUEUE, False),
        (KINESIS_EXECUTION_ROLE, "kinesis:SubscribeToShard", STREAM, True),
        (DYNAMODB_EXECUTION_ROLE, "dynamodb:GetRecords", STREAM, True),
        (DYNAMODB_EXECUTION_ROLE, "dynamodb:PutItem", STREAM, False),
    ],
)
def test_what_each_policy_allows(
    policy: AwsManagedPolicy, action: str, resource: str, allowed: bool
) -> None:
    request = AuthRequest(
        principal_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/runner/f",
        principal_account=ACCOUNT,
        action=action,
        resource=resource,
    )
    decision = evaluate(request, [parse_policy(policy.document_text(), PolicyKind.IDENTITY)], None)
    assert decision.allowed is allowed
