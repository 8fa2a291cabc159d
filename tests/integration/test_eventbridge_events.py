"""EventBridge events over HTTP with boto3: PutEvents on the default bus and on custom buses,
rules with event patterns invoking their Lambda targets, and the event-bus operations.

Invocations are observed where a user would see them: each function's OnSuccess destination,
an SQS queue on a moto server, receives one record per invocation, with what the function
got as `requestPayload`. AWS's texts are asserted word for word where they are recorded
(public recordings of AWS, 2024); where Lamina has its own wording, only the code is.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.asynchronous import FAST, events_shown
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.queues import Queue
from tests.support.server import LaminaServer, metrics, server_log

ACCOUNT = "000000000000"
PREFIX = f"arn:aws:events:us-east-1:{ACCOUNT}:"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:"
HANDLER = (
    "import time\n"
    "def handler(event, context):\n"
    "    if isinstance(event, dict) and 'sleep' in event.get('detail', {}):\n"
    "        time.sleep(event['detail']['sleep'])\n"
    "    return event\n"
)
EVENT_KEYS = ["version", "id", "detail-type", "source", "account", "time", "region"]
EVENT_KEYS += ["resources", "detail"]


@pytest.fixture(scope="module")
def server(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    data_dir = tmp_path_factory.mktemp("eventbridge") / "data"
    instance = LaminaServer(data_dir, env=moto.env).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def events(server: LaminaServer) -> Iterator[Any]:
    client = server.client("events")
    yield client
    client.close()


@pytest.fixture(scope="module")
def lambda_(server: LaminaServer) -> Iterator[Any]:
    client = server.client("lambda")
    yield client
    client.close()


def make_function(lambda_: Any, sqs: Any, name: str, *rule_arns: str) -> Queue:
    """A function whose successful invocations land on a fresh SQS queue, invocable by
    events.amazonaws.com for each of `rule_arns`."""
    results = Queue(sqs)
    lambda_.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )
    lambda_.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": results.arn}}
    )
    for n, arn in enumerate(rule_arns):
        lambda_.add_permission(
            FunctionName=name,
            StatementId=f"events-{n}",
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            SourceArn=arn,
        )
    return results


@pytest.fixture
def function(
    lambda_: Any, sqs: Any, unique_name: Callable[[str], str]
) -> Callable[..., tuple[str, Queue]]:
    def make(*rule_arns: str) -> tuple[str, Queue]:
        name = unique_name("eb")
        return name, make_function(lambda_, sqs, name, *rule_arns)

    return make


@pytest.fixture
def rule(
    events: Any, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., tuple[str, str]]]:
    """Create pattern rules (name, ARN), removed with their targets when the test ends."""
    created: list[tuple[str, str]] = []

    def make(pattern: dict[str, Any], bus: str = "default", name: str | None = None) -> Any:
        name = name or unique_name("rule")
        arn = events.put_rule(Name=name, EventPattern=json.dumps(pattern), EventBusName=bus)
        created.append((name, bus))
        return name, arn["RuleArn"]

    yield make
    for name, bus in created:
        try:
            targets = events.list_targets_by_rule(Rule=name, EventBusName=bus)["Targets"]
            if targets:
                events.remove_targets(
                    Rule=name, EventBusName=bus, Ids=[target["Id"] for target in targets]
                )
            events.delete_rule(Name=name, EventBusName=bus)
        except ClientError:
            pass


@pytest.fixture
def event_bus(events: Any, unique_name: Callable[[str], str]) -> Iterator[Callable[[], str]]:
    """Create custom buses, deleted when the test ends (after the `rule` fixture's rules)."""
    created: list[str] = []

    def make() -> str:
        name = unique_name("bus")
        events.create_event_bus(Name=name)
        created.append(name)
        return name

    yield make
    for name in created:
        with contextlib.suppress(ClientError):
            events.delete_event_bus(Name=name)


def error(call: Callable[..., Any], **params: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    response = raised.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def entry(source: str, **overrides: Any) -> dict[str, Any]:
    return {
        "Source": source,
        "DetailType": "order placed",
        "Detail": json.dumps({"order": 7, "items": ["a", "b"]}),
        **overrides,
    }


def received(results: Queue, count: int, timeout: float = 60.0) -> list[Any]:
    """What `count` invocations were given, in the order their records arrived."""
    return [record["requestPayload"] for record in results.records(count, timeout)]


def event_ids(response: dict[str, Any]) -> list[str]:
    assert response["FailedEntryCount"] == 0, response
    return [answer["EventId"] for answer in response["Entries"]]


# --------------------------------------------------------------------------- delivery


def test_a_matching_event_reaches_the_function_as_eventbridge_delivers_it(
    events: Any, rule: Callable[..., Any], function: Callable[..., Any]
) -> None:
    source = f"shop.{uuid.uuid4().hex[:8]}"
    name, arn = rule({"source": [source], "detail": {"order": [{"numeric": [">", 5]}]}})
    fn, results = function(arn)
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + fn}])

    moment = datetime(2024, 6, 11, 8, 33, 10, tzinfo=UTC)
    response = events.put_events(
        Entries=[
            entry(source, Time=moment, Resources=["arn:aws:s3:::bucket"]),
            entry(source, Detail=json.dumps({"order": 3})),  # does not match: order <= 5
            entry("someone.else"),  # does not match: another source
        ]
    )
    ids = event_ids(response)
    (event,) = received(results, 1)
    assert list(event) == EVENT_KEYS
    assert event == {
        "version": "0",
        "id": ids[0],
        "detail-type": "order placed",
        "source": source,
        "account": ACCOUNT,
        "time": "2024-06-11T08:33:10Z",
        "region": "us-east-1",
        "resources": ["arn:aws:s3:::bucket"],
        "detail": {"order": 7, "items": ["a", "b"]},
    }
    assert results.is_quiet()

    # Without a Time, the event is stamped when it is put.
    before = datetime.now(UTC).replace(microsecond=0)
    (event_id,) = event_ids(events.put_events(Entries=[entry(source)]))
    (event,) = received(results, 1)
    assert event["id"] == event_id and event["resources"] == []
    stamped = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamped <= datetime.now(UTC)


def test_a_disabled_rule_gets_nothing_until_enabled(
    events: Any, rule: Callable[..., Any], function: Callable[..., Any]
) -> None:
    source = f"shop.{uuid.uuid4().hex[:8]}"
    name, arn = rule({"source": [source]})
    fn, results = function(arn)
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + fn}])
    events.disable_rule(Name=name)
    event_ids(events.put_events(Entries=[entry(source)]))
    assert results.is_quiet()
    events.enable_rule(Name=name)
    (second,) = event_ids(events.put_events(Entries=[entry(source)]))
    assert [event["id"] for event in received(results, 1)] == [second]


def test_targets_get_input_input_path_and_input_transformer(
    events: Any, rule: Callable[..., Any], function: Callable[..., Any]
) -> None:
    source = f"shop.{uuid.uuid4().hex[:8]}"
    name, arn = rule({"source": [source]})
    fn, results = function(arn)
    target = FUNCTION_ARN + fn
    events.put_targets(
        Rule=name,
        Targets=[
            {"Id": "constant", "Arn": target, "Input": '{"fixed": "input"}'},
            {"Id": "path", "Arn": target, "InputPath": "$.detail.items"},
            {
                "Id": "json",
                "Arn": target,
                "InputTransformer": {
                    "InputPathsMap": {
                        "order": "$.detail.order",
                        "kind": "$.detail-type",
                        "nothing": "$.detail.absent",
                    },
                    "InputTemplate": (
                        '{"order": <order>, "kind": <kind>, "says": "<kind> #<order>", '
                        '"missing": <nothing>, "rule": "<aws.events.rule-name>", '
                        '"whole": <aws.events.event.json>}'
                    ),
                },
            },
            {
                "Id": "text",
                "Arn": target,
                "InputTransformer": {
                    "InputPathsMap": {"kind": "$.detail-type"},
                    "InputTemplate": '"a <kind> event for <aws.events.rule-arn>"',
                },
            },
        ],
    )
    (event_id,) = event_ids(events.put_events(Entries=[entry(source)]))
    payloads = received(results, 4)
    shaped = next(p for p in payloads if isinstance(p, dict) and "whole" in p)
    assert shaped["whole"]["id"] == event_id
    shaped.pop("whole")
    others = [p for p in payloads if not (isinstance(p, dict) and "order" in p)]
    assert sorted(map(json.dumps, others)) == sorted(
        map(json.dumps, [{"fixed": "input"}, ["a", "b"], f"a order placed event for {arn}"])
    )
    assert shaped == {
        "order": 7,
        "kind": "order placed",
        "says": "order placed #7",
        "missing": "",
        "rule": name,
    }


def test_custom_buses_route_their_own_events(
    events: Any,
    rule: Callable[..., Any],
    event_bus: Callable[[], str],
    function: Callable[..., Any],
    unique_name: Callable[[str], str],
) -> None:
    bus = event_bus()
    source = f"shop.{uuid.uuid4().hex[:8]}"
    same = unique_name("same")
    # One rule name on two buses: two rules, with ARNs of their own.
    _default_name, default_arn = rule({"source": [source]}, name=same)
    _custom_name, custom_arn = rule({"source": [source]}, bus=bus, name=same)
    assert default_arn == f"{PREFIX}rule/{same}"
    assert custom_arn == f"{PREFIX}rule/{bus}/{same}"
    on_default, default_results = function(default_arn)
    on_custom, custom_results = function(custom_arn)
    events.put_targets(Rule=same, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + on_default}])
    events.put_targets(
        Rule=same, EventBusName=bus, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + on_custom}]
    )
    listed = events.list_rules(EventBusName=bus)["Rules"]
    assert [(r["Name"], r["Arn"], r["EventBusName"]) for r in listed] == [(same, custom_arn, bus)]

    ids = event_ids(
        events.put_events(
            Entries=[
                entry(source),
                entry(source, EventBusName=bus),
                entry(source, EventBusName=f"{PREFIX}event-bus/{bus}"),
                entry(source, EventBusName=f"{PREFIX}event-bus/default"),
            ]
        )
    )
    assert sorted(e["id"] for e in received(default_results, 2)) == sorted([ids[0], ids[3]])
    assert sorted(e["id"] for e in received(custom_results, 2)) == sorted(ids[1:3])
    assert default_results.is_quiet() and custom_results.is_quiet()


def test_an_event_for_a_bus_that_does_not_exist_is_accepted_and_dropped(
    server: LaminaServer, events: Any, rule: Callable[..., Any], function: Callable[..., Any]
) -> None:
    source = f"shop.{uuid.uuid4().hex[:8]}"
    name, arn = rule({"source": [source]})
    fn, results = function(arn)
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + fn}])
    missing = f"no-such-bus-{uuid.uuid4().hex[:8]}"
    # As recorded on AWS: every entry gets an EventId; only the default bus's event arrives.
    ids = event_ids(events.put_events(Entries=[entry(source), entry(source, EventBusName=missing)]))
    assert [event["id"] for event in received(results, 1)] == [ids[0]]
    assert results.is_quiet()
    assert f"event bus {missing} does not exist" in server_log(server)


def test_a_target_without_permission_gets_nothing_and_puts_still_succeed(
    server: LaminaServer, events: Any, rule: Callable[..., Any], function: Callable[..., Any]
) -> None:
    source = f"shop.{uuid.uuid4().hex[:8]}"
    name, _arn = rule({"source": [source]})
    _other_name, other_arn = rule({"source": [source]})
    # A permission for another rule does not let this one in.
    fn, results = function(other_arn)
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + fn}])
    response = events.put_events(Entries=[entry(source), entry(source)])
    assert response["FailedEntryCount"] == 0
    assert all(set(answer) == {"EventId"} for answer in response["Entries"])
    assert results.is_quiet()
    counts = metrics(server)
    assert counts["FailedInvocations"][name]["Sum"] == 2
    assert counts["MatchedEvents"][name]["Sum"] == 2
    assert "does not allow events.amazonaws.com to invoke it" in server_log(server)


# --------------------------------------------------------------------------- PutEvents errors


def test_failed_entries_are_answered_one_by_one(events: Any) -> None:
    response = events.put_events(
        Entries=[
            entry("ok"),
            {"DetailType": "t", "Detail": "{}"},
            {"Source": "s", "Detail": "{}"},
            {"Source": "s", "DetailType": "t"},
            entry("s", Detail='"a string"'),
            entry("s", Detail="[1, 2]"),
            entry("s", Detail="{not json"),
            entry("ok"),
        ]
    )
    missing = "Parameter {0} is not valid. Reason: {0} is a required argument."
    malformed = {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    assert response["FailedEntryCount"] == 6
    answers = response["Entries"]
    assert answers[1:7] == [
        {"ErrorCode": "InvalidArgument", "ErrorMessage": missing.format("Source")},
        {"ErrorCode": "InvalidArgument", "ErrorMessage": missing.format("DetailType")},
        {"ErrorCode": "InvalidArgument", "ErrorMessage": missing.format("Detail")},
        malformed,
        malformed,
        malformed,
    ]
    assert set(answers[0]) == {"EventId"} and set(answers[7]) == {"EventId"}


def test_too_many_or_too_large_entries_fail_the_request(events: Any) -> None:
    status, code, message = error(events.put_events, Entries=[entry("s")] * 11)
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("1 validation error detected: Value '")
    assert message.endswith(
        "at 'entries' failed to satisfy constraint: Member must have length less than or "
        "equal to 10"
    )
    huge = json.dumps({"blob": "x" * (1024 * 1024)})
    assert error(events.put_events, Entries=[entry("s", Detail=huge)]) == (
        400,
        "ValidationException",
        "Total size of the entries in the request is over the limit.",
    )


# --------------------------------------------------------------------------- event buses


def test_event_bus_create_describe_list_and_delete(
    events: Any, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("bus")
    created = events.create_event_bus(
        Name=name, Description="orders", Tags=[{"Key": "team", "Value": "shop"}]
    )
    assert created["EventBusArn"] == f"{PREFIX}event-bus/{name}"
    assert created["Description"] == "orders"
    described = events.describe_event_bus(Name=name)
    assert (described["Name"], described["Arn"], described["Description"]) == (
        name,
        f"{PREFIX}event-bus/{name}",
        "orders",
    )
    assert isinstance(described["CreationTime"], datetime)
    assert described["LastModifiedTime"] >= described["CreationTime"]
    assert events.describe_event_bus(Name=f"{PREFIX}event-bus/{name}")["Name"] == name
    tags = events.list_tags_for_resource(ResourceARN=f"{PREFIX}event-bus/{name}")["Tags"]
    assert tags == [{"Key": "team", "Value": "shop"}]

    default = events.describe_event_bus()
    assert (default["Name"], default["Arn"]) == ("default", f"{PREFIX}event-bus/default")
    names = [bus["Name"] for bus in events.list_event_buses()["EventBuses"]]
    assert "default" in names and name in names
    assert [bus["Name"] for bus in events.list_event_buses(NamePrefix=name)["EventBuses"]] == [name]

    events.delete_event_bus(Name=name)
    assert events.list_event_buses(NamePrefix=name)["EventBuses"] == []
    assert error(events.describe_event_bus, Name=name) == (
        400,
        "ResourceNotFoundException",
        f"Event bus {name} does not exist.",
    )
    # As on AWS, deleting a bus that is not there succeeds.
    events.delete_event_bus(Name=name)


def test_event_buses_page(events: Any, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("page")
    names = [f"{prefix}-{n}" for n in (3, 1, 0, 2)]
    for name in names:
        events.create_event_bus(Name=name)
    try:
        first = events.list_event_buses(NamePrefix=prefix, Limit=3)
        rest = events.list_event_buses(NamePrefix=prefix, NextToken=first["NextToken"])
        assert [b["Name"] for b in first["EventBuses"] + rest["EventBuses"]] == sorted(names)
        assert "NextToken" not in rest
    finally:
        for name in names:
            events.delete_event_bus(Name=name)


def test_event_bus_errors(
    events: Any, rule: Callable[..., Any], event_bus: Callable[[], str]
) -> None:
    bus = event_bus()
    assert error(events.create_event_bus, Name=bus) == (
        400,
        "ResourceAlreadyExistsException",
        f"Event bus {bus} already exists.",
    )
    assert error(events.create_event_bus, Name="default") == (
        400,
        "ResourceAlreadyExistsException",
        "Event bus default already exists.",
    )
    assert error(events.create_event_bus, Name="team/bus") == (
        400,
        "ValidationException",
        "Event bus name must not contain '/'.",
    )
    assert error(events.delete_event_bus, Name="default") == (
        400,
        "ValidationException",
        "Cannot delete event bus default.",
    )
    name, _ = rule({"source": ["x"]}, bus=bus)
    assert error(events.delete_event_bus, Name=bus) == (
        400,
        "ValidationException",
        "EventBus can't be deleted since it has rules.",
    )
    assert error(events.put_rule, Name="r", ScheduleExpression="rate(1 day)", EventBusName=bus) == (
        400,
        "ValidationException",
        "ScheduleExpression is supported only on the default event bus.",
    )
    assert error(events.describe_rule, Name="absent", EventBusName=bus) == (
        400,
        "ResourceNotFoundException",
        f"Rule absent does not exist on EventBus {bus}.",
    )
    # The rule lives on its bus only.
    assert error(events.describe_rule, Name=name)[2] == (
        f"Rule {name} does not exist on EventBus default."
    )
    events.delete_rule(Name=name, EventBusName=bus)
    events.delete_event_bus(Name=bus)


# --------------------------------------------------------------------------- durability


@pytest.mark.slow
def test_no_accepted_event_is_lost_when_the_server_is_killed(
    moto: MotoServer, sqs: Any, tmp_path: Path
) -> None:
    """kill -9 right after PutEvents answers: every event with an EventId still reaches the
    function after the restart (at least once: the test counts distinct event ids)."""
    data_dir = tmp_path / "data"
    env = {**moto.env, **FAST, "LAMINA_ASYNC_WORKERS": "2"}
    server = LaminaServer(data_dir, env=env).start()
    name = f"durable-{uuid.uuid4().hex[:8]}"
    try:
        events, lambda_ = server.client("events"), server.client("lambda")
        arn = events.put_rule(Name=name, EventPattern='{"source": ["durable"]}')["RuleArn"]
        results = make_function(lambda_, sqs, name, arn)
        events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + name}])
        accepted: list[str] = []
        for _ in range(3):
            batch = [entry("durable", Detail=json.dumps({"sleep": 0.2, "n": n})) for n in range(10)]
            accepted += event_ids(events.put_events(Entries=batch))
    finally:
        server.kill()
    assert len(accepted) == 30
    # The kill left invocations behind (the function takes 0.2 s, two at a time), in the queue.
    pending = events_shown(data_dir, name)["Functions"][name]
    assert sum(pending.values()) > 0, pending

    restarted = LaminaServer(data_dir, env=env).start()
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 90
        while not set(accepted) <= seen and time.monotonic() < deadline:
            seen |= {
                json.loads(message["Body"])["requestPayload"]["id"]
                for message in results.receive(10, timeout=1)
            }
        assert set(accepted) <= seen, f"lost {len(set(accepted) - seen)} of 30 events"
    finally:
        restarted.stop()
