"""The AWS managed policies Lambda users attach, as AWS publishes them: their ARNs (the
execution-role ones live under `service-role/`), paths, policy ids, default versions, dates,
descriptions and statements.

Data only, plus `aws_managed_policies()` to turn it into the store's entities (the control
plane seeds them, or serves them, under the account-independent `arn:aws:iam::aws:policy/`).

Where each fact comes from, as of this writing:
- statements, versions, dates and descriptions: AWS's managed policy reference
  (docs.aws.amazon.com/aws-managed-policy/latest/reference/<name>.html) and, for the default
  version's exact document and timestamp, the public trackers of AWS's managed policies
  (zoph-io/MAMIP and its successor zoph-io/IAMTrail, which record `GetPolicyVersion`'s
  answers). AWSLambda_FullAccess and AWSLambda_ReadOnlyAccess change every year or so; their
  documents here are the default versions recorded on 2026-02-12 (v7 and v5).
- policy ids: `aws iam get-policy` / `list-policies` output quoted in public repositories.
  Two could not be found (AWSLambda_ReadOnlyAccess, AWSLambdaSQSQueueExecutionRole): those
  get a stable Lamina-made id (`ANPA` + 17 characters derived from the ARN), flagged by
  `policy_id_is_aws`.
- AWSLambdaSQSQueueExecutionRole's description comes from a secondary source (its reference
  page was not found); the statement and dates come from the trackers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lamina.model.iam import ManagedPolicy, PolicyVersion

AWS_POLICY_ARN_PREFIX = "arn:aws:iam::aws:policy/"
SERVICE_ROLE_PATH = "/service-role/"

_LOGS_WRITE = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
_LAMBDA_LOG_GROUPS = "arn:aws:logs:*:*:log-group:/aws/lambda/*"


@dataclass(frozen=True)
class AwsManagedPolicy:
    name: str
    path: str
    policy_id: str
    policy_id_is_aws: bool  # False: AWS's id was not found; a stable Lamina-made one
    default_version: str
    created: str  # ISO 8601, UTC: the policy's CreateDate
    updated: str  # the default version's CreateDate (the policy's UpdateDate)
    description: str
    document: dict[str, Any]

    @property
    def arn(self) -> str:
        return f"{AWS_POLICY_ARN_PREFIX}{self.path.lstrip('/')}{self.name}"

    def document_text(self) -> str:
        """The document as GetPolicyVersion answers it (before URL-encoding)."""
        return json.dumps(self.document, indent=4)


def _made_up_id(path: str, name: str) -> str:
    """A stable id in IAM's shape for a policy whose real id is unknown."""
    digest = hashlib.sha256(f"{AWS_POLICY_ARN_PREFIX}{path.lstrip('/')}{name}".encode())
    return "ANPA" + base64.b32encode(digest.digest()).decode()[:17]


def _statement(action: list[str] | str, resource: list[str] | str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def _document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


BASIC_EXECUTION_ROLE = AwsManagedPolicy(
    name="AWSLambdaBasicExecutionRole",
    path=SERVICE_ROLE_PATH,
    policy_id="ANPAJNCQGXC42545SKXIK",
    policy_id_is_aws=True,
    default_version="v1",
    created="2015-04-09T15:03:43Z",
    updated="2015-04-09T15:03:43Z",
    description="Provides write permissions to CloudWatch Logs.",
    document=_document(_statement(_LOGS_WRITE)),
)

LAMBDA_ROLE = AwsManagedPolicy(
    name="AWSLambdaRole",
    path=SERVICE_ROLE_PATH,
    policy_id="ANPAJX4DPCRGTC4NFDUXI",
    policy_id_is_aws=True,
    default_version="v1",
    created="2015-02-06T18:41:28Z",
    updated="2015-02-06T18:41:28Z",
    description="Default policy for AWS Lambda service role.",
    document=_document(_statement(["lambda:InvokeFunction"], ["*"])),
)

FULL_ACCESS = AwsManagedPolicy(
    name="AWSLambda_FullAccess",
    path="/",
    policy_id="ANPAZKAPJZG4OXQPYWZ5D",
    policy_id_is_aws=True,
    default_version="v7",
    created="2020-11-17T21:14:08Z",
    updated="2026-02-12T18:00:51Z",
    description=(
        "Grants full access to AWS Lambda service, AWS Lambda console features, "
        "and other related AWS services."
    ),
    document=_document(
        _statement(
            [
                "cloudformation:DescribeStacks",
                "cloudformation:ListStackResources",
                "cloudwatch:ListMetrics",
                "cloudwatch:GetMetricData",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcs",
                "kms:DescribeKey",
                "kms:ListAliases",
                "iam:GetPolicy",
                "iam:GetPolicyVersion",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:ListAttachedRolePolicies",
                "iam:ListRolePolicies",
                "iam:ListRoles",
                "lambda:*",
                "logs:DescribeLogGroups",
                "states:DescribeStateMachine",
                "states:ListStateMachines",
                "tag:GetResources",
                "xray:GetTraceSummaries",
                "xray:BatchGetTraces",
            ]
        ),
        {
            **_statement("iam:PassRole"),
            "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
        },
        _statement(
            [
                "logs:DescribeLogStreams",
                "logs:GetLogEvents",
                "logs:FilterLogEvents",
                "logs:StartLiveTail",
                "logs:StopLiveTail",
            ],
            _LAMBDA_LOG_GROUPS,
        ),
        {
            **_statement(
                "iam:CreateServiceLinkedRole",
                "arn:aws:iam::*:role/aws-service-role/lambda.amazonaws.com/AWSServiceRoleForLambda",
            ),
            "Condition": {"StringEquals": {"iam:AWSServiceName": "lambda.amazonaws.com"}},
        },
    ),
)

READ_ONLY_ACCESS = AwsManagedPolicy(
    name="AWSLambda_ReadOnlyAccess",
    path="/",
    policy_id=_made_up_id("/", "AWSLambda_ReadOnlyAccess"),
    policy_id_is_aws=False,
    default_version="v5",
    # The reference page gives the minute only (21:10 UTC).
    created="2020-11-17T21:10:00Z",
    updated="2026-02-12T18:02:55Z",
    description=(
        "Grants read-only access to AWS Lambda service, AWS Lambda console features, "
        "and other related AWS services."
    ),
    document=_document(
        _statement(
            [
                "cloudformation:DescribeStacks",
                "cloudformation:ListStacks",
                "cloudformation:ListStackResources",
                "cloudwatch:GetMetricData",
                "cloudwatch:ListMetrics",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcs",
                "kms:ListAliases",
                "iam:GetPolicy",
                "iam:GetPolicyVersion",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:ListAttachedRolePolicies",
                "iam:ListRolePolicies",
                "iam:ListRoles",
                "logs:DescribeLogGroups",
                "lambda:Get*",
                "lambda:List*",
                "states:DescribeStateMachine",
                "states:ListStateMachines",
                "tag:GetResources",
                "xray:GetTraceSummaries",
                "xray:BatchGetTraces",
            ]
        ),
        _statement(
            [
                "logs:DescribeLogStreams",
                "logs:GetLogEvents",
                "logs:FilterLogEvents",
                "logs:StartQuery",
                "logs:StopQuery",
                "logs:DescribeQueries",
                "logs:GetLogGroupFields",
                "logs:GetLogRecord",
                "logs:GetQueryResults",
                "logs:StartLiveTail",
                "logs:StopLiveTail",
            ],
            _LAMBDA_LOG_GROUPS,
        ),
    ),
)

SQS_QUEUE_EXECUTION_ROLE = AwsManagedPolicy(
    name="AWSLambdaSQSQueueExecutionRole",
    path=SERVICE_ROLE_PATH,
    policy_id=_made_up_id(SERVICE_ROLE_PATH, "AWSLambdaSQSQueueExecutionRole"),
    policy_id_is_aws=False,
    default_version="v1",
    created="2018-06-14T21:50:45Z",
    updated="2018-06-14T21:50:45Z",
    description=(
        "Provides receive message, delete message, and read attribute access to SQS queues, "
        "and write permissions to CloudWatch logs."
    ),
    document=_document(
        _statement(
            ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", *_LOGS_WRITE]
        )
    ),
)

KINESIS_EXECUTION_ROLE = AwsManagedPolicy(
    name="AWSLambdaKinesisExecutionRole",
    path=SERVICE_ROLE_PATH,
    policy_id="ANPAJHOLKJPXV4GBRMJUQ",
    policy_id_is_aws=True,
    default_version="v2",
    created="2015-04-09T15:14:16Z",
    updated="2018-11-19T20:09:24Z",
    description=(
        "Provides list and read access to Kinesis streams and write permissions to CloudWatch logs."
    ),
    document=_document(
        _statement(
            [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
                "kinesis:ListStreams",
                "kinesis:SubscribeToShard",
                *_LOGS_WRITE,
            ]
        )
    ),
)

DYNAMODB_EXECUTION_ROLE = AwsManagedPolicy(
    name="AWSLambdaDynamoDBExecutionRole",
    path=SERVICE_ROLE_PATH,
    policy_id="ANPAIP7WNAGMIPYNW4WQG",
    policy_id_is_aws=True,
    default_version="v1",
    created="2015-04-09T15:09:29Z",
    updated="2015-04-09T15:09:29Z",
    description=(
        "Provides list and read access to DynamoDB streams and write permissions to "
        "CloudWatch logs."
    ),
    document=_document(
        _statement(
            [
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
                *_LOGS_WRITE,
            ]
        )
    ),
)

AWS_MANAGED_POLICIES: tuple[AwsManagedPolicy, ...] = (
    BASIC_EXECUTION_ROLE,
    LAMBDA_ROLE,
    FULL_ACCESS,
    READ_ONLY_ACCESS,
    SQS_QUEUE_EXECUTION_ROLE,
    KINESIS_EXECUTION_ROLE,
    DYNAMODB_EXECUTION_ROLE,
)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def aws_managed_policies() -> list[tuple[ManagedPolicy, PolicyVersion]]:
    """Each AWS managed policy as the store keeps it, with its default version (the only
    version kept: AWS's older ones are not published in full)."""
    entities = []
    for policy in AWS_MANAGED_POLICIES:
        entities.append(
            (
                ManagedPolicy(
                    name=policy.name,
                    policy_id=policy.policy_id,
                    path=policy.path,
                    arn=policy.arn,
                    default_version=policy.default_version,
                    created=_epoch(policy.created),
                    updated=_epoch(policy.updated),
                    description=policy.description,
                ),
                PolicyVersion(
                    policy_arn=policy.arn,
                    version_id=policy.default_version,
                    document=policy.document_text(),
                    created=_epoch(policy.updated),
                ),
            )
        )
    return entities
