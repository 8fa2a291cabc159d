"""Enforced mode: a function's execution role must allow what Lambda does with it. An event
source mapping is refused when the role may not read its source, a destination when the role
may not write to it, each with AWS's InvalidParameterValueException sentence."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.aws_errors import refused
from tests.support.iam import LAMBDA_TRUST, client
from tests.support.peers import MotoServer
from tests.support.server import LaminaServer, metrics
from tests.support.waiting import wait_until

KEY, SECRET = "AKIAROLEPERMSROOT", "role-permissions-root-secret"
ACCOUNT = "000000000000"
REGION = "us-east-1"
SQS_ROLE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
KINESIS_ROLE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[LaminaServer]:
    env = {**moto.env, "LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
    started = LaminaServer(tmp_path_factory.mktemp("role-permissions") / "data", env=env).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def iam(server: LaminaServer) -> Any:
    return client(server, "iam", KEY, SECRET)


@pytest.fixture(scope="module")
def lambda_api(server: LaminaServer) -> Any:
    return client(server, "lambda", KEY, SECRET)


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def role_and_function(iam: Any, lambda_api: Any) -> tuple[str, str]:
    """A new role trusting Lambda, with no policy, and a function running as it."""
    role = fresh("role")
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
    function = fresh("fn")
    lambda_api.create_function(
        FunctionName=function,
        Runtime="python3.12",
        Role=arn,
        Handler="app.handler",
        Code={"ZipFile": make_zip()},
        Timeout=3,
    )
    return role, function


def allow(iam: Any, role: str, action: str, resource: str) -> None:
    iam.put_role_policy(
        RoleName=role,
        PolicyName=fresh("allow"),
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}],
            }
        ),
    )


def queue_arn(moto: MotoServer) -> str:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=fresh("q"), Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return arn


def source_refused(action: str) -> str:
    return f"The function execution role does not have permissions to call {action} on SQS"


def destination_refused(action: str, arn: str) -> str:
    return f"The function execution role does not have permissions to call {action} on {arn}"


def test_an_sqs_mapping_needs_a_role_that_may_read_the_queue(
    moto: MotoServer, iam: Any, lambda_api: Any
) -> None:
    role, function = role_and_function(iam, lambda_api)
    source = queue_arn(moto)

    def create() -> dict[str, Any]:
        return lambda_api.create_event_source_mapping(  # type: ignore[no-any-return]
            FunctionName=function, EventSourceArn=source, Enabled=False
        )

    refused(create, "InvalidParameterValueException", 400, source_refused("ReceiveMessage"))
    # One action at a time: each missing one is named in turn.
    allow(iam, role, "sqs:ReceiveMessage", source)
    refused(create, "InvalidParameterValueException", 400, source_refused("DeleteMessage"))
    allow(iam, role, "sqs:DeleteMessage", source)
    refused(create, "InvalidParameterValueException", 400, source_refused("GetQueueAttributes"))

    iam.attach_role_policy(RoleName=role, PolicyArn=SQS_ROLE_POLICY)
    created = create()
    assert created["EventSourceArn"] == source
    lambda_api.delete_event_source_mapping(UUID=created["UUID"])


def test_a_kinesis_mapping_and_its_on_failure_destination_are_checked_against_the_role(
    moto: MotoServer, iam: Any, lambda_api: Any
) -> None:
    role, function = role_and_function(iam, lambda_api)
    kinesis = moto.client("kinesis")
    stream = fresh("stream")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    stream_arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    on_failure = queue_arn(moto)

    def create() -> dict[str, Any]:
        return lambda_api.create_event_source_mapping(  # type: ignore[no-any-return]
            FunctionName=function,
            EventSourceArn=stream_arn,
            StartingPosition="LATEST",
            Enabled=False,
            DestinationConfig={"OnFailure": {"Destination": on_failure}},
        )

    refused(
        create,
        "InvalidParameterValueException",
        400,
        f"Cannot access stream {stream_arn}. Please ensure the role can perform the GetRecords, "
        "GetShardIterator, DescribeStream, ListShards, and ListStreams Actions on your stream "
        "in IAM.",
    )
    iam.attach_role_policy(RoleName=role, PolicyArn=KINESIS_ROLE_POLICY)
    refused(
        create,
        "InvalidParameterValueException",
        400,
        destination_refused("SendMessage", on_failure),
    )
    allow(iam, role, "sqs:SendMessage", on_failure)
    created = create()
    assert created["DestinationConfig"] == {"OnFailure": {"Destination": on_failure}}
    # Changing the destination alone is checked against the mapping's function's role.
    elsewhere = queue_arn(moto)
    refused(
        lambda: lambda_api.update_event_source_mapping(
            UUID=created["UUID"], DestinationConfig={"OnFailure": {"Destination": elsewhere}}
        ),
        "InvalidParameterValueException",
        400,
        destination_refused("SendMessage", elsewhere),
    )
    lambda_api.delete_event_source_mapping(UUID=created["UUID"])


def test_an_sqs_destination_needs_a_role_that_may_send_to_it(
    moto: MotoServer, iam: Any, lambda_api: Any
) -> None:
    role, function = role_and_function(iam, lambda_api)
    destination = queue_arn(moto)

    def put() -> dict[str, Any]:
        return lambda_api.put_function_event_invoke_config(  # type: ignore[no-any-return]
            FunctionName=function,
            DestinationConfig={"OnFailure": {"Destination": destination}},
        )

    refused(
        put, "InvalidParameterValueException", 400, destination_refused("SendMessage", destination)
    )
    allow(iam, role, "sqs:SendMessage", destination)
    assert put()["DestinationConfig"]["OnFailure"] == {"Destination": destination}

    # Update checks the destinations it names, too.
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{fresh('topic')}"
    refused(
        lambda: lambda_api.update_function_event_invoke_config(
            FunctionName=function, DestinationConfig={"OnSuccess": {"Destination": topic}}
        ),
        "InvalidParameterValueException",
        400,
        destination_refused("Publish", topic),
    )


def test_a_function_destination_needs_a_role_that_may_invoke_it(iam: Any, lambda_api: Any) -> None:
    role, function = role_and_function(iam, lambda_api)
    _, target = role_and_function(iam, lambda_api)
    target_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{target}"

    def put() -> dict[str, Any]:
        return lambda_api.put_function_event_invoke_config(  # type: ignore[no-any-return]
            FunctionName=function,
            DestinationConfig={"OnSuccess": {"Destination": target_arn}},
        )

    refused(
        put,
        "InvalidParameterValueException",
        400,
        destination_refused("InvokeFunction", target_arn),
    )
    allow(iam, role, "lambda:InvokeFunction", target_arn)
    assert put()["DestinationConfig"]["OnSuccess"] == {"Destination": target_arn}


def test_a_function_destination_is_not_sent_once_the_role_may_no_longer_invoke_it(
    server: LaminaServer, iam: Any, lambda_api: Any
) -> None:
    role, function = role_and_function(iam, lambda_api)
    _, target = role_and_function(iam, lambda_api)
    target_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{target}"
    iam.put_role_policy(
        RoleName=role,
        PolicyName="invoke-target",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": target_arn}
                ],
            }
        ),
    )
    lambda_api.put_function_event_invoke_config(
        FunctionName=function, DestinationConfig={"OnSuccess": {"Destination": target_arn}}
    )
    # The permission goes after the destination was accepted: delivery is refused then.
    iam.delete_role_policy(RoleName=role, PolicyName="invoke-target")
    lambda_api.invoke(FunctionName=function, InvocationType="Event", Payload=b'{"n": 1}')

    def counted(metric: str, name: str) -> float:
        return float(metrics(server).get(metric, {}).get(name, {}).get("Sum", 0))

    wait_until(lambda: counted("DestinationDeliveryFailures", function) >= 1, timeout=60)
    # The record never reached the destination function.
    assert counted("AsyncEventsReceived", target) == 0

    # A function whose role still allows it delivers to the same destination.
    allowed_role, allowed = role_and_function(iam, lambda_api)
    allow(iam, allowed_role, "lambda:InvokeFunction", target_arn)
    lambda_api.put_function_event_invoke_config(
        FunctionName=allowed, DestinationConfig={"OnSuccess": {"Destination": target_arn}}
    )
    lambda_api.invoke(FunctionName=allowed, InvocationType="Event", Payload=b'{"n": 2}')
    wait_until(lambda: counted("AsyncEventsReceived", target) >= 1, timeout=60)
    assert counted("DestinationDeliveryFailures", allowed) == 0


def test_a_running_sqs_poller_stops_reading_once_the_role_may_not(
    server: LaminaServer, moto: MotoServer, iam: Any, lambda_api: Any
) -> None:
    role, function = role_and_function(iam, lambda_api)
    iam.attach_role_policy(RoleName=role, PolicyArn=SQS_ROLE_POLICY)
    source = queue_arn(moto)
    sqs = moto.client("sqs")
    url = sqs.get_queue_url(QueueName=source.rsplit(":", 1)[-1])["QueueUrl"]
    mapping = lambda_api.create_event_source_mapping(
        FunctionName=function, EventSourceArn=source, BatchSize=1
    )["UUID"]

    def waiting() -> int:
        """Messages in the queue, visible or held by a reader."""
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(count) for count in attributes.values())

    sqs.send_message(QueueUrl=url, MessageBody="first")
    wait_until(lambda: waiting() == 0, timeout=60)

    iam.detach_role_policy(RoleName=role, PolicyArn=SQS_ROLE_POLICY)
    problem = f"PROBLEM: {source_refused('ReceiveMessage')}"
    wait_until(
        lambda: (
            lambda_api.get_event_source_mapping(UUID=mapping)["LastProcessingResult"] == problem
        ),
        timeout=30,
    )
    sqs.send_message(QueueUrl=url, MessageBody="second")
    wait_until(lambda: waiting() == 1, timeout=10)
    # Several reconcile rounds later the message is still waiting, unread.
    time.sleep(1.0)
    visible = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert visible == "1"

    iam.attach_role_policy(RoleName=role, PolicyArn=SQS_ROLE_POLICY)
    wait_until(lambda: waiting() == 0, timeout=60)
    lambda_api.delete_event_source_mapping(UUID=mapping)
