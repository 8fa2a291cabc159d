"""What a function's execution role must allow before Lambda reads a source or writes to a
destination with it (enforced mode), over a real SQLite IAM store: each source kind's
refusal, and the resources the actions are decided on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.arns import Account
from lamina.control.access import Authority
from lamina.control.iam import IamService
from lamina.control.role_permissions import RolePermissions
from lamina.errors import InvalidParameterValue
from lamina.model.iam import ROLE
from lamina.model.mappings import DYNAMODB, KAFKA, MQ, SQS
from lamina.store.sqlite import open_stores
from tests.support.iam import LAMBDA_TRUST

ACCOUNT = Account("111122223333", "eu-west-1")
TRUST = LAMBDA_TRUST
QUEUE = "arn:aws:sqs:eu-west-1:111122223333:jobs"
TABLE_STREAM = "arn:aws:dynamodb:eu-west-1:111122223333:table/t/stream/2024-01-01T00:00:00.000"
BROKER = "arn:aws:mq:eu-west-1:111122223333:broker:b:b-1234"
SECRET = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:mq-AbCdEf"
BUCKET = "arn:aws:s3:::failures"


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        stores = open_stores(tmp_path / "data")
        self.iam = IamService(stores.iam, ACCOUNT)
        self.role = self.iam.create_role("reader", TRUST).arn
        self.roles = RolePermissions(Authority(self.iam, stores.functions), ACCOUNT)
        self._policies = 0

    def allow(self, actions: list[str], resource: str) -> None:
        document = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}],
            }
        )
        self._policies += 1
        self.iam.put_inline_policy(ROLE, "reader", f"policy-{self._policies}", document)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def refusal(call: object) -> str:
    assert callable(call)
    with pytest.raises(InvalidParameterValue) as caught:
        call()
    return caught.value.message


def test_the_session_is_the_role_named_after_the_function(setup: Setup) -> None:
    caller = setup.roles.session(setup.role, "worker")
    assert caller.arn == "arn:aws:sts::111122223333:assumed-role/reader/worker"
    assert caller.role_arn == setup.role


def test_sqs_names_the_first_action_missing(setup: Setup) -> None:
    def check() -> None:
        setup.roles.check_source(setup.role, "worker", SQS, QUEUE)

    assert refusal(check) == (
        "The function execution role does not have permissions to call ReceiveMessage on SQS"
    )
    setup.allow(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], QUEUE)
    check()
    # Another queue is not covered by that policy.
    with pytest.raises(InvalidParameterValue):
        setup.roles.check_source(setup.role, "worker", SQS, QUEUE + "-other")


def test_a_dynamodb_stream_needs_every_action_its_sentence_names(setup: Setup) -> None:
    def check() -> None:
        setup.roles.check_source(setup.role, "worker", DYNAMODB, TABLE_STREAM)

    setup.allow(["dynamodb:GetRecords", "dynamodb:GetShardIterator"], TABLE_STREAM)
    assert refusal(check) == (
        f"Cannot access stream {TABLE_STREAM}. Please ensure the role can perform the "
        "GetRecords, GetShardIterator, DescribeStream, and ListStreams Actions on your stream "
        "in IAM."
    )
    setup.allow(["dynamodb:DescribeStream", "dynamodb:ListStreams"], TABLE_STREAM)
    check()


def test_an_mq_broker_needs_describe_broker_then_its_secret(setup: Setup) -> None:
    def check() -> None:
        setup.roles.check_source(setup.role, "worker", MQ, BROKER, [SECRET])

    assert refusal(check) == (
        "The function execution role does not have permissions to call DescribeBroker on MQ"
    )
    setup.allow(["mq:DescribeBroker"], BROKER)
    assert refusal(check) == (
        f"Cannot access secret manager value {SECRET}. Please ensure the role can perform the "
        "'secretsmanager:GetSecretValue' action on your broker in IAM."
    )
    setup.allow(["secretsmanager:GetSecretValue"], SECRET)
    check()


def test_self_managed_kafka_has_no_source_to_check(setup: Setup) -> None:
    setup.roles.check_source(setup.role, "worker", KAFKA, None)


def test_an_s3_destination_is_decided_on_the_bucket_s_objects(setup: Setup) -> None:
    def check() -> None:
        setup.roles.check_destinations(setup.role, "worker", [None, BUCKET])

    assert refusal(check) == (
        f"The function execution role does not have permissions to call PutObject on {BUCKET}"
    )
    setup.allow(["s3:PutObject"], f"{BUCKET}/*")
    check()
