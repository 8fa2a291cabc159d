"""Event source mappings over HTTP with boto3: Create/Update/Delete/Get/List, tags on mapping
ARNs, AWS's texts for every refusal, defaults and response shapes per source kind, the state
machine, duplicates, paging, and mappings that outlive restarts and their function.

moto's standalone server stands in for SQS, Kinesis and DynamoDB Streams: Lamina asks it
whether a queue or stream exists. The mappings live in Lamina, never in moto.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, error_of
from tests.support.peers import MotoServer
from tests.support.ports import free_port
from tests.support.server import LaminaServer

ACCOUNT = "000000000000"
MAPPING_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:"
BROKER = "arn:aws:mq:us-east-1:000000000000:broker:rabbit:b-0f5e3c2a-1111-2222-3333-444455556666"
NOT_FOUND = ("ResourceNotFoundException", "The resource you requested does not exist.", 404)
SQS_KEYS = {
    "UUID",
    "BatchSize",
    "EventSourceArn",
    "EventSourceMappingArn",
    "FunctionArn",
    "FunctionResponseTypes",
    "LastModified",
    "MaximumBatchingWindowInSeconds",
    "State",
    "StateTransitionReason",
}
STREAM_KEYS = SQS_KEYS | {
    "BisectBatchOnFunctionError",
    "DestinationConfig",
    "LastProcessingResult",
    "MaximumRecordAgeInSeconds",
    "MaximumRetryAttempts",
    "ParallelizationFactor",
    "StartingPosition",
    "TumblingWindowInSeconds",
}


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[LaminaServer]:
    """A Lamina server that reaches moto through botocore's endpoint settings."""
    # The broker's address answers nothing: these tests are about the API, not the poller.
    env = {**moto.env, "LAMINA_MQ_BROKERS": "rabbit=amqp://127.0.0.1:9"}
    instance = LaminaServer(tmp_path_factory.mktemp("esm") / "data", env=env).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def secret(moto: MotoServer) -> str:
    """A BASIC_AUTH secret in Secrets Manager (create checks that it exists)."""
    client = moto.client("secretsmanager")
    name = f"rabbit-{uuid.uuid4().hex[:8]}"
    created = client.create_secret(Name=name, SecretString='{"username": "u", "password": "p"}')
    return str(created["ARN"])


@pytest.fixture(scope="module")
def api(lamina: LaminaServer) -> Iterator[Any]:
    client = lamina.client("lambda")
    yield client
    client.close()


@pytest.fixture(scope="module")
def loose_api(lamina: LaminaServer) -> Iterator[Any]:
    """A client that sends what botocore's own checks would stop (a BatchSize of 0)."""
    client = lamina.client("lambda", parameter_validation=False)
    yield client
    client.close()


@pytest.fixture(scope="module")
def peers(moto: MotoServer) -> Iterator[dict[str, Any]]:
    clients = {name: moto.client(name) for name in ("sqs", "kinesis", "dynamodb")}
    yield clients
    for client in clients.values():
        client.close()


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def function(api: Any) -> Callable[..., dict[str, Any]]:
    """Create a function with a fresh name; keyword arguments override defaults."""

    def create(**overrides: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "FunctionName": fresh("fn"),
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": make_zip()},
            **overrides,
        }
        config: dict[str, Any] = api.create_function(**params)
        return config

    return create


@pytest.fixture
def queue(peers: dict[str, Any]) -> Callable[..., str]:
    """Create an SQS queue in moto; its ARN."""

    def create(fifo: bool = False, visibility: int = 30) -> str:
        name = fresh("q") + (".fifo" if fifo else "")
        attributes = {"VisibilityTimeout": str(visibility)}
        if fifo:
            attributes["FifoQueue"] = "true"
        url = peers["sqs"].create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn: str = peers["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        return arn

    return create


@pytest.fixture
def kinesis_stream(peers: dict[str, Any]) -> Callable[[], str]:
    def create() -> str:
        name = fresh("s")
        peers["kinesis"].create_stream(StreamName=name, ShardCount=1)
        summary = peers["kinesis"].describe_stream_summary(StreamName=name)
        arn: str = summary["StreamDescriptionSummary"]["StreamARN"]
        return arn

    return create


@pytest.fixture
def table_stream(peers: dict[str, Any]) -> Callable[[], str]:
    def create() -> str:
        table = peers["dynamodb"].create_table(
            TableName=fresh("t"),
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        arn: str = table["TableDescription"]["LatestStreamArn"]
        return arn

    return create


def shown(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


def refused(call: Callable[[], Any]) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as excinfo:
        call()
    return error_of(excinfo)


def invalid(message: str) -> tuple[str, str, int]:
    return ("InvalidParameterValueException", message, 400)


# ------------------------------------------------------- shapes and defaults


def test_an_sqs_mapping_answers_creating_with_aws_keys_then_is_enabled(
    api: Any, function: Callable[..., Any], queue: Callable[..., str]
) -> None:
    config, source = function(), queue()
    created = api.create_event_source_mapping(
        EventSourceArn=source, FunctionName=config["FunctionName"]
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    body = shown(created)
    assert set(body) == SQS_KEYS
    assert body["BatchSize"] == 10
    assert body["MaximumBatchingWindowInSeconds"] == 0
    assert body["FunctionResponseTypes"] == []
    assert body["State"] == "Creating"
    assert body["StateTransitionReason"] == "USER_INITIATED"
    assert body["EventSourceArn"] == source
    assert body["FunctionArn"] == config["FunctionArn"]
    assert body["EventSourceMappingArn"] == MAPPING_ARN + body["UUID"]
    assert abs(body["LastModified"].timestamp() - time.time()) < 60
    got = api.get_event_source_mapping(UUID=body["UUID"])
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert shown(got) == {**body, "State": "Enabled"}


@pytest.mark.parametrize("kind", ["kinesis", "dynamodb"])
def test_a_stream_mapping_shows_every_stream_default(
    api: Any,
    function: Callable[..., Any],
    kinesis_stream: Callable[[], str],
    table_stream: Callable[[], str],
    kind: str,
) -> None:
    config = function()
    source = kinesis_stream() if kind == "kinesis" else table_stream()
    body = shown(
        api.create_event_source_mapping(
            EventSourceArn=source, FunctionName=config["FunctionName"], StartingPosition="LATEST"
        )
    )
    assert set(body) == STREAM_KEYS
    assert {key: body[key] for key in STREAM_KEYS - {"UUID", "LastModified"}} == {
        "BatchSize": 100,
        "BisectBatchOnFunctionError": False,
        "DestinationConfig": {"OnFailure": {}},
        "EventSourceArn": source,
        "EventSourceMappingArn": MAPPING_ARN + body["UUID"],
        "FunctionArn": config["FunctionArn"],
        "FunctionResponseTypes": [],
        "LastProcessingResult": "No records processed",
        "MaximumBatchingWindowInSeconds": 0,
        "MaximumRecordAgeInSeconds": -1,
        "MaximumRetryAttempts": -1,
        "ParallelizationFactor": 1,
        "StartingPosition": "LATEST",
        "State": "Creating",
        "StateTransitionReason": "User action",
        "TumblingWindowInSeconds": 0,
    }
    assert api.get_event_source_mapping(UUID=body["UUID"])["State"] == "Enabled"


def test_stream_settings_are_kept_as_given(
    api: Any,
    function: Callable[..., Any],
    kinesis_stream: Callable[[], str],
    queue: Callable[..., str],
) -> None:
    config, on_failure = function(), queue()
    moment = int(time.time()) - 3600
    body = shown(
        api.create_event_source_mapping(
            EventSourceArn=kinesis_stream(),
            FunctionName=config["FunctionName"],
            StartingPosition="AT_TIMESTAMP",
            StartingPositionTimestamp=moment,
            BatchSize=500,
            MaximumBatchingWindowInSeconds=5,
            ParallelizationFactor=4,
            MaximumRecordAgeInSeconds=3600,
            MaximumRetryAttempts=3,
            BisectBatchOnFunctionError=True,
            TumblingWindowInSeconds=60,
            FunctionResponseTypes=["ReportBatchItemFailures"],
            DestinationConfig={"OnFailure": {"Destination": on_failure}},
            FilterCriteria={"Filters": [{"Pattern": '{"data": {"kind": ["order"]}}'}]},
            Enabled=False,
        )
    )
    assert body["StartingPositionTimestamp"].timestamp() == moment
    assert (body["BatchSize"], body["MaximumBatchingWindowInSeconds"]) == (500, 5)
    assert (body["ParallelizationFactor"], body["MaximumRecordAgeInSeconds"]) == (4, 3600)
    assert (body["MaximumRetryAttempts"], body["TumblingWindowInSeconds"]) == (3, 60)
    assert body["BisectBatchOnFunctionError"] is True
    assert body["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert body["DestinationConfig"] == {"OnFailure": {"Destination": on_failure}}
    assert body["FilterCriteria"] == {"Filters": [{"Pattern": '{"data": {"kind": ["order"]}}'}]}
    got = shown(api.get_event_source_mapping(UUID=body["UUID"]))
    assert got == {**body, "State": "Disabled"}


def test_sqs_settings_are_kept_as_given(
    api: Any, function: Callable[..., Any], queue: Callable[..., str]
) -> None:
    config = function()
    body = shown(
        api.create_event_source_mapping(
            EventSourceArn=queue(),
            FunctionName=config["FunctionName"],
            BatchSize=100,
            MaximumBatchingWindowInSeconds=2,
            ScalingConfig={"MaximumConcurrency": 5},
            FunctionResponseTypes=["ReportBatchItemFailures"],
        )
    )
    assert set(body) == SQS_KEYS | {"ScalingConfig"}
    assert body["ScalingConfig"] == {"MaximumConcurrency": 5}
    assert (body["BatchSize"], body["MaximumBatchingWindowInSeconds"]) == (100, 2)


def test_a_rabbitmq_mapping_is_accepted_with_its_queue_and_credentials(
    api: Any, function: Callable[..., Any], secret: str
) -> None:
    config = function()
    body = shown(
        api.create_event_source_mapping(
            EventSourceArn=BROKER,
            FunctionName=config["FunctionName"],
            Queues=["orders"],
            SourceAccessConfigurations=[
                {"Type": "BASIC_AUTH", "URI": secret},
                {"Type": "VIRTUAL_HOST", "URI": "/prod"},
            ],
        )
    )
    assert body["BatchSize"] == 100
    assert body["Queues"] == ["orders"]
    assert body["SourceAccessConfigurations"] == [
        {"Type": "BASIC_AUTH", "URI": secret},
        {"Type": "VIRTUAL_HOST", "URI": "/prod"},
    ]
    assert body["LastProcessingResult"] == "No records processed"
    assert (body["State"], body["StateTransitionReason"]) == ("Creating", "USER_INITIATED")
    assert "StartingPosition" not in body and "FunctionResponseTypes" not in body
    # Another queue on the same broker is another mapping.
    other = api.create_event_source_mapping(
        EventSourceArn=BROKER,
        FunctionName=config["FunctionName"],
        Queues=["refunds"],
        SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": secret}],
    )
    assert other["UUID"] != body["UUID"]


def test_a_self_managed_kafka_mapping_is_accepted_and_validated(
    api: Any, function: Callable[..., Any]
) -> None:
    config = function()
    body = shown(
        api.create_event_source_mapping(
            FunctionName=config["FunctionName"],
            SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k1:9092"]}},
            Topics=["orders"],
            StartingPosition="TRIM_HORIZON",
        )
    )
    assert "EventSourceArn" not in body
    assert body["Topics"] == ["orders"]
    assert body["SelfManagedEventSource"] == {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k1:9092"]}}
    # The consumer group defaults to the mapping's UUID.
    assert body["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": body["UUID"]}
    assert (body["StartingPosition"], body["BatchSize"]) == ("TRIM_HORIZON", 100)
    assert api.get_event_source_mapping(UUID=body["UUID"])["State"] == "Enabled"
    no_position = refused(
        lambda: api.create_event_source_mapping(
            FunctionName=config["FunctionName"],
            SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k1:9092"]}},
            Topics=["orders"],
        )
    )
    assert no_position == invalid(
        "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
        "constraint: Member must not be null."
    )
    # The same servers' topic for the same function again: a conflict (a different topic,
    # or other servers, is another source).
    again = refused(
        lambda: api.create_event_source_mapping(
            FunctionName=config["FunctionName"],
            SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k1:9092"]}},
            Topics=["orders"],
            StartingPosition="LATEST",
        )
    )
    assert again == (
        "ResourceConflictException",
        'An event source mapping with bootstrap servers ("k1:9092"), function '
        f'("{body["FunctionArn"]}") and topics ("orders") already exists. Please update or '
        f"delete the existing mapping with UUID {body['UUID']}",
        409,
    )
    other_topic = api.create_event_source_mapping(
        FunctionName=config["FunctionName"],
        SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k1:9092"]}},
        Topics=["refunds"],
        StartingPosition="LATEST",
    )
    assert other_topic["UUID"] != body["UUID"]


# ------------------------------------------------------------------ refusals


def test_every_refusal_is_worded_as_aws_words_it(
    api: Any,
    loose_api: Any,
    function: Callable[..., Any],
    queue: Callable[..., str],
    kinesis_stream: Callable[[], str],
    table_stream: Callable[[], str],
) -> None:
    name = function()["FunctionName"]
    standard, fifo, stream, table = queue(), queue(fifo=True), kinesis_stream(), table_stream()

    def create(**params: Any) -> tuple[str, str, int]:
        return refused(lambda: api.create_event_source_mapping(FunctionName=name, **params))

    assert create() == invalid("Unrecognized event source.")
    assert create(EventSourceArn="arn:aws:s3:::bucket") == invalid("Unrecognized event source.")
    assert refused(
        lambda: api.create_event_source_mapping(EventSourceArn=standard, FunctionName="nobody")
    ) == invalid("Function does not exist")
    on_success = {"OnSuccess": {"Destination": standard}}
    assert create(
        EventSourceArn=stream, StartingPosition="LATEST", DestinationConfig=on_success
    ) == invalid("Unsupported DestinationConfig parameter for given event source mapping type.")
    for source in (stream, table):
        assert create(EventSourceArn=source) == invalid(
            "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
            "constraint: Member must not be null."
        )
    assert create(EventSourceArn=stream, StartingPosition="invalid") == (
        "ValidationException",
        "1 validation error detected: Value 'invalid' at 'startingPosition' failed to satisfy "
        "constraint: Member must satisfy enum value set: [LATEST, AT_TIMESTAMP, TRIM_HORIZON]",
        400,
    )
    assert create(
        EventSourceArn=table, StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=1
    ) == invalid(f"Unsupported starting position for arn type: {table}")
    assert create(EventSourceArn=standard, BatchSize=11) == invalid(
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
        "greater than 10"
    )
    assert create(EventSourceArn=fifo, BatchSize=11) == invalid(
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
        "greater than 10"
    )
    assert create(EventSourceArn=fifo, MaximumBatchingWindowInSeconds=1) == invalid(
        "Batching window is not supported for FIFO queues"
    )
    assert create(EventSourceArn=standard, StartingPosition="LATEST") == invalid(
        "StartingPosition is not valid for SQS event sources."
    )
    assert create(EventSourceArn=standard, ParallelizationFactor=2) == invalid(
        "Unsupported ParallelizationFactor parameter for given event source mapping type."
    )
    assert create(
        EventSourceArn=standard, DestinationConfig={"OnFailure": {"Destination": standard}}
    ) == invalid("Unsupported DestinationConfig parameter for given event source mapping type.")
    for pattern in ('"plain"', '{"body": "not-an-array"}', '{"body": []}', '{"body": ['):
        filters = {"Filters": [{"Pattern": pattern}]}
        assert create(EventSourceArn=standard, FilterCriteria=filters) == invalid(
            "Invalid filter pattern definition."
        ), pattern
    assert refused(
        lambda: loose_api.create_event_source_mapping(
            EventSourceArn=standard, FunctionName=name, BatchSize=0
        )
    ) == (
        "ValidationException",
        "1 validation error detected: Value '0' at 'batchSize' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1",
        400,
    )
    assert create(
        EventSourceArn=stream,
        StartingPosition="AT_TIMESTAMP",
        StartingPositionTimestamp=time.time() + 3600,
    ) == invalid("StartingPositionTimestamp must not be in the future.")
    lambda_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:elsewhere"
    assert create(
        EventSourceArn=stream,
        StartingPosition="LATEST",
        DestinationConfig={"OnFailure": {"Destination": lambda_arn}},
    ) == invalid(f"The destination ARN {lambda_arn} is invalid.")
    # Lamina's own words (AWS serves these sources, Lamina does not poll them).
    msk = f"arn:aws:kafka:us-east-1:{ACCOUNT}:cluster/orders/0f5e3c2a-1111-2222-3333-444455556666-1"
    assert create(EventSourceArn=msk, Topics=["orders"], StartingPosition="LATEST") == invalid(
        "Lamina does not support Amazon MSK event sources: it polls SQS, Kinesis, DynamoDB "
        "Streams, Amazon MQ for RabbitMQ and self-managed Kafka."
    )
    assert create(
        EventSourceArn=standard,
        SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k1:9092"]}},
        Topics=["orders"],
        StartingPosition="LATEST",
    ) == invalid(
        "EventSourceArn and SelfManagedEventSource cannot be given together: a self-managed "
        "Kafka source is named by its bootstrap servers."
    )
    # Nothing refused was stored.
    assert api.list_event_source_mappings(FunctionName=name)["EventSourceMappings"] == []


def test_a_source_that_does_not_exist_yet_is_refused_then_accepted(
    api: Any, function: Callable[..., Any], peers: dict[str, Any]
) -> None:
    name = function()["FunctionName"]
    queue_name, stream_name = fresh("later"), fresh("later")
    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{queue_name}"
    stream_arn = f"arn:aws:kinesis:us-east-1:123456789012:stream/{stream_name}"
    table_arn = "arn:aws:dynamodb:us-east-1:123456789012:table/nope/stream/2024-01-01T00:00:00.000"
    assert refused(
        lambda: api.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=name)
    ) == invalid(
        "Error occurred while ReceiveMessage. SQS Error Code: "
        "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does "
        "not exist."
    )
    for arn in (stream_arn, table_arn):
        assert refused(
            partial(
                api.create_event_source_mapping,
                EventSourceArn=arn,
                FunctionName=name,
                StartingPosition="LATEST",
            )
        ) == invalid(f"Stream not found: {arn}")
    peers["sqs"].create_queue(QueueName=queue_name)
    peers["kinesis"].create_stream(StreamName=stream_name, ShardCount=1)
    api.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=name)
    api.create_event_source_mapping(
        EventSourceArn=stream_arn, FunctionName=name, StartingPosition="TRIM_HORIZON"
    )
    listed = api.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert sorted(m["EventSourceArn"] for m in listed) == sorted([queue_arn, stream_arn])


def test_the_queue_must_hide_messages_as_long_as_the_function_may_run(
    api: Any, function: Callable[..., Any], queue: Callable[..., str]
) -> None:
    name = function(Timeout=60)["FunctionName"]
    assert refused(
        lambda: api.create_event_source_mapping(EventSourceArn=queue(), FunctionName=name)
    ) == invalid("Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds")
    api.create_event_source_mapping(EventSourceArn=queue(visibility=60), FunctionName=name)


def test_an_unreachable_source_api_is_refused_clearly(
    tmp_path: Path, moto: MotoServer, function: Callable[..., Any]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    env = {**moto.env, "AWS_ENDPOINT_URL_SQS": closed, "AWS_ENDPOINT_URL_KINESIS": closed}
    instance = LaminaServer(tmp_path / "data", env=env).start()
    try:
        client = instance.client("lambda")
        name = fresh("fn")
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip()},
        )
        code, message, status = refused(
            lambda: client.create_event_source_mapping(
                EventSourceArn="arn:aws:sqs:us-east-1:123456789012:q", FunctionName=name
            )
        )
        assert (code, status) == ("InvalidParameterValueException", 400)
        assert message.startswith(
            "Error occurred while ReceiveMessage. SQS could not be reached to check the event "
            "source: Could not connect to the endpoint URL"
        ), message
        assert closed in message
        code, message, _ = refused(
            lambda: client.create_event_source_mapping(
                EventSourceArn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
                FunctionName=name,
                StartingPosition="LATEST",
            )
        )
        assert message.startswith(
            "Error occurred while DescribeStream. Kinesis could not be reached"
        ), message
        client.close()
    finally:
        instance.stop()


def test_a_second_mapping_of_one_source_to_one_function_is_a_conflict(
    api: Any,
    function: Callable[..., Any],
    queue: Callable[..., str],
    kinesis_stream: Callable[[], str],
) -> None:
    config = function()
    name, source, stream = config["FunctionName"], queue(), kinesis_stream()
    first = api.create_event_source_mapping(EventSourceArn=source, FunctionName=name)
    # The function's ARN names the same function: still a duplicate.
    assert refused(
        lambda: api.create_event_source_mapping(
            EventSourceArn=source, FunctionName=config["FunctionArn"]
        )
    ) == (
        "ResourceConflictException",
        f'An event source mapping with SQS arn (" {source} ") and function (" {name} ") '
        "already exists. Please update or delete the existing mapping with UUID "
        f"{first['UUID']}",
        409,
    )
    streamed = api.create_event_source_mapping(
        EventSourceArn=stream, FunctionName=name, StartingPosition="LATEST"
    )
    assert refused(
        lambda: api.create_event_source_mapping(
            EventSourceArn=stream, FunctionName=name, StartingPosition="TRIM_HORIZON"
        )
    ) == (
        "ResourceConflictException",
        f'The event source arn (" {stream} ") and function (" {name} ") provided mapping '
        "already exists. Please update or delete the existing mapping with UUID "
        f"{streamed['UUID']}",
        409,
    )
    # Another function on the same stream is fine (two mappings on one stream).
    other = function()["FunctionName"]
    api.create_event_source_mapping(
        EventSourceArn=stream, FunctionName=other, StartingPosition="LATEST"
    )


# ------------------------------------------------------- function name forms


def test_function_name_forms_and_qualifiers(
    api: Any, function: Callable[..., Any], queue: Callable[..., str]
) -> None:
    name = function(Publish=True)["FunctionName"]
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
    api.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    forms = {
        name: arn,
        f"{ACCOUNT}:function:{name}": arn,
        arn: arn,
        f"{name}:live": f"{arn}:live",
        f"{arn}:1": f"{arn}:1",
        f"{name}:$LATEST": f"{arn}:$LATEST",
    }
    for form, expected in forms.items():
        created = api.create_event_source_mapping(EventSourceArn=queue(), FunctionName=form)
        assert created["FunctionArn"] == expected, form
    for missing in (f"{name}:nope", f"{name}:9", fresh("nobody")):
        assert refused(
            partial(api.create_event_source_mapping, EventSourceArn=queue(), FunctionName=missing)
        ) == invalid("Function does not exist"), missing
    # Listing by the unqualified name finds every qualifier; a qualified one only its own.
    assert len(api.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]) == 6
    live = api.list_event_source_mappings(FunctionName=f"{name}:live")["EventSourceMappings"]
    assert [m["FunctionArn"] for m in live] == [f"{arn}:live"]


# ------------------------------------------------------------ state machine


def test_updates_answer_their_transition_then_settle(
    api: Any, function: Callable[..., Any], queue: Callable[..., str]
) -> None:
    config, other = function(), function()
    mapping = api.create_event_source_mapping(
        EventSourceArn=queue(), FunctionName=config["FunctionName"]
    )
    key = mapping["UUID"]
    updated = api.update_event_source_mapping(UUID=key, BatchSize=5)
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (updated["State"], updated["BatchSize"]) == ("Updating", 5)
    assert updated["LastModified"] >= mapping["LastModified"]
    assert api.get_event_source_mapping(UUID=key)["State"] == "Enabled"
    assert api.update_event_source_mapping(UUID=key, Enabled=False)["State"] == "Disabling"
    assert api.get_event_source_mapping(UUID=key)["State"] == "Disabled"
    assert api.update_event_source_mapping(UUID=key, BatchSize=6)["State"] == "Updating"
    assert api.get_event_source_mapping(UUID=key)["State"] == "Disabled"
    assert api.update_event_source_mapping(UUID=key, Enabled=True)["State"] == "Enabling"
    got = api.get_event_source_mapping(UUID=key)
    assert (got["State"], got["StateTransitionReason"], got["BatchSize"]) == (
        "Enabled",
        "USER_INITIATED",
        6,
    )
    # A new function, qualifier kept; the merged settings are checked again.
    moved = api.update_event_source_mapping(UUID=key, FunctionName=f"{other['FunctionName']}")
    assert moved["FunctionArn"] == other["FunctionArn"]
    assert refused(lambda: api.update_event_source_mapping(UUID=key, BatchSize=50)) == invalid(
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
        "greater than 10"
    )
    assert refused(
        lambda: api.update_event_source_mapping(UUID=key, FunctionName=fresh("nobody"))
    ) == invalid("Function does not exist")
    assert refused(
        lambda: api.update_event_source_mapping(UUID=key, ParallelizationFactor=2)
    ) == invalid("Unsupported ParallelizationFactor parameter for given event source mapping type.")
    widened = api.update_event_source_mapping(
        UUID=key,
        BatchSize=50,
        MaximumBatchingWindowInSeconds=3,
        FilterCriteria={"Filters": [{"Pattern": '{"body": {"k": ["v"]}}'}]},
        ScalingConfig={"MaximumConcurrency": 2},
    )
    assert (widened["BatchSize"], widened["MaximumBatchingWindowInSeconds"]) == (50, 3)
    assert widened["FilterCriteria"] == {"Filters": [{"Pattern": '{"body": {"k": ["v"]}}'}]}
    cleared = api.update_event_source_mapping(UUID=key, FilterCriteria={}, ScalingConfig={})
    assert "FilterCriteria" not in cleared and "ScalingConfig" not in cleared


def test_an_update_to_a_function_already_mapped_is_a_conflict(
    api: Any, function: Callable[..., Any], queue: Callable[..., str]
) -> None:
    first, second, source = function()["FunctionName"], function()["FunctionName"], queue()
    taken = api.create_event_source_mapping(EventSourceArn=source, FunctionName=first)
    moving = api.create_event_source_mapping(EventSourceArn=source, FunctionName=second)
    assert refused(
        lambda: api.update_event_source_mapping(UUID=moving["UUID"], FunctionName=first)
    ) == (
        "ResourceConflictException",
        f'An event source mapping with SQS arn (" {source} ") and function (" {first} ") '
        f"already exists. Please update or delete the existing mapping with UUID {taken['UUID']}",
        409,
    )


def test_a_delete_answers_deleting_and_then_the_mapping_is_gone(
    api: Any, function: Callable[..., Any], kinesis_stream: Callable[[], str]
) -> None:
    config = function()
    mapping = api.create_event_source_mapping(
        EventSourceArn=kinesis_stream(),
        FunctionName=config["FunctionName"],
        StartingPosition="LATEST",
    )
    deleted = api.delete_event_source_mapping(UUID=mapping["UUID"])
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (deleted["State"], deleted["UUID"]) == ("Deleting", mapping["UUID"])
    assert deleted["StateTransitionReason"] == "User action"
    assert refused(lambda: api.get_event_source_mapping(UUID=mapping["UUID"])) == NOT_FOUND
    assert refused(lambda: api.delete_event_source_mapping(UUID=mapping["UUID"])) == NOT_FOUND
    assert (
        refused(lambda: api.update_event_source_mapping(UUID=mapping["UUID"], BatchSize=5))
        == NOT_FOUND
    )


def test_an_unknown_uuid_is_not_found(api: Any) -> None:
    missing = str(uuid.uuid4())
    assert refused(lambda: api.get_event_source_mapping(UUID=missing)) == NOT_FOUND


# ---------------------------------------------------------------------- tags


def test_tags_on_mapping_arns(
    api: Any, function: Callable[..., Any], queue: Callable[..., str]
) -> None:
    config = function()
    mapping = api.create_event_source_mapping(
        EventSourceArn=queue(), FunctionName=config["FunctionName"], Tags={"team": "core"}
    )
    arn = mapping["EventSourceMappingArn"]
    assert api.list_tags(Resource=arn)["Tags"] == {"team": "core"}
    assert (
        api.tag_resource(Resource=arn, Tags={"cost": "7"})["ResponseMetadata"]["HTTPStatusCode"]
        == 204
    )
    assert api.list_tags(Resource=arn)["Tags"] == {"team": "core", "cost": "7"}
    api.untag_resource(Resource=arn, TagKeys=["team", "absent"])
    assert api.list_tags(Resource=arn)["Tags"] == {"cost": "7"}
    # Tags are not part of the mapping's configuration, and a change keeps them.
    api.update_event_source_mapping(UUID=mapping["UUID"], BatchSize=3)
    assert api.list_tags(Resource=arn)["Tags"] == {"cost": "7"}
    assert refused(lambda: api.tag_resource(Resource=arn, Tags={"aws:owner": "x"})) == invalid(
        "Tag keys starting with 'aws:' are reserved for AWS use: aws:owner"
    )
    missing = MAPPING_ARN + str(uuid.uuid4())
    assert refused(lambda: api.list_tags(Resource=missing)) == NOT_FOUND
    api.delete_event_source_mapping(UUID=mapping["UUID"])
    assert refused(lambda: api.list_tags(Resource=arn)) == NOT_FOUND


# -------------------------------------------------------------------- paging


def test_list_pages_with_marker_and_max_items_under_filters(
    api: Any, function: Callable[..., Any], queue: Callable[..., str]
) -> None:
    name, other = function()["FunctionName"], function()["FunctionName"]
    shared = queue()
    created = {
        api.create_event_source_mapping(EventSourceArn=queue(), FunctionName=name)["UUID"]
        for _ in range(4)
    }
    shared_uuid = api.create_event_source_mapping(EventSourceArn=shared, FunctionName=name)["UUID"]
    created.add(shared_uuid)
    elsewhere = api.create_event_source_mapping(EventSourceArn=shared, FunctionName=other)
    seen: list[str] = []
    marker: str | None = None
    pages = 0
    while True:
        kwargs = {"Marker": marker} if marker else {}
        page = api.list_event_source_mappings(FunctionName=name, MaxItems=2, **kwargs)
        assert len(page["EventSourceMappings"]) <= 2
        seen += [m["UUID"] for m in page["EventSourceMappings"]]
        pages += 1
        marker = page.get("NextMarker")
        if not marker:
            break
    assert pages == 3
    assert sorted(seen) == sorted(created) and len(seen) == len(set(seen))
    by_source = api.list_event_source_mappings(EventSourceArn=shared)["EventSourceMappings"]
    assert sorted(m["UUID"] for m in by_source) == sorted([shared_uuid, elsewhere["UUID"]])
    both = api.list_event_source_mappings(EventSourceArn=shared, FunctionName=other)
    assert [m["UUID"] for m in both["EventSourceMappings"]] == [elsewhere["UUID"]]
    assert "NextMarker" not in both
    everything = api.list_event_source_mappings()["EventSourceMappings"]
    assert created | {elsewhere["UUID"]} <= {m["UUID"] for m in everything}
    assert api.list_event_source_mappings(FunctionName=fresh("nobody"))["EventSourceMappings"] == []


# --------------------------------------------------------------- durability


def test_mappings_survive_function_deletion_and_restarts(
    tmp_path: Path, moto: MotoServer, peers: dict[str, Any]
) -> None:
    instance = LaminaServer(tmp_path / "data", env=moto.env).start()
    try:
        client = instance.client("lambda")
        name = fresh("fn")
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip()},
        )
        url = peers["sqs"].create_queue(QueueName=fresh("q"))["QueueUrl"]
        source = peers["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        mapping = client.create_event_source_mapping(
            EventSourceArn=source, FunctionName=name, BatchSize=7, Tags={"k": "v"}
        )
        client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
        client.delete_function(FunctionName=name)
        kept = shown(client.get_event_source_mapping(UUID=mapping["UUID"]))
        assert (kept["State"], kept["BatchSize"]) == ("Disabled", 7)
        client.close()
        instance.stop()
        instance.start()
        client = instance.client("lambda")
        assert shown(client.get_event_source_mapping(UUID=mapping["UUID"])) == kept
        listed = client.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
        assert [m["UUID"] for m in listed] == [mapping["UUID"]]
        assert client.list_tags(Resource=kept["EventSourceMappingArn"])["Tags"] == {"k": "v"}
        # The function is gone: a new mapping to it is refused, the old one can go.
        assert refused(
            lambda: client.create_event_source_mapping(EventSourceArn=source, FunctionName=name)
        ) == invalid("Function does not exist")
        client.delete_event_source_mapping(UUID=mapping["UUID"])
        client.close()
        instance.kill()
        instance.start()
        client = instance.client("lambda")
        assert refused(lambda: client.get_event_source_mapping(UUID=mapping["UUID"])) == NOT_FOUND
        client.close()
    finally:
        instance.stop()
