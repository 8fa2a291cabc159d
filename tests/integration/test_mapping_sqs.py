"""SQS event source mappings end to end: boto3 sends to a queue on moto's standalone server,
Lamina polls it and invokes the function, which reports every invocation to a sink in the
test (an HTTP server on loopback) before it answers as its MODE says.

Queues have short visibility timeouts (2 s) and functions short timeouts, so redeliveries
come quickly. Nothing here times the server: waits are generous, and the checks are on what
arrived and what stayed in the queue.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.metrics import DELETED_EVENT_COUNT as DELETED
from lamina.metrics import FILTERED_OUT_EVENT_COUNT as FILTERED_OUT
from lamina.metrics import INVOKED_EVENT_COUNT as INVOKED
from lamina.metrics import POLLED_EVENT_COUNT as POLLED
from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.reachable import Recorder, elsewhere
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

REGION = "us-east-1"
VISIBILITY = 2
# The FIFO order test's queue's, and its function's timeout: failures are retried after it.
FIFO_ORDER_VISIBILITY = 6

HANDLER = """
import json, os, time, urllib.request

def post(doc):
    request = urllib.request.Request(
        os.environ["SINK"], data=json.dumps(doc).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10).read()

def first_time(record):
    return record["attributes"]["ApproximateReceiveCount"] == "1"

def handler(event, context):
    mode = os.environ.get("MODE", "ok")
    started = time.time()
    post({"start": started, "event": event, "function": context.function_name})
    time.sleep(float(os.environ.get("SLEEP", "0")))
    records = event["Records"]
    if mode == "fail":
        raise RuntimeError("asked to fail")
    if mode == "fail-marked":
        if any("fail" in r["body"] and first_time(r) for r in records):
            raise RuntimeError("a marked message fails once")
    post({"start": started, "end": time.time(), "ok": [r["messageId"] for r in records]})
    if mode == "partial":
        return {"batchItemFailures": [
            {"itemIdentifier": r["messageId"]}
            for r in records if "bad" in r["body"] and first_time(r)
        ]}
    if mode == "invalid":
        if any(first_time(r) for r in records):
            return {"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]}
    return None
"""


# ------------------------------------------------------------------ the sink


class Sink(Recorder):
    """What functions post: one document per invocation start and per success."""

    def invocations(self, function: str) -> list[dict[str, Any]]:
        """The events `function` was invoked with, in the order the invocations started."""
        with self.lock:
            return [post["event"] for post in self.posts if post.get("function") == function]

    def runs(self, function: str) -> list[tuple[dict[str, Any], bool]]:
        """`function`'s invocations in the order they started: (event, whether it returned)."""
        with self.lock:
            returned = {post["start"] for post in self.posts if "ok" in post}
            return [
                (post["event"], post["start"] in returned)
                for post in self.posts
                if post.get("function") == function
            ]

    def records(self, function: str) -> list[dict[str, Any]]:
        return [record for event in self.invocations(function) for record in event["Records"]]

    def succeeded(self) -> set[str]:
        with self.lock:
            return {message for post in self.posts for message in post.get("ok", [])}

    def spans(self) -> list[tuple[float, float]]:
        with self.lock:
            return [(post["start"], post["end"]) for post in self.posts if "end" in post]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with elsewhere() as host:
        instance = Sink(host)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[LaminaServer]:
    instance = LaminaServer(tmp_path_factory.mktemp("sqs-esm") / "data", env=moto.env).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def api(lamina: LaminaServer) -> Iterator[Any]:
    client = lamina.client("lambda")
    yield client
    client.close()


@pytest.fixture(scope="module")
def sqs(moto: MotoServer) -> Iterator[Any]:
    client = moto.client("sqs")
    yield client
    client.close()


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Queue:
    def __init__(self, sqs: Any, fifo: bool = False, **attributes: str) -> None:
        self.name = fresh("q") + (".fifo" if fifo else "")
        attributes = {"VisibilityTimeout": str(VISIBILITY), **attributes}
        if fifo:
            attributes["FifoQueue"] = "true"
        self.url = sqs.create_queue(QueueName=self.name, Attributes=attributes)["QueueUrl"]
        self.arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._sqs = sqs

    def send(self, body: str, **params: Any) -> dict[str, Any]:
        response: dict[str, Any] = self._sqs.send_message(
            QueueUrl=self.url, MessageBody=body, **params
        )
        return response

    def send_many(self, bodies: list[str], **params: Any) -> list[str]:
        """Send in batches of ten; the message IDs in order."""
        ids = []
        for start in range(0, len(bodies), 10):
            entries = [
                {"Id": str(index), "MessageBody": body, **params}
                for index, body in enumerate(bodies[start : start + 10])
            ]
            response = self._sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
            assert not response.get("Failed"), response
            by_id = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
            ids += [by_id[str(index)] for index in range(len(entries))]
        return ids

    def counts(self) -> tuple[int, int]:
        """(visible, in flight)."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def empty(self) -> bool:
        return self.counts() == (0, 0)


@pytest.fixture
def queue(sqs: Any) -> Callable[..., Queue]:
    return lambda fifo=False, **attributes: Queue(sqs, fifo, **attributes)


@pytest.fixture
def function(api: Any, sink: Sink) -> Callable[..., str]:
    """A function reporting to the sink; its name."""

    def create(
        mode: str = "ok",
        sleep: float = 0,
        timeout: int = VISIBILITY,
        name: str | None = None,
        memory_mb: int = 128,
    ) -> str:
        name = name or fresh("fn")
        api.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": HANDLER})},
            Timeout=timeout,
            MemorySize=memory_mb,
            Environment={"Variables": {"SINK": sink.url, "MODE": mode, "SLEEP": str(sleep)}},
        )
        return name

    return create


@pytest.fixture
def mapping(api: Any) -> Iterator[Callable[..., str]]:
    """Create a mapping and wait until it is Enabled; deleted after the test."""
    made: list[str] = []

    def create(source: str, name: str, **params: Any) -> str:
        uuid_ = api.create_event_source_mapping(EventSourceArn=source, FunctionName=name, **params)[
            "UUID"
        ]
        made.append(uuid_)
        settle(api, uuid_, "Enabled" if params.get("Enabled", True) else "Disabled")
        return str(uuid_)

    yield create
    for uuid_ in made:
        api.delete_event_source_mapping(UUID=uuid_)


def settle(api: Any, uuid_: str, state: str) -> None:
    wait_until(
        lambda: api.get_event_source_mapping(UUID=uuid_)["State"] == state,
        timeout=10,
        message=f"mapping {uuid_} never became {state}",
    )
    # The supervisor starts or stops the poller within its reconcile interval (0.25 s).
    time.sleep(0.6)


def overview(server: LaminaServer, function: str) -> dict[str, Any]:
    url = f"{server.endpoint}/_lamina/mappings?function={function}"
    with urllib.request.urlopen(url, timeout=5) as response:
        (row,) = json.loads(response.read())["Mappings"]
    result: dict[str, Any] = row
    return result


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def records_of(sink: Sink, name: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    return wait_until(
        lambda: (found := sink.records(name)) and len(found) >= count and found,
        timeout=timeout,
        message=lambda: f"{name} got {len(sink.records(name))} records, wanted {count}",
    )


# ------------------------------------------------------------------ record shapes


def test_a_standard_queue_message_arrives_in_aws_record_shape(
    lamina: LaminaServer,
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(), function()
    uuid_ = mapping(source.arn, name)
    sent = source.send(
        '{"order": 7}',
        MessageAttributes={
            "colour": {"DataType": "String", "StringValue": "blue"},
            "count": {"DataType": "Number", "StringValue": "3"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        },
        MessageSystemAttributes={
            "AWSTraceHeader": {
                "DataType": "String",
                "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            }
        },
    )
    plain = source.send("plain text")
    records = records_of(sink, name, 2)
    assert len(sink.invocations(name)) <= 2
    by_id = {record["messageId"]: record for record in records}
    first, second = by_id[sent["MessageId"]], by_id[plain["MessageId"]]
    keys = [
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfMessageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    ]
    assert list(first) == keys and list(second) == keys
    assert isinstance(first["receiptHandle"], str) and first["receiptHandle"]
    assert first["body"] == '{"order": 7}'
    assert first["md5OfBody"] == md5('{"order": 7}') == sent["MD5OfMessageBody"]
    assert first["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert (first["eventSource"], first["eventSourceARN"], first["awsRegion"]) == (
        "aws:sqs",
        source.arn,
        REGION,
    )
    assert first["messageAttributes"] == {
        "colour": {
            "stringValue": "blue",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "count": {
            "stringValue": "3",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number",
        },
        "blob": {
            "binaryValue": "AAH/",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    attributes = first["attributes"]
    assert set(attributes) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
        "AWSTraceHeader",
    }
    assert all(isinstance(value, str) for value in attributes.values())
    assert attributes["ApproximateReceiveCount"] == "1"
    assert attributes["AWSTraceHeader"].startswith("Root=1-5759e988")
    assert abs(int(attributes["SentTimestamp"]) / 1000 - time.time()) < 120
    assert int(attributes["ApproximateFirstReceiveTimestamp"]) >= int(attributes["SentTimestamp"])
    # Without attributes: an empty map and a null digest.
    assert second["body"] == "plain text"
    assert second["md5OfBody"] == md5("plain text")
    assert (second["messageAttributes"], second["md5OfMessageAttributes"]) == ({}, None)
    assert set(second["attributes"]) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    # Both deleted after the invocation; the mapping says how it went.
    wait_until(source.empty, timeout=10, message="the messages were not deleted")
    shown = overview(lamina, name)
    assert shown["UUID"] == uuid_
    assert shown["LastProcessingResult"] == "OK"
    metrics = wait_until(
        lambda: (found := overview(lamina, name)["Metrics"]).get(DELETED) and found,
        timeout=10,
    )
    assert metrics[POLLED]["Sum"] == 2
    assert metrics[INVOKED]["Sum"] == 2
    assert metrics[DELETED]["Sum"] == 2
    assert shown["Poller"]["Errors"] == 0


def test_a_fifo_message_carries_its_group_sequence_and_deduplication_id(
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(fifo=True), function()
    mapping(source.arn, name)
    sent = source.send("first", MessageGroupId="g1", MessageDeduplicationId="d1")
    (record,) = records_of(sink, name, 1)
    attributes = record["attributes"]
    assert set(attributes) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SequenceNumber",
        "MessageGroupId",
        "SenderId",
        "MessageDeduplicationId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert attributes["MessageGroupId"] == "g1"
    assert attributes["MessageDeduplicationId"] == "d1"
    assert attributes["SequenceNumber"] == sent["SequenceNumber"]
    assert record["messageId"] == sent["MessageId"]
    assert record["md5OfMessageAttributes"] is None
    assert record["eventSourceARN"] == source.arn
    wait_until(source.empty, timeout=10)


# ------------------------------------------------------------------ batches


def test_a_batching_window_gathers_several_receives_into_one_batch(
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(), function()
    ids = source.send_many([f"m{index}" for index in range(25)])
    mapping(source.arn, name, BatchSize=25, MaximumBatchingWindowInSeconds=2)
    records_of(sink, name, 25)
    events = sink.invocations(name)
    # One poller starts on an idle mapping: it reads 10 + 10 + 5 into one invocation.
    assert [len(event["Records"]) for event in events] == [25]
    assert sorted(record["messageId"] for record in events[0]["Records"]) == sorted(ids)
    wait_until(source.empty, timeout=10)


# ------------------------------------------------------------------ failures


def test_only_the_reported_item_failure_comes_back(
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(), function("partial")
    good1, bad, good2 = source.send_many(["good-1", "bad-2", "good-3"])
    mapping(source.arn, name, FunctionResponseTypes=["ReportBatchItemFailures"])
    records = records_of(sink, name, 4)
    wait_until(source.empty, timeout=20)
    seen = [
        (record["messageId"], record["attributes"]["ApproximateReceiveCount"])
        for record in sink.records(name)
    ]
    assert sorted(seen) == sorted([(good1, "1"), (bad, "1"), (good2, "1"), (bad, "2")])
    assert len(records) == 4


def test_an_invalid_partial_response_fails_the_whole_batch(
    lamina: LaminaServer,
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(), function("invalid")
    ids = source.send_many(["a", "b", "c"])
    mapping(source.arn, name, FunctionResponseTypes=["ReportBatchItemFailures"])
    records_of(sink, name, 6)
    wait_until(source.empty, timeout=20)
    counts = sorted(
        (record["messageId"], record["attributes"]["ApproximateReceiveCount"])
        for record in sink.records(name)
    )
    assert counts == sorted([(id_, "1") for id_ in ids] + [(id_, "2") for id_ in ids])
    shown = overview(lamina, name)
    assert shown["LastProcessingResult"] == "OK"
    assert shown["Poller"]["Errors"] >= 1
    assert "batch" in shown["Poller"]["LastError"]


def test_a_failing_function_sees_the_message_again_then_the_dlq_gets_it(
    lamina: LaminaServer,
    sqs: Any,
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    dlq = queue()
    source = queue(RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 2}))
    name = function("fail")
    (sent,) = source.send_many(["doomed"])
    mapping(source.arn, name)
    records_of(sink, name, 2)
    # moto moves the message when a receive finds it received maxReceiveCount times.
    wait_until(lambda: dlq.counts()[0] == 1, timeout=30, message="the DLQ never got the message")
    dead = sqs.receive_message(QueueUrl=dlq.url)["Messages"][0]
    assert (dead["MessageId"], dead["Body"]) == (sent, "doomed")
    counts = [record["attributes"]["ApproximateReceiveCount"] for record in sink.records(name)]
    assert counts == ["1", "2"]
    assert overview(lamina, name)["LastProcessingResult"] == "PROBLEM: Function call failed"


# ------------------------------------------------------------------ FIFO order


def test_fifo_order_holds_per_group_across_failures(
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    # The sink counts a batch done once the function has posted it. On a loaded machine a
    # 128 MB function (a fourteenth of a vCPU) took up to 2 s to post, and one timing out
    # after its post was a failure to Lamina (the batch delivered again) but a success
    # here: this one has a whole vCPU, and a timeout that leaves room.
    source = queue(fifo=True, VisibilityTimeout=str(FIFO_ORDER_VISIBILITY))
    name = function("fail-marked", timeout=FIFO_ORDER_VISIBILITY, memory_mb=1769)
    # The groups are interleaved, so a batch usually holds messages of several; one of a
    # single group also comes back in order (`tests.support.moto_serve`).
    groups: dict[str, list[str]] = {group: [] for group in ("a", "b", "c", "d")}
    for number in range(10):
        for group, sent in groups.items():
            # The fourth of each fails its first delivery (the whole batch with it).
            body = f"{group}-{number:02d}" + ("-fail" if number == 3 else "")
            sent.append(
                source.send(body, MessageGroupId=group, MessageDeduplicationId=f"{group}{number}")[
                    "MessageId"
                ]
            )
    mapping(source.arn, name, BatchSize=4)
    wait_until(
        lambda: sink.succeeded() >= {id_ for sent in groups.values() for id_ in sent},
        timeout=60,
        message="not every message was processed",
    )
    wait_until(source.empty, timeout=10)
    # Replay the invocations in the order they started: per group, each one must carry the
    # group's next unprocessed messages, in order; a failed one is retried before any later
    # message of its group is read.
    done = dict.fromkeys(groups, 0)
    failures = 0
    for event, succeeded in sink.runs(name):
        for group, sent in groups.items():
            ids = [
                record["messageId"] for record in event["Records"] if record["messageId"] in sent
            ]
            if not ids:
                continue
            assert ids == sent[done[group] : done[group] + len(ids)], group
            if succeeded:
                done[group] += len(ids)
        failures += not succeeded
    assert done == dict.fromkeys(groups, 10)
    assert failures >= 1


# ------------------------------------------------------------------ filters


def test_filters_pick_messages_and_the_rest_are_deleted(
    lamina: LaminaServer,
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(), function()
    wanted, refund, text, broken = source.send_many(
        ['{"kind": "order", "n": 1}', '{"kind": "refund"}', "kind order", '{"kind": "order"'],
    )
    mapping(
        source.arn,
        name,
        FilterCriteria={"Filters": [{"Pattern": '{"body": {"kind": ["order"]}}'}]},
    )
    wait_until(source.empty, timeout=20, message="filtered-out messages were not deleted")
    records_of(sink, name, 1)
    assert [record["messageId"] for record in sink.records(name)] == [wanted]
    metrics = wait_until(
        lambda: (
            (found := overview(lamina, name)["Metrics"]).get(DELETED, {}).get("Sum") == 4 and found
        ),
        timeout=10,
    )
    assert metrics[FILTERED_OUT]["Sum"] == 3
    assert metrics[POLLED]["Sum"] == 4
    assert metrics[INVOKED]["Sum"] == 1
    assert {refund, text, broken}.isdisjoint(sink.succeeded())


def test_a_plain_text_pattern_matches_a_plain_body(
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(), function()
    hello, _json_hello = source.send_many(["hello", '{"body": "hello"}'])
    mapping(source.arn, name, FilterCriteria={"Filters": [{"Pattern": '{"body": ["hello"]}'}]})
    wait_until(source.empty, timeout=20)
    records_of(sink, name, 1)
    assert [record["messageId"] for record in sink.records(name)] == [hello]


# ------------------------------------------------------------------ changes


def test_disable_stops_delivery_and_enable_resumes(
    api: Any,
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(), function()
    uuid_ = mapping(source.arn, name)
    api.update_event_source_mapping(UUID=uuid_, Enabled=False)
    settle(api, uuid_, "Disabled")
    (held,) = source.send_many(["held"])
    # Disabled: the message stays in the queue, visible, and nothing is invoked.
    time.sleep(2.5)
    assert source.counts() == (1, 0)
    assert sink.invocations(name) == []
    api.update_event_source_mapping(UUID=uuid_, Enabled=True)
    settle(api, uuid_, "Enabled")
    (record,) = records_of(sink, name, 1)
    assert record["messageId"] == held
    wait_until(source.empty, timeout=10)


def test_an_update_takes_effect(
    api: Any,
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, first, second = queue(), function(), function()
    uuid_ = mapping(source.arn, first, BatchSize=1)
    source.send_many(["one", "two"])
    records_of(sink, first, 2)
    assert [len(event["Records"]) for event in sink.invocations(first)] == [1, 1]
    wait_until(source.empty, timeout=10)
    api.update_event_source_mapping(
        UUID=uuid_,
        FunctionName=second,
        BatchSize=5,
        MaximumBatchingWindowInSeconds=1,
        FilterCriteria={"Filters": [{"Pattern": '{"body": [{"prefix": "keep"}]}'}]},
    )
    settle(api, uuid_, "Enabled")
    kept = source.send_many(["keep-1", "drop", "keep-2", "keep-3"])
    records = records_of(sink, second, 3)
    wait_until(source.empty, timeout=10)
    assert sorted(record["messageId"] for record in records) == sorted([kept[0], kept[2], kept[3]])
    assert [len(event["Records"]) for event in sink.invocations(second)] == [3]
    assert len(sink.invocations(first)) == 2


def test_a_deleted_function_keeps_its_messages_until_it_is_back(
    lamina: LaminaServer,
    api: Any,
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(), function()
    mapping(source.arn, name)
    api.delete_function(FunctionName=name)
    (kept,) = source.send_many(["kept"])
    shown = wait_until(
        lambda: (
            (row := overview(lamina, name))["LastProcessingResult"]
            == "PROBLEM: Function not found."
            and row
        ),
        timeout=20,
    )
    assert shown["Poller"]["Errors"] >= 1
    assert shown["Poller"]["LastError"]
    assert sum(source.counts()) == 1
    function(name=name)
    (record,) = records_of(sink, name, 1)
    assert record["messageId"] == kept
    assert int(record["attributes"]["ApproximateReceiveCount"]) >= 2
    wait_until(source.empty, timeout=10)
    assert overview(lamina, name)["LastProcessingResult"] == "OK"


# ------------------------------------------------------------------ concurrency


def test_maximum_concurrency_caps_concurrent_invocations(
    queue: Callable[..., Queue],
    function: Callable[..., str],
    mapping: Callable[..., str],
    sink: Sink,
) -> None:
    source, name = queue(), function(sleep=0.3)
    ids = source.send_many([f"m{index}" for index in range(16)])
    before = len(sink.spans())
    mapping(source.arn, name, BatchSize=1, ScalingConfig={"MaximumConcurrency": 2})
    wait_until(lambda: sink.succeeded() >= set(ids), timeout=60)
    spans = sink.spans()[before:]
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    # Batches ran side by side, never more than two at once.
    assert peak == 2


# ------------------------------------------------------------------ crashes


def test_a_killed_server_loses_no_message(
    tmp_path: Path,
    moto: MotoServer,
    queue: Callable[..., Queue],
    function: Callable[..., str],
    sink: Sink,
    api: Any,
) -> None:
    source = queue(VisibilityTimeout="3")
    server = LaminaServer(tmp_path / "data", env=moto.env).start()
    try:
        client = server.client("lambda")
        name = fresh("fn")
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": HANDLER})},
            Timeout=3,
            Environment={"Variables": {"SINK": sink.url, "MODE": "ok", "SLEEP": "1.5"}},
        )
        ids = source.send_many([f"m{index}" for index in range(20)])
        client.create_event_source_mapping(
            EventSourceArn=source.arn, FunctionName=name, BatchSize=2
        )
        # Batches are in flight (the function sleeps): crash.
        wait_until(lambda: len(sink.invocations(name)) >= 2, timeout=30)
        server.kill()
        in_flight = {record["messageId"] for record in sink.records(name)} - sink.succeeded()
        assert in_flight
        server = LaminaServer(tmp_path / "data", env=moto.env).start()
        wait_until(
            lambda: sink.succeeded() >= set(ids),
            timeout=60,
            message=lambda: f"lost {set(ids) - sink.succeeded()}",
        )
        wait_until(source.empty, timeout=10)
        redelivered = {
            record["messageId"]
            for record in sink.records(name)
            if record["attributes"]["ApproximateReceiveCount"] != "1"
        }
        assert in_flight <= redelivered
    finally:
        server.stop()
