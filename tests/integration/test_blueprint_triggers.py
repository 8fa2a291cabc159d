"""Blueprints behind their real triggers, set up with the trigger settings each blueprint
suggests: SQS and Kinesis through event source mappings on moto's server (failed items are
retried alone), DynamoDB Streams, and an EventBridge schedule (schedule time sped up).
What each function logged shows what it got and what came back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lamina.blueprints import Blueprint, get
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

WAIT_S = 90


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[LaminaServer]:
    # A schedule minute lasts 0.02 real minutes: `rate(5 minutes)` fires every 6 s.
    env = {**moto.env, "LAMINA_SCHEDULE_TIME_SCALE": "0.02"}
    instance = LaminaServer(tmp_path_factory.mktemp("triggers") / "data", env=env).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def clients(server: LaminaServer, moto: MotoServer) -> Iterator[dict[str, Any]]:
    made = {name: server.client(name) for name in ("lambda", "logs", "events")}
    made.update({name: moto.client(name) for name in ("sqs", "kinesis", "dynamodb")})
    yield made
    for client in made.values():
        client.close()


def deploy(clients: dict[str, Any], blueprint: Blueprint, timeout: int | None = None) -> str:
    name = f"{blueprint.name}-{uuid.uuid4().hex[:8]}"
    clients["lambda"].create_function(
        FunctionName=name,
        Runtime=blueprint.runtime,
        Role=ROLE,
        Handler=blueprint.handler,
        Timeout=timeout or blueprint.timeout,
        MemorySize=blueprint.memory_size,
        Code={"ZipFile": blueprint.zip_bytes()},
    )
    return name


def map_source(clients: dict[str, Any], blueprint: Blueprint, function: str, arn: str) -> str:
    """The blueprint's suggested mapping, from `arn` to the function; returns its UUID."""
    assert blueprint.trigger is not None
    settings = dict(blueprint.trigger.settings)
    if "StartingPosition" in settings:
        # The blueprint suggests LATEST; records put here may precede the first read.
        settings["StartingPosition"] = "TRIM_HORIZON"
    created = clients["lambda"].create_event_source_mapping(
        FunctionName=function, EventSourceArn=arn, **settings
    )
    return str(created["UUID"])


def log_lines(clients: dict[str, Any], function: str) -> Callable[[], list[str]]:
    def read() -> list[str]:
        try:
            found = clients["logs"].filter_log_events(logGroupName=f"/aws/lambda/{function}")
        except clients["logs"].exceptions.ResourceNotFoundException:
            return []
        return [event["message"] for event in found["events"]]

    return read


def count(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


@pytest.mark.parametrize("name", ["python-sqs-consumer", "node-sqs-consumer"])
def test_sqs_consumer_returns_only_the_failed_message(clients: dict[str, Any], name: str) -> None:
    blueprint = get(name)
    # Lambda wants the queue's visibility timeout at least the function's: both short here,
    # so that a returned message is received again within seconds.
    function = deploy(clients, blueprint, timeout=2)
    sqs = clients["sqs"]
    url = sqs.create_queue(
        QueueName=f"q-{uuid.uuid4().hex[:10]}", Attributes={"VisibilityTimeout": "2"}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    good = [
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))["MessageId"]
        for n in (1, 2)
    ]
    bad = sqs.send_message(QueueUrl=url, MessageBody="not json")["MessageId"]
    mapping = map_source(clients, blueprint, function, arn)
    try:
        lines = log_lines(clients, function)
        # The bad message comes back (and fails) again and again; the good ones ran once.
        wait_until(lambda: count(lines(), f"message {bad} failed") >= 2, timeout=WAIT_S)
        shown = lines()
        for message_id in good:
            assert count(shown, f"message {message_id}: ") == 1
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        left = int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )
        assert left == 1
    finally:
        clients["lambda"].delete_event_source_mapping(UUID=mapping)


def test_stream_processor_resumes_from_the_failed_record(clients: dict[str, Any]) -> None:
    blueprint = get("python-stream-processor")
    function = deploy(clients, blueprint)
    kinesis = clients["kinesis"]
    stream = f"s-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    put = [
        kinesis.put_record(StreamName=stream, Data=data, PartitionKey=key)["SequenceNumber"]
        for key, data in (("a", b'{"n": 1}'), ("b", b"not json"), ("c", b'{"n": 3}'))
    ]
    mapping = map_source(clients, blueprint, function, arn)
    try:
        lines = log_lines(clients, function)
        wait_until(lambda: count(lines(), f"record {put[1]} failed") >= 2, timeout=WAIT_S)
        shown = lines()
        # Checkpointed after the first record: it never ran again; the third never ran.
        assert count(shown, "kinesis a: {'n': 1}") == 1
        assert count(shown, "kinesis c:") == 0
    finally:
        clients["lambda"].delete_event_source_mapping(UUID=mapping)


def test_stream_processor_reads_a_table_stream(clients: dict[str, Any]) -> None:
    blueprint = get("node-stream-processor")
    function = deploy(clients, blueprint)
    table = f"t-{uuid.uuid4().hex[:10]}"
    created = clients["dynamodb"].create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    mapping = map_source(
        clients, blueprint, function, created["TableDescription"]["LatestStreamArn"]
    )
    try:
        clients["dynamodb"].put_item(TableName=table, Item={"id": {"S": "one"}, "n": {"N": "1"}})
        clients["dynamodb"].put_item(TableName=table, Item={"id": {"S": "one"}, "n": {"N": "2"}})
        lines = log_lines(clients, function)
        wait_until(
            lambda: count(lines(), 'dynamodb MODIFY {"id":{"S":"one"}}') == 1, timeout=WAIT_S
        )
        assert count(lines(), 'dynamodb INSERT {"id":{"S":"one"}}') == 1
    finally:
        clients["lambda"].delete_event_source_mapping(UUID=mapping)


@pytest.mark.parametrize("name", ["python-scheduled-job", "node-scheduled-job"])
def test_scheduled_job_runs_on_its_schedule(clients: dict[str, Any], name: str) -> None:
    blueprint = get(name)
    function = deploy(clients, blueprint)
    assert blueprint.trigger is not None
    events, rule = clients["events"], f"{function}-schedule"
    rule_arn = events.put_rule(Name=rule, **blueprint.trigger.settings)["RuleArn"]
    clients["lambda"].add_permission(
        FunctionName=function,
        StatementId="schedule",
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
        SourceArn=rule_arn,
    )
    arn = clients["lambda"].get_function(FunctionName=function)["Configuration"]["FunctionArn"]
    events.put_targets(Rule=rule, Targets=[{"Id": "job", "Arn": arn}])
    try:
        lines = log_lines(clients, function)
        wait_until(lambda: count(lines(), f" of {rule_arn}") >= 1, timeout=WAIT_S)
    finally:
        events.remove_targets(Rule=rule, Ids=["job"])
        events.delete_rule(Name=rule)
