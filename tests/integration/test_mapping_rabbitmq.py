"""Amazon MQ for RabbitMQ event source mappings end to end: a real Lamina consumes queues on
the machine's RabbitMQ (127.0.0.1:5672), with the credentials of a BASIC_AUTH secret in
moto's Secrets Manager, and invokes functions that report each event to a collector.

The broker ARN's name reaches the broker through LAMINA_MQ_BROKERS. Every test uses queues
of its own and deletes them.
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiormq import spec
from botocore.exceptions import ClientError

from tests.support import netns
from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.ports import free_port
from tests.support.rabbitmq import HANDLER, Collector, Rabbit
from tests.support.reachable import elsewhere
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

BROKER_NAME = "lamina-rabbit"
BROKER = (
    f"arn:aws:mq:us-east-1:000000000000:broker:{BROKER_NAME}:b-6a3c1f0e-5b7d-4c2a-9e8f-0123456789ab"
)
# Nothing listens at the second broker's address.
DEAD_PORT = free_port()
DEAD_BROKER = "arn:aws:mq:us-east-1:000000000000:broker:dead-rabbit:b-0000"
BROKER_ENV = {
    "LAMINA_MQ_BROKERS": (
        f"{BROKER_NAME}=amqp://127.0.0.1:5672,dead-rabbit=amqp://127.0.0.1:{DEAD_PORT}"
    )
}


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[LaminaServer]:
    data = tmp_path_factory.mktemp("esm-rabbitmq") / "data"
    instance = LaminaServer(data, env={**moto.env, **BROKER_ENV}).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def api(lamina: LaminaServer) -> Iterator[Any]:
    client = lamina.client("lambda")
    yield client
    client.close()


@pytest.fixture(scope="module")
def secret(moto: MotoServer) -> Iterator[str]:
    """A BASIC_AUTH secret holding the broker's guest credentials; its ARN."""
    client = moto.client("secretsmanager")
    created = client.create_secret(
        Name=fresh("rabbit"),
        SecretString=json.dumps({"username": "guest", "password": "guest"}),
    )
    yield created["ARN"]
    client.delete_secret(SecretId=created["ARN"], ForceDeleteWithoutRecovery=True)
    client.close()


@pytest.fixture(scope="module")
def rabbit() -> Rabbit:
    return Rabbit()


@pytest.fixture
def queue(rabbit: Rabbit) -> Iterator[str]:
    name = fresh("q")
    rabbit.declare(name)
    yield name
    rabbit.delete(name)


@pytest.fixture(scope="module")
def remote() -> Iterator[netns.Host]:
    with elsewhere() as host:
        yield host


@pytest.fixture
def collector(remote: netns.Host) -> Iterator[Collector]:
    instance = Collector(remote)
    yield instance
    instance.close()


def make_function(api: Any, collector: Collector) -> str:
    name = fresh("fn")
    api.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Timeout=60,
        Environment={"Variables": {"COLLECTOR": collector.url}},
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )
    return name


@pytest.fixture
def function(api: Any, collector: Collector) -> str:
    return make_function(api, collector)


def map_queue(api: Any, function: str, queue: str, secret: str, **params: Any) -> str:
    params.setdefault("EventSourceArn", BROKER)
    created = api.create_event_source_mapping(
        FunctionName=function,
        Queues=[queue],
        SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": secret}],
        **params,
    )
    uuid_: str = created["UUID"]
    return uuid_


def settled(api: Any, uuid_: str) -> dict[str, Any]:
    return wait_until(
        lambda: (
            (found := api.get_event_source_mapping(UUID=uuid_))["State"] in {"Enabled", "Disabled"}
            and found
        ),
        message="the mapping never settled",
    )


def records(event: dict[str, Any]) -> list[dict[str, Any]]:
    (messages,) = event["rmqMessagesByQueue"].values()
    result: list[dict[str, Any]] = messages
    return result


def bodies(event: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(item["data"]) for item in records(event)]


def events_with(collector: Collector, count: int) -> list[dict[str, Any]]:
    """Wait until the collector holds `count` records in all; the events."""

    def enough() -> list[dict[str, Any]] | None:
        got = collector.received()
        return got if sum(len(records(event)) for event in got) >= count else None

    return wait_until(
        enough,
        timeout=60,
        message=lambda: f"the function got {collector.received()!r}",
    )


def drained(api: Any, rabbit: Rabbit, uuid_: str, queue: str) -> None:
    """Delete the mapping, wait for its consumer to leave, and check nothing went back: every
    message was acked."""
    api.delete_event_source_mapping(UUID=uuid_)
    state = wait_until(
        lambda: (found := rabbit.state(queue)).consumers == 0 and found,
        message="the mapping's consumer never left",
    )
    assert state.ready == 0


# --------------------------------------------------------------------- tests


def test_the_function_receives_the_event_as_aws_builds_it(
    api: Any, rabbit: Rabbit, queue: str, secret: str, collector: Collector, function: str
) -> None:
    properties = spec.Basic.Properties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"tenant": "acme", "attempt": 3, "urgent": True, "nested": {"k": "é"}},
        delivery_mode=2,
        priority=5,
        correlation_id="corr-1",
        reply_to="replies",
        expiration="60000",
        message_id="msg-1",
        timestamp=datetime(2024, 1, 2, 15, 4, 5, tzinfo=UTC),
        message_type="order.created",
        user_id="guest",
        app_id="shop",
    )
    body = b'{"order": 42}'
    rabbit.publish(queue, [body], properties)
    uuid_ = map_queue(api, function, queue, secret)

    (event,) = events_with(collector, 1)
    assert event == {
        "eventSource": "aws:rmq",
        "eventSourceArn": BROKER,
        "rmqMessagesByQueue": {
            f"{queue}::/": [
                {
                    "basicProperties": {
                        "contentType": "application/json",
                        "contentEncoding": "utf-8",
                        "headers": {
                            "tenant": {"bytes": [97, 99, 109, 101]},
                            "attempt": 3,
                            "urgent": True,
                            # Java's signed bytes: "é" is 0xC3 0xA9.
                            "nested": {"k": {"bytes": [-61, -87]}},
                        },
                        "deliveryMode": 2,
                        "priority": 5,
                        "correlationId": "corr-1",
                        "replyTo": "replies",
                        "expiration": "60000",
                        "messageId": "msg-1",
                        "timestamp": "Jan 2, 2024, 3:04:05 PM",
                        "type": "order.created",
                        "userId": "guest",
                        "appId": "shop",
                        "clusterId": None,
                        "bodySize": len(body),
                    },
                    "redelivered": False,
                    "data": base64.b64encode(body).decode(),
                }
            ]
        },
    }
    found = wait_until(
        lambda: (
            (got := api.get_event_source_mapping(UUID=uuid_))["LastProcessingResult"] == "OK"
            and got
        ),
        message="LastProcessingResult never became OK",
    )
    assert found["State"] == "Enabled"
    drained(api, rabbit, uuid_, queue)


def test_a_message_without_properties_shows_them_null(
    api: Any, rabbit: Rabbit, queue: str, secret: str, collector: Collector, function: str
) -> None:
    rabbit.publish(queue, [b"plain text"])
    uuid_ = map_queue(api, function, queue, secret)
    (event,) = events_with(collector, 1)
    (item,) = records(event)
    # aiormq gives every message it publishes an id; everything else was left out.
    assert isinstance(item["basicProperties"].pop("messageId"), str)
    assert item["basicProperties"] == {
        "contentType": None,
        "contentEncoding": None,
        "headers": None,
        "deliveryMode": None,
        "priority": None,
        "correlationId": None,
        "replyTo": None,
        "expiration": None,
        "timestamp": None,
        "type": None,
        "userId": None,
        "appId": None,
        "clusterId": None,
        "bodySize": 10,
    }
    assert base64.b64decode(item["data"]) == b"plain text"
    drained(api, rabbit, uuid_, queue)


def test_a_failed_batch_is_requeued_whole_and_redelivered_until_it_succeeds(
    api: Any, rabbit: Rabbit, queue: str, secret: str, collector: Collector, function: str
) -> None:
    sent = [f"m{index}".encode() for index in range(5)]
    rabbit.publish(queue, sent)
    collector.answers = ["fail"]
    uuid_ = map_queue(api, function, queue, secret, BatchSize=10, MaximumBatchingWindowInSeconds=1)

    first, second = events_with(collector, 10)[:2]
    # One batch with all five, failed; then the same five again, marked redelivered.
    assert bodies(first) == sent
    assert [item["redelivered"] for item in records(first)] == [False] * 5
    assert bodies(second) == sent
    assert [item["redelivered"] for item in records(second)] == [True] * 5
    wait_until(
        lambda: api.get_event_source_mapping(UUID=uuid_)["LastProcessingResult"] == "OK",
        message="LastProcessingResult never became OK",
    )
    drained(api, rabbit, uuid_, queue)
    assert len(collector.received()) == 2


def test_filters_apply_to_the_json_in_data_and_filtered_out_messages_are_acked(
    api: Any, rabbit: Rabbit, queue: str, secret: str, collector: Collector, function: str
) -> None:
    rabbit.publish(
        queue,
        [
            b'{"kind": "keep", "n": 1}',
            b'{"kind": "drop", "n": 2}',
            b"kind keep",
            b'{"kind": "keep"}',
        ],
    )
    uuid_ = map_queue(
        api,
        function,
        queue,
        secret,
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"data": {"kind": ["keep"]}})}]},
    )
    got = events_with(collector, 2)
    assert [body for event in got for body in bodies(event)] == [
        b'{"kind": "keep", "n": 1}',
        b'{"kind": "keep"}',
    ]
    drained(api, rabbit, uuid_, queue)


def test_a_queue_of_only_filtered_out_messages_is_consumed_without_an_invocation(
    api: Any, rabbit: Rabbit, queue: str, secret: str, collector: Collector, function: str
) -> None:
    rabbit.publish(queue, [b'{"kind": "drop"}', b"not json"])
    map_queue(
        api,
        function,
        queue,
        secret,
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"data": {"kind": ["keep"]}})}]},
    )
    wait_until(lambda: rabbit.state(queue).ready == 0, message="the messages were never taken")
    # Acked, not merely held: a message published after them is the first invocation.
    rabbit.publish(queue, [b'{"kind": "keep"}'])
    (event,) = events_with(collector, 1)
    assert bodies(event) == [b'{"kind": "keep"}']


def test_disable_stops_consumption_and_enable_resumes_with_the_updated_settings(
    api: Any, rabbit: Rabbit, queue: str, secret: str, collector: Collector, function: str
) -> None:
    uuid_ = map_queue(api, function, queue, secret, BatchSize=10)
    wait_until(lambda: rabbit.state(queue).consumers == 1, message="no consumer came")
    rabbit.publish(queue, [b"before"])
    events_with(collector, 1)

    api.update_event_source_mapping(UUID=uuid_, Enabled=False)
    assert settled(api, uuid_)["State"] == "Disabled"
    wait_until(lambda: rabbit.state(queue).consumers == 0, message="the consumer stayed")
    rabbit.publish(queue, [b"a", b"b", b"c"])
    assert rabbit.state(queue).ready == 3
    assert len(collector.received()) == 1

    # Enabled again with a batch of one: three invocations of one message each.
    api.update_event_source_mapping(UUID=uuid_, Enabled=True, BatchSize=1)
    assert settled(api, uuid_)["BatchSize"] == 1
    got = events_with(collector, 4)
    assert [bodies(event) for event in got] == [[b"before"], [b"a"], [b"b"], [b"c"]]
    drained(api, rabbit, uuid_, queue)


def poller_row(server: LaminaServer, uuid_: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/mappings", timeout=10) as response:
        rows = json.loads(response.read())["Mappings"]
    (row,) = (row for row in rows if row["UUID"] == uuid_)
    result: dict[str, Any] = row
    return result


def test_the_poller_shows_the_messages_ready_as_its_lag_and_counts_its_work(
    api: Any,
    lamina: LaminaServer,
    rabbit: Rabbit,
    queue: str,
    secret: str,
    collector: Collector,
    function: str,
) -> None:
    rabbit.publish(queue, [b"1", b"2", b"3", b"4", b"5"])
    collector.hold.clear()  # the first invocation blocks
    uuid_ = map_queue(api, function, queue, secret, BatchSize=1)
    events_with(collector, 1)
    # One message in the function, one more prefetched (twice the batch): three ready.
    row = wait_until(
        lambda: (got := poller_row(lamina, uuid_))["Poller"] and got["Poller"]["Lag"] == 3 and got,
        message=lambda: f"the lag never showed: {poller_row(lamina, uuid_)}",
    )
    assert row["Poller"]["LagUnit"] == "messages"
    collector.hold.set()
    events_with(collector, 5)
    row = wait_until(
        lambda: (
            (got := poller_row(lamina, uuid_))["Metrics"].get("InvokedEventCount", {}).get("Sum")
            == 5
            and got
        ),
        message=lambda: f"the counters never showed: {poller_row(lamina, uuid_)}",
    )
    assert row["Metrics"]["PolledEventCount"]["Sum"] == 5
    drained(api, rabbit, uuid_, queue)


def test_a_virtual_host_names_the_queue_key(
    api: Any, rabbit: Rabbit, queue: str, secret: str, collector: Collector, function: str
) -> None:
    """VIRTUAL_HOST "/" given explicitly: the same broker, keyed `<queue>::/`."""
    rabbit.publish(queue, [b"x"])
    created = api.create_event_source_mapping(
        EventSourceArn=BROKER,
        FunctionName=function,
        Queues=[queue],
        SourceAccessConfigurations=[
            {"Type": "BASIC_AUTH", "URI": secret},
            {"Type": "VIRTUAL_HOST", "URI": "/"},
        ],
    )
    (event,) = events_with(collector, 1)
    assert list(event["rmqMessagesByQueue"]) == [f"{queue}::/"]
    drained(api, rabbit, created["UUID"], queue)


def test_a_missing_queue_is_reported_and_consumed_once_it_exists(
    api: Any, rabbit: Rabbit, secret: str, collector: Collector, function: str
) -> None:
    name = fresh("later")
    uuid_ = map_queue(api, function, name, secret)
    found = wait_until(
        lambda: (
            (got := api.get_event_source_mapping(UUID=uuid_))["LastProcessingResult"].startswith(
                "PROBLEM:"
            )
            and got
        ),
        message="the missing queue was never reported",
    )
    assert found["LastProcessingResult"] == (f"PROBLEM: Queue {name} not found on virtual host /.")
    rabbit.declare(name)
    try:
        rabbit.publish(name, [b"late"])
        (event,) = events_with(collector, 1)
        assert bodies(event) == [b"late"]
        drained(api, rabbit, uuid_, name)
    finally:
        rabbit.delete(name)


def test_a_secret_deleted_after_create_is_reported(
    api: Any, moto: MotoServer, rabbit: Rabbit, queue: str, collector: Collector, function: str
) -> None:
    client = moto.client("secretsmanager")
    arn = client.create_secret(
        Name=fresh("gone"), SecretString=json.dumps({"username": "guest", "password": "guest"})
    )["ARN"]
    try:
        api.create_event_source_mapping(
            EventSourceArn=BROKER,
            FunctionName=function,
            Queues=[queue],
            SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": arn}],
            Enabled=False,
        )
        client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        (mapping,) = api.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
        api.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
        found = wait_until(
            lambda: (
                (got := api.get_event_source_mapping(UUID=mapping["UUID"]))[
                    "LastProcessingResult"
                ].startswith("PROBLEM:")
                and got
            ),
            message="the missing secret was never reported",
        )
        assert found["LastProcessingResult"].startswith(
            f"PROBLEM: Lamina could not read the BASIC_AUTH secret {arn} from Secrets Manager: "
            "ResourceNotFoundException"
        )
        assert rabbit.state(queue).consumers == 0
        api.delete_event_source_mapping(UUID=mapping["UUID"])
    finally:
        client.close()


def problem_of(api: Any, uuid_: str) -> str:
    found: str = wait_until(
        lambda: (
            (text := api.get_event_source_mapping(UUID=uuid_)["LastProcessingResult"]).startswith(
                "PROBLEM:"
            )
            and text
        ),
        message="no problem was ever reported",
    )
    return found


def test_an_unreachable_broker_is_reported(api: Any, secret: str, function: str) -> None:
    uuid_ = map_queue(api, function, "q", secret, EventSourceArn=DEAD_BROKER)
    assert problem_of(api, uuid_).startswith(
        f"PROBLEM: Connection error. The broker at amqp://127.0.0.1:{DEAD_PORT} could not be "
        "reached: "
    )
    api.delete_event_source_mapping(UUID=uuid_)


def test_refused_credentials_are_reported(
    api: Any, moto: MotoServer, queue: str, function: str
) -> None:
    client = moto.client("secretsmanager")
    wrong = client.create_secret(
        Name=fresh("wrong"), SecretString=json.dumps({"username": "guest", "password": "nope"})
    )["ARN"]
    try:
        uuid_ = map_queue(api, function, queue, wrong)
        assert problem_of(api, uuid_) == (
            "PROBLEM: Authentication error. The broker at amqp://127.0.0.1:5672 refused the "
            "credentials of the BASIC_AUTH secret for virtual host /."
        )
        api.delete_event_source_mapping(UUID=uuid_)
    finally:
        client.delete_secret(SecretId=wrong, ForceDeleteWithoutRecovery=True)
        client.close()


# ----------------------------------------------------------------- refusals


def refused(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


def test_create_refuses_a_broker_lamina_has_no_address_for(
    api: Any, secret: str, function: str
) -> None:
    unknown = "arn:aws:mq:us-east-1:000000000000:broker:elsewhere:b-1111"
    code, message = refused(
        lambda: api.create_event_source_mapping(
            EventSourceArn=unknown,
            FunctionName=function,
            Queues=["q"],
            SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": secret}],
        )
    )
    assert code == "InvalidParameterValueException"
    assert message == (
        f"Lamina does not know where the Amazon MQ broker 'elsewhere' of {unknown} listens: "
        "add elsewhere=amqp://<host>:<port> to LAMINA_MQ_BROKERS."
    )


def test_create_refuses_a_secret_that_does_not_exist(api: Any, function: str) -> None:
    missing = "arn:aws:secretsmanager:us-east-1:000000000000:secret:nothing-here-AbCdEf"
    code, message = refused(
        lambda: api.create_event_source_mapping(
            EventSourceArn=BROKER,
            FunctionName=function,
            Queues=["q"],
            SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": missing}],
        )
    )
    assert (code, message) == (
        "InvalidParameterValueException",
        f"The BASIC_AUTH secret {missing} does not exist in Secrets Manager.",
    )
    assert api.list_event_source_mappings(FunctionName=function)["EventSourceMappings"] == []


# ------------------------------------------------------------------- crashes


def test_a_kill_mid_batch_loses_nothing(
    tmp_path: Path,
    moto: MotoServer,
    rabbit: Rabbit,
    queue: str,
    secret: str,
    collector: Collector,
) -> None:
    server = LaminaServer(tmp_path / "data", env={**moto.env, **BROKER_ENV}).start()
    try:
        client = server.client("lambda")
        function = make_function(client, collector)
        sent = [b"one", b"two", b"three"]
        rabbit.publish(queue, sent)
        collector.hold.clear()  # the function blocks inside its invocation
        map_queue(client, function, queue, secret)
        (held,) = events_with(collector, 3)
        assert bodies(held) == sent
        server.kill()
        # The connection died with the process: the unacked batch is back in the queue.
        state = wait_until(
            lambda: (found := rabbit.state(queue)).consumers == 0 and found.ready == 3 and found,
            message=lambda: f"the batch did not come back: {rabbit.state(queue)}",
        )
        assert state.ready == 3
        collector.hold.set()
        collector.clear()

        server.start()
        (again,) = events_with(collector, 3)
        assert bodies(again) == sent
        assert [item["redelivered"] for item in records(again)] == [True] * 3
        (mapping,) = client.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
        drained(client, rabbit, mapping["UUID"], queue)
        client.close()
    finally:
        collector.hold.set()
        server.stop()
