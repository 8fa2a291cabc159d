"""Scheduled EventBridge rules over HTTP: boto3's events client, the AWS CLI, `lamina schedule`.

The server runs schedules on a clock 50 times faster than the wall clock
(LAMINA_SCHEDULE_TIME_SCALE=0.02), so `rate(1 minute)` fires every 1.2 s; everything else is
the production path. Invocations are observed where a user would see them: the function's
OnSuccess destination, an SQS queue on a moto server, receives one record per invocation,
with the scheduled event as `requestPayload`.
"""

from __future__ import annotations

import calendar
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.aws_cli import run_aws
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.queues import Queue
from tests.support.server import LaminaServer, metrics
from tests.support.waiting import wait_until

ACCOUNT = "000000000000"
RULE_ARN = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:"
SCALE = 0.02
HANDLER = "def handler(event, context):\n    return event\n"
INVALID = "Parameter ScheduleExpression is not valid."


def schedule_env() -> dict[str, str]:
    return {
        "LAMINA_SCHEDULE_TIME_SCALE": str(SCALE),
        "LAMINA_SCHEDULE_TIME_ORIGIN": str(time.time()),
    }


@pytest.fixture(scope="module")
def server(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    data_dir = tmp_path_factory.mktemp("schedules") / "data"
    instance = LaminaServer(data_dir, env={**moto.env, **schedule_env()}).start()
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


@pytest.fixture
def function(lambda_: Any, sqs: Any, unique_name: Callable[[str], str]) -> Callable[..., Any]:
    """A function whose successful invocations are recorded on a fresh SQS queue."""

    def make(permission_for: str | None = None) -> tuple[str, Queue]:
        results = Queue(sqs)
        name = unique_name("sched")
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
        if permission_for is not None:
            lambda_.add_permission(
                FunctionName=name,
                StatementId="events",
                Action="lambda:InvokeFunction",
                Principal="events.amazonaws.com",
                SourceArn=RULE_ARN + permission_for,
            )
        return name, results

    return make


@pytest.fixture
def rule(events: Any, unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """Create rules that are removed (targets first) when the test ends, so none keeps firing."""
    created: list[str] = []

    def make(name: str | None = None, **params: Any) -> str:
        name = name or unique_name("rule")
        events.put_rule(Name=name, **params)
        created.append(name)
        return name

    yield make
    for name in created:
        try:
            targets = events.list_targets_by_rule(Rule=name)["Targets"]
            if targets:
                events.remove_targets(Rule=name, Ids=[target["Id"] for target in targets])
            events.delete_rule(Name=name)
        except ClientError:
            pass


def error(call: Callable[..., Any], **params: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    response = raised.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def scheduled_events(results: Queue, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The payloads of `count` successful invocations, in the order of their ticks."""
    records = [json.loads(message["Body"]) for message in results.receive(count, timeout)]
    assert len(records) == count, f"expected {count} invocations, saw {len(records)}"
    payloads = [record["requestPayload"] for record in records]
    return sorted(payloads, key=lambda payload: payload.get("time", ""))


def epoch(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


# --------------------------------------------------------------------------- the API


def test_put_describe_list_enable_disable_and_delete(events: Any, rule: Callable[..., str]) -> None:
    name = rule(
        ScheduleExpression="rate(5 minutes)",
        Description="every five minutes",
        Tags=[{"Key": "team", "Value": "data"}],
    )
    described = events.describe_rule(Name=name)
    described.pop("ResponseMetadata")
    assert described == {
        "Name": name,
        "Arn": RULE_ARN + name,
        "ScheduleExpression": "rate(5 minutes)",
        "State": "ENABLED",
        "Description": "every five minutes",
        "EventBusName": "default",
        "CreatedBy": ACCOUNT,
    }
    listed = events.list_rules(NamePrefix=name)["Rules"]
    assert [r["Name"] for r in listed] == [name]
    assert listed[0]["Arn"] == RULE_ARN + name
    tags = events.list_tags_for_resource(ResourceARN=RULE_ARN + name)["Tags"]
    assert tags == [{"Key": "team", "Value": "data"}]

    events.disable_rule(Name=name)
    assert events.describe_rule(Name=name)["State"] == "DISABLED"
    events.enable_rule(Name=name)
    assert events.describe_rule(Name=name)["State"] == "ENABLED"

    # PutRule replaces the rule: what is left out is gone (the tags stay).
    events.put_rule(Name=name, ScheduleExpression="cron(0 12 * * ? *)")
    replaced = events.describe_rule(Name=name)
    assert replaced["ScheduleExpression"] == "cron(0 12 * * ? *)"
    assert "Description" not in replaced
    assert events.list_tags_for_resource(ResourceARN=RULE_ARN + name)["Tags"] == tags

    events.delete_rule(Name=name)
    assert error(events.describe_rule, Name=name) == (
        400,
        "ResourceNotFoundException",
        f"Rule {name} does not exist on EventBus default.",
    )
    # As on AWS, deleting a rule that is not there succeeds.
    events.delete_rule(Name=name)


def test_list_rules_pages_in_name_order(
    events: Any, rule: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("page")
    names = [rule(f"{prefix}-{n}", ScheduleExpression="rate(1 day)") for n in (3, 1, 4, 0, 2)]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"NamePrefix": prefix, "Limit": 2}
        if token:
            params["NextToken"] = token
        page = events.list_rules(**params)
        seen.extend(r["Name"] for r in page["Rules"])
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert seen == sorted(names)
    assert pages == 3
    paginated = events.get_paginator("list_rules").paginate(NamePrefix=prefix)
    assert [r["Name"] for page in paginated for r in page["Rules"]] == sorted(names)


def test_targets_round_trip(events: Any, rule: Callable[..., str]) -> None:
    name = rule(ScheduleExpression="rate(1 day)")
    first = {
        "Id": "first",
        "Arn": FUNCTION_ARN + "some-function",
        "Input": '{"job": "nightly"}',
        "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
    }
    second = {"Id": "second", "Arn": FUNCTION_ARN + "some-function:live", "InputPath": "$.detail"}
    result = events.put_targets(Rule=name, Targets=[first, second])
    assert (result["FailedEntryCount"], result["FailedEntries"]) == (0, [])
    assert events.list_targets_by_rule(Rule=name)["Targets"] == [first, second]
    page = events.list_targets_by_rule(Rule=name, Limit=1)
    assert page["Targets"] == [first]
    rest = events.list_targets_by_rule(Rule=name, NextToken=page["NextToken"])
    assert rest["Targets"] == [second]
    assert "NextToken" not in rest
    by_target = events.list_rule_names_by_target(TargetArn=FUNCTION_ARN + "some-function")
    assert name in by_target["RuleNames"]

    # The same Id replaces its target.
    replacement = {"Id": "first", "Arn": FUNCTION_ARN + "other-function"}
    events.put_targets(Rule=name, Targets=[replacement])
    assert events.list_targets_by_rule(Rule=name)["Targets"] == [replacement, second]

    assert error(events.delete_rule, Name=name) == (
        400,
        "ValidationException",
        "Rule can't be deleted since it has targets.",
    )
    result = events.remove_targets(Rule=name, Ids=["first", "second", "never-there"])
    assert result["FailedEntryCount"] == 0
    assert events.list_targets_by_rule(Rule=name)["Targets"] == []
    events.delete_rule(Name=name)


def test_tags_on_rules(events: Any, rule: Callable[..., str]) -> None:
    name = rule(ScheduleExpression="rate(1 day)")
    arn = RULE_ARN + name
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == []
    events.tag_resource(
        ResourceARN=arn, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "1"}]
    )
    events.untag_resource(ResourceARN=arn, TagKeys=["b"])
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "a", "Value": "1"}]


def test_event_pattern_rules_are_kept(events: Any, rule: Callable[..., str]) -> None:
    pattern = json.dumps({"source": ["my.app"]})
    name = rule(EventPattern=pattern)
    described = events.describe_rule(Name=name)
    assert described["EventPattern"] == pattern
    assert "ScheduleExpression" not in described


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "rate(30 seconds)",
        "rate(1.5 hours)",
        "cron(0 10 * * *)",
        "cron(0 10 * * ? * *)",
        "cron(7 20 * * 1-7 *)",
        "cron(0 10 ? * ? *)",
        "cron(*/60 * * * ? *)",
        "cron(15 12 ? * -1 *)",
        "cron(0 24 * * ? *)",
        "cron(0 0 ? * 3#6 *)",
        "cron(0 0 ? * 3#1,6#3 *)",
        "cron(0 0 1W * ? 2200)",
        "cron(0 0 L,15 * ? *)",
        "at(2030-01-01T00:00:00)",
        "every five minutes",
    ],
)
def test_malformed_schedule_expressions_are_refused(
    events: Any, expression: str, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("bad")
    assert error(events.put_rule, Name=name, ScheduleExpression=expression) == (
        400,
        "ValidationException",
        INVALID,
    )
    assert error(events.describe_rule, Name=name)[1] == "ResourceNotFoundException"


def test_a_refused_expression_leaves_the_rule_as_it_was(
    events: Any, rule: Callable[..., str]
) -> None:
    name = rule(ScheduleExpression="rate(1 day)")
    assert error(events.put_rule, Name=name, ScheduleExpression="rate(1 days)")[2] == INVALID
    assert events.describe_rule(Name=name)["ScheduleExpression"] == "rate(1 day)"


def test_a_rule_needs_a_schedule_or_a_pattern(events: Any) -> None:
    assert error(events.put_rule, Name="nothing") == (
        400,
        "ValidationException",
        "Parameter(s) EventPattern or ScheduleExpression must be specified.",
    )


@pytest.mark.parametrize(
    ("params", "field", "constraint"),
    [
        ({"Name": "bad name!"}, "name", "Member must satisfy regular expression pattern"),
        ({"Name": "n" * 65}, "name", "Member must have length less than or equal to 64"),
        ({"State": "SOMETIMES"}, "state", "Member must satisfy enum value set"),
        (
            {"Description": "d" * 513},
            "description",
            "Member must have length less than or equal to 512",
        ),
        (
            {"ScheduleExpression": "r" * 257},
            "scheduleExpression",
            "Member must have length less than or equal to 256",
        ),
    ],
)
def test_shape_violations_are_validation_errors(
    events: Any, params: dict[str, Any], field: str, constraint: str
) -> None:
    request = {"Name": "shape-check", "ScheduleExpression": "rate(1 day)", **params}
    status, code, message = error(events.put_rule, **request)
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("1 validation error detected: Value '")
    assert f"at '{field}' failed to satisfy constraint: {constraint}" in message


def test_unknown_rules_are_not_found(events: Any) -> None:
    missing = "no-such-rule"
    expected = (
        400,
        "ResourceNotFoundException",
        f"Rule {missing} does not exist on EventBus default.",
    )
    target = {"Id": "t", "Arn": FUNCTION_ARN + "f"}
    assert error(events.describe_rule, Name=missing) == expected
    assert error(events.enable_rule, Name=missing) == expected
    assert error(events.disable_rule, Name=missing) == expected
    assert error(events.put_targets, Rule=missing, Targets=[target]) == expected
    assert error(events.remove_targets, Rule=missing, Ids=["t"]) == expected
    assert error(events.list_targets_by_rule, Rule=missing) == expected
    assert error(events.list_tags_for_resource, ResourceARN=RULE_ARN + missing) == expected
    assert error(events.tag_resource, ResourceARN=RULE_ARN + missing, Tags=[]) == expected


def test_an_unknown_event_bus_is_not_found(events: Any) -> None:
    assert error(
        events.put_rule, Name="r", ScheduleExpression="rate(1 day)", EventBusName="custom"
    ) == (400, "ResourceNotFoundException", "Event bus custom does not exist.")
    assert error(events.list_rules, EventBusName="custom")[1] == "ResourceNotFoundException"
    events.list_rules(EventBusName="default")
    events.list_rules(EventBusName=f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"Arn": "arn:aws:sqs:us-east-1:000000000000:queue"},
            "Lamina delivers rule events to Lambda functions only",
        ),
        (
            {"Arn": "arn:aws:lambda:us-east-1:111111111111:function:f"},
            "is not in this Lamina's account",
        ),
        ({"Input": "{not json"}, "Input for target t is not a valid JSON text."),
        (
            {"Input": "{}", "InputPath": "$.detail"},
            "Only one of Input, InputPath, or InputTransformer must be provided for target t.",
        ),
        ({"InputPath": "detail"}, "InputPath for target t is not a valid JsonPath."),
        (
            {"InputTransformer": {"InputTemplate": '"<x> <y>"', "InputPathsMap": {"x": "$.id"}}},
            "InputTemplate for target t contains invalid placeholder y.",
        ),
    ],
)
def test_bad_targets_are_refused(
    events: Any, rule: Callable[..., str], target: dict[str, Any], message: str
) -> None:
    name = rule(ScheduleExpression="rate(1 day)")
    status, code, text = error(
        events.put_targets, Rule=name, Targets=[{"Id": "t", "Arn": FUNCTION_ARN + "f", **target}]
    )
    assert (status, code) == (400, "ValidationException")
    assert message in text
    assert events.list_targets_by_rule(Rule=name)["Targets"] == []


def test_a_rule_has_at_most_five_targets(events: Any, rule: Callable[..., str]) -> None:
    name = rule(ScheduleExpression="rate(1 day)")
    targets = [{"Id": f"t{n}", "Arn": FUNCTION_ARN + "f"} for n in range(5)]
    events.put_targets(Rule=name, Targets=targets)
    status, code, _ = error(
        events.put_targets, Rule=name, Targets=[{"Id": "sixth", "Arn": FUNCTION_ARN + "f"}]
    )
    assert (status, code) == (400, "LimitExceededException")
    assert len(events.list_targets_by_rule(Rule=name)["Targets"]) == 5


def test_invalid_event_patterns_are_refused(events: Any) -> None:
    for pattern in ("{not json", "[1, 2]"):
        status, code, message = error(events.put_rule, Name="pattern", EventPattern=pattern)
        assert (status, code) == (400, "InvalidEventPatternException")
        assert message.startswith("Event pattern is not valid. Reason: ")


def test_a_bad_next_token_is_refused(events: Any) -> None:
    status, code, _ = error(events.list_rules, NextToken="not-a-token!")
    assert (status, code) == (400, "ValidationException")


# --------------------------------------------------------------------------- firing


def test_a_schedule_invokes_its_function_with_the_scheduled_event(
    events: Any,
    rule: Callable[..., str],
    function: Callable[..., Any],
    unique_name: Callable[[str], str],
) -> None:
    name = unique_name("every-minute")
    function_name, results = function(permission_for=name)
    rule(name, ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + function_name}])
    fired = scheduled_events(results, 3)
    for event in fired:
        assert set(event) == {
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
        }
        assert event["version"] == "0"
        assert event["detail-type"] == "Scheduled Event"
        assert event["source"] == "aws.events"
        assert event["account"] == ACCOUNT
        assert event["region"] == "us-east-1"
        assert event["resources"] == [RULE_ARN + name]
        assert event["detail"] == {}
        assert event["time"].endswith(":00Z")
    # One event per tick: distinct ids, distinct ticks, whole minutes apart.
    assert len({event["id"] for event in fired}) == 3
    ticks = [epoch(event["time"]) for event in fired]
    assert len(set(ticks)) == 3
    assert all((later - earlier) % 60 == 0 for earlier, later in itertools.pairwise(ticks))


def test_a_target_input_is_sent_verbatim(
    events: Any,
    rule: Callable[..., str],
    function: Callable[..., Any],
    unique_name: Callable[[str], str],
) -> None:
    name = unique_name("cron")
    function_name, results = function(permission_for=name)
    rule(name, ScheduleExpression="cron(* * ? * * *)")
    target = {"Id": "fn", "Arn": FUNCTION_ARN + function_name, "Input": '{"job": "nightly"}'}
    events.put_targets(Rule=name, Targets=[target])
    assert scheduled_events(results, 2) == [{"job": "nightly"}, {"job": "nightly"}]


def test_a_rules_metrics_stay_out_of_lambdas_series(
    server: LaminaServer,
    events: Any,
    rule: Callable[..., str],
    function: Callable[..., Any],
    unique_name: Callable[[str], str],
) -> None:
    name = unique_name("counted")
    function_name, results = function(permission_for=name)
    rule(name, ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + function_name}])
    scheduled_events(results, 1)
    wait_until(
        lambda: metrics(server).get("Invocations", {}).get(name, {}).get("Sum", 0) >= 1,
        timeout=30,
        interval=0.2,
        message="the rule's own Invocations were never counted",
    )
    cloudwatch = server.client("cloudwatch")

    def lambda_series(function: str) -> list[str]:
        listed = cloudwatch.list_metrics(
            Namespace="AWS/Lambda", Dimensions=[{"Name": "FunctionName", "Value": function}]
        )
        return sorted({metric["MetricName"] for metric in listed["Metrics"]})

    # The function's invocation is Lambda's; the rule's Invocations are EventBridge's alone.
    wait_until(
        lambda: "Invocations" in lambda_series(function_name),
        timeout=30,
        interval=0.5,
        message="the function's invocation never reached AWS/Lambda",
    )
    assert lambda_series(name) == []
    cloudwatch.close()


def test_without_an_invoke_permission_nothing_runs(
    server: LaminaServer,
    events: Any,
    rule: Callable[..., str],
    function: Callable[..., Any],
    unique_name: Callable[[str], str],
) -> None:
    function_name, results = function(permission_for=None)
    name = rule(ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": FUNCTION_ARN + function_name}])
    wait_until(
        lambda: metrics(server).get("FailedInvocations", {}).get(name, {}).get("Sum", 0) >= 2,
        timeout=60,
        interval=0.2,
        message="the rule did not fail to invoke twice",
    )
    assert metrics(server)["TriggeredRules"][name]["Sum"] >= 2
    # Each failed tick was decided when it fired: nothing was queued to run later.
    assert results.is_quiet()
    assert "does not allow events.amazonaws.com to invoke it" in server.log_path.read_text()


# --------------------------------------------------------------------------- the AWS CLI


@pytest.fixture
def aws(server: LaminaServer, tmp_path: Path) -> Callable[..., Any]:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_aws(server.endpoint, tmp_path, "events", *args)

    return run


def test_the_aws_cli(aws: Callable[..., Any], unique_name: Callable[[str], str]) -> None:
    name = unique_name("cli")
    created = aws("put-rule", "--name", name, "--schedule-expression", "rate(5 minutes)")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout) == {"RuleArn": RULE_ARN + name}
    described = json.loads(aws("describe-rule", "--name", name).stdout)
    assert described["ScheduleExpression"] == "rate(5 minutes)"
    target = f"Id=1,Arn={FUNCTION_ARN}f"
    assert aws("put-targets", "--rule", name, "--targets", target).returncode == 0
    listed = json.loads(aws("list-targets-by-rule", "--rule", name).stdout)
    assert listed["Targets"] == [{"Id": "1", "Arn": FUNCTION_ARN + "f"}]
    refused = aws("delete-rule", "--name", name)
    assert refused.returncode != 0
    assert "Rule can't be deleted since it has targets." in refused.stderr
    assert aws("remove-targets", "--rule", name, "--ids", "1").returncode == 0
    assert aws("delete-rule", "--name", name).returncode == 0

    bad = aws("put-rule", "--name", name, "--schedule-expression", "rate(5 minute)")
    assert bad.returncode != 0
    assert "(ValidationException)" in bad.stderr
    assert INVALID in bad.stderr


# --------------------------------------------------------------------------- lamina schedule


def lamina(server: LaminaServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina", *args, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_lamina_schedule(
    server: LaminaServer,
    events: Any,
    lambda_: Any,
    function: Callable[..., Any],
    unique_name: Callable[[str], str],
) -> None:
    function_name, results = function(permission_for=None)
    name = unique_name("cli-rule")
    scheduled = lamina(
        server, "schedule", function_name, "rate(1 minute)", "--name", name, "--input", '{"n": 1}'
    )
    assert scheduled.returncode == 0, scheduled.stderr
    assert scheduled.stdout.strip() == RULE_ARN + name
    try:
        # It granted events.amazonaws.com the permission AWS requires, for this rule only.
        policy = json.loads(lambda_.get_policy(FunctionName=function_name)["Policy"])
        (statement,) = policy["Statement"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Condition"] == {"ArnLike": {"AWS:SourceArn": RULE_ARN + name}}
        assert scheduled_events(results, 2) == [{"n": 1}, {"n": 1}]

        listing = lamina(server, "schedules")
        assert listing.returncode == 0, listing.stderr
        line = next(row for row in listing.stdout.splitlines() if row.startswith(name))
        assert "rate(1 minute)" in line and function_name in line
    finally:
        removed = lamina(server, "unschedule", name)
    assert removed.returncode == 0, removed.stderr
    assert error(events.describe_rule, Name=name)[1] == "ResourceNotFoundException"
    assert error(lambda_.get_policy, FunctionName=function_name)[1] == "ResourceNotFoundException"


def test_lamina_schedule_refuses_bad_input(
    server: LaminaServer, function: Callable[..., Any]
) -> None:
    function_name, _ = function()
    bad = lamina(server, "schedule", function_name, "rate(1 minutes)")
    assert bad.returncode == 1
    assert f"ValidationException: {INVALID}" in bad.stderr
    missing = lamina(server, "schedule", "no-such-function", "rate(1 minute)")
    assert missing.returncode == 1
    assert "ResourceNotFoundException" in missing.stderr
