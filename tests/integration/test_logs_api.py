"""The CloudWatch Logs API over HTTP with boto3's `logs` client: function logs, groups,
streams, PutLogEvents' rules, paging tokens, searches and retention."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import invoke
from tests.support.server import LaminaServer

HANDLERS = """
import json, logging

def chatty(event, context):
    print("hello from", event.get("n"))
    logging.getLogger().error("something failed for %s", event.get("n"))
    return {"stream": context.log_stream_name, "group": context.log_group_name}

def structured(event, context):
    logging.getLogger("app").debug("debug detail")
    logging.getLogger("app").info("info detail", extra={"orderId": 42})
    logging.getLogger("app").warning("warn detail")
    print(json.dumps({"level": "DEBUG", "message": "printed debug"}))
    print("plain print")
    if event.get("fail"):
        raise ValueError("structured failure")
    return "ok"
"""
STREAM_NAME = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$")
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def logs(server: LaminaServer) -> Iterator[Any]:
    client = server.client("logs")
    yield client
    client.close()


@pytest.fixture
def function(create_function: Callable[..., Any]) -> Callable[..., str]:
    def make(handler: str = "chatty", **overrides: Any) -> str:
        created = create_function(
            Handler=f"app.{handler}", Code={"ZipFile": make_zip({"app.py": HANDLERS})}, **overrides
        )
        return str(created["FunctionName"])

    return make


def kind(message: str) -> str:
    """A line's first word: START, END, REPORT, [ERROR]..."""
    return re.split(r"[ \t]", message, maxsplit=1)[0]


def now_ms() -> int:
    return int(time.time() * 1000)


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


# ------------------------------------------------------------------ function logs


def test_each_environment_writes_one_stream_with_platform_lines(
    lambda_client: Any, logs: Any, function: Callable[..., str]
) -> None:
    name = function()
    first = invoke(lambda_client, name, {"n": 1})
    invoke(lambda_client, name, {"n": 2})
    group = f"/aws/lambda/{name}"
    assert first["group"] == group
    (described,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert described["logGroupName"] == group and described["storedBytes"] > 0
    assert described["arn"].endswith(f":log-group:{group}:*")
    (stream,) = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert stream["logStreamName"] == first["stream"]
    assert STREAM_NAME.match(stream["logStreamName"])
    messages = [
        event["message"]
        for event in logs.get_log_events(
            logGroupName=group, logStreamName=first["stream"], startFromHead=True
        )["events"]
    ]
    kinds = [kind(message) for message in messages]
    assert kinds == [
        "INIT_START",
        "START",
        "hello",
        "[ERROR]",
        "END",
        "REPORT",
        "START",
        "hello",
        "[ERROR]",
        "END",
        "REPORT",
    ]
    assert "Init Duration" in messages[5] and "Init Duration" not in messages[10]
    assert re.match(r"^\[ERROR\]\t\S+Z\t[0-9a-f-]{36}\tsomething failed for 1$", messages[3])


def test_logging_config_log_group_is_used(
    lambda_client: Any, logs: Any, function: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    group = f"/custom/{unique_name('group')}"
    name = function(LoggingConfig={"LogFormat": "Text", "LogGroup": group})
    assert invoke(lambda_client, name, {"n": 1})["group"] == group
    events = logs.filter_log_events(logGroupName=group, filterPattern="hello")["events"]
    assert [event["message"] for event in events] == ["hello from 1"]


def test_get_log_events_tokens(lambda_client: Any, logs: Any, function: Callable[..., str]) -> None:
    name = function()
    stream = invoke(lambda_client, name, {"n": 1})["stream"]
    for n in range(2, 5):
        invoke(lambda_client, name, {"n": n})
    group = f"/aws/lambda/{name}"
    page = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=3)
    # Without a token or startFromHead the newest events come back, oldest first.
    assert [kind(e["message"]) for e in page["events"]] == ["[ERROR]", "END", "REPORT"]
    assert re.match(r"^f/\d{56}$", page["nextForwardToken"])
    assert re.match(r"^b/\d{56}$", page["nextBackwardToken"])
    # At the end of the stream the forward token comes back unchanged.
    end = logs.get_log_events(
        logGroupName=group, logStreamName=stream, nextToken=page["nextForwardToken"],
        startFromHead=True,
    )  # fmt: skip
    assert end["events"] == [] and end["nextForwardToken"] == page["nextForwardToken"]
    invoke(lambda_client, name, {"n": 5})
    more = logs.get_log_events(
        logGroupName=group, logStreamName=stream, nextToken=page["nextForwardToken"],
        startFromHead=True,
    )  # fmt: skip
    assert [e["message"] for e in more["events"]][1] == "hello from 5"
    # Backward tokens walk to the beginning.
    seen, token = [], page["nextBackwardToken"]
    while True:
        back = logs.get_log_events(
            logGroupName=group, logStreamName=stream, nextToken=token, limit=4
        )
        if not back["events"]:
            assert back["nextBackwardToken"] == token
            break
        seen = [e["message"] for e in back["events"]] + seen
        token = back["nextBackwardToken"]
    assert seen[0].startswith("INIT_START") and len(seen) == 4 * 5 + 1 - 3
    code, message = error_of(
        lambda: logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken="f/1")
    )
    assert (code, message) == ("InvalidParameterException", "The specified nextToken is invalid.")


# -------------------------------------------------------------- groups and streams


def test_group_lifecycle_and_errors(logs: Any, unique_name: Callable[[str], str]) -> None:
    group = f"/test/{unique_name('group')}"
    logs.create_log_group(logGroupName=group)
    assert error_of(lambda: logs.create_log_group(logGroupName=group)) == (
        "ResourceAlreadyExistsException",
        "The specified log group already exists",
    )
    logs.create_log_stream(logGroupName=group, logStreamName="one")
    assert error_of(lambda: logs.create_log_stream(logGroupName=group, logStreamName="one"))[0] == (
        "ResourceAlreadyExistsException"
    )
    logs.delete_log_group(logGroupName=group)
    missing = ("ResourceNotFoundException", "The specified log group does not exist.")
    assert error_of(lambda: logs.delete_log_group(logGroupName=group)) == missing
    assert error_of(lambda: logs.describe_log_streams(logGroupName=group)) == missing
    assert error_of(lambda: logs.filter_log_events(logGroupName=group)) == missing
    assert (
        error_of(
            lambda: logs.put_log_events(
                logGroupName=group,
                logStreamName="one",
                logEvents=[{"timestamp": 1, "message": "x"}],
            )
        )
        == missing
    )
    assert error_of(lambda: logs.put_retention_policy(logGroupName=group, retentionInDays=1)) == (
        missing
    )


def test_describe_log_groups_prefix_pattern_and_pages(
    logs: Any, unique_name: Callable[[str], str]
) -> None:
    base = f"/paging/{unique_name('set')}"
    for n in range(5):
        logs.create_log_group(logGroupName=f"{base}/Group-{n}")
    pages = logs.get_paginator("describe_log_groups").paginate(
        logGroupNamePrefix=base, PaginationConfig={"PageSize": 2}
    )
    names = [group["logGroupName"] for page in pages for group in page["logGroups"]]
    assert names == [f"{base}/Group-{n}" for n in range(5)]
    pattern = base.rsplit("-", 1)[1] + "/group-3"  # case-insensitive substring
    found = logs.describe_log_groups(logGroupNamePattern=pattern)["logGroups"]
    assert [group["logGroupName"] for group in found] == [f"{base}/Group-3"]
    code, _ = error_of(
        lambda: logs.describe_log_groups(logGroupNamePrefix=base, logGroupNamePattern="x")
    )
    assert code == "InvalidParameterException"
    code, message = error_of(lambda: logs.describe_log_groups(limit=51))
    assert code == "InvalidParameterException"
    assert "Member must have value less than or equal to 50" in message


# ------------------------------------------------------------------- PutLogEvents


@pytest.fixture
def stream(logs: Any, unique_name: Callable[[str], str]) -> tuple[str, str]:
    group = f"/put/{unique_name('group')}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    return group, "s"


def test_put_and_read_back(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    start = now_ms()
    response = logs.put_log_events(
        logGroupName=group,
        logStreamName=name,
        logEvents=[{"timestamp": start + i, "message": f"event {i}"} for i in range(3)],
    )
    assert "rejectedLogEventsInfo" not in response and response["nextSequenceToken"]
    events = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)
    assert [(e["timestamp"], e["message"]) for e in events["events"]] == [
        (start + i, f"event {i}") for i in range(3)
    ]
    assert all(e["ingestionTime"] >= start for e in events["events"])
    missing_stream = error_of(
        lambda: logs.put_log_events(
            logGroupName=group,
            logStreamName="nope",
            logEvents=[{"timestamp": start, "message": "x"}],
        )
    )
    assert missing_stream == (
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
    )


def test_put_refuses_bad_batches(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    start = now_ms()

    def put(events: list[dict[str, Any]]) -> tuple[str, str]:
        return error_of(
            lambda: logs.put_log_events(logGroupName=group, logStreamName=name, logEvents=events)
        )

    # 1,048,576 bytes counts each message's UTF-8 bytes plus 26 per event.
    big = [{"timestamp": start, "message": "x" * (1_048_576 // 2 - 26)}] * 2
    assert logs.put_log_events(logGroupName=group, logStreamName=name, logEvents=big)
    big[1] = {"timestamp": start, "message": "x" * (1_048_576 // 2 - 25)}
    assert put(big) == (
        "InvalidParameterException",
        "Upload too large: 1048577 bytes exceeds limit of 1048576",
    )
    code, message = put([{"timestamp": start, "message": "m"}] * 10_001)
    assert code == "InvalidParameterException"
    assert "Member must have length less than or equal to 10000" in message
    assert put(
        [{"timestamp": start, "message": "b"}, {"timestamp": start - 1, "message": "a"}]
    ) == (
        "InvalidParameterException",
        "Log events in a single PutLogEvents request must be in chronological order.",
    )
    span = [
        {"timestamp": start - 25 * 3_600_000, "message": "a"},
        {"timestamp": start, "message": "b"},
    ]
    assert put(span) == (
        "InvalidParameterException",
        "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
    )


def test_put_skips_too_old_too_new_and_expired_events(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    logs.put_retention_policy(logGroupName=group, retentionInDays=3)
    now = now_ms()
    response = logs.put_log_events(
        logGroupName=group,
        logStreamName=name,
        logEvents=[
            {"timestamp": now - 15 * DAY_MS, "message": "too old"},
            {"timestamp": now - 4 * DAY_MS, "message": "expired"},
            {"timestamp": now - 1000, "message": "kept"},
            {"timestamp": now + 3 * 3_600_000, "message": "too new"},
        ],
    )
    assert response["rejectedLogEventsInfo"] == {
        "tooOldLogEventEndIndex": 0,
        "expiredLogEventEndIndex": 1,
        "tooNewLogEventStartIndex": 3,
    }
    events = logs.get_log_events(logGroupName=group, logStreamName=name)["events"]
    assert [event["message"] for event in events] == ["kept"]


# -------------------------------------------------------------------- retention


def test_retention_values_and_enforcement(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    now = now_ms()
    logs.put_log_events(
        logGroupName=group,
        logStreamName=name,
        logEvents=[
            {"timestamp": now - 10 * DAY_MS, "message": "ten days old"},
            {"timestamp": now - 10 * DAY_MS + 1, "message": "also ten days old"},
        ],
    )
    logs.put_log_events(
        logGroupName=group, logStreamName=name, logEvents=[{"timestamp": now, "message": "fresh"}]
    )
    before = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    code, message = error_of(
        lambda: logs.put_retention_policy(logGroupName=group, retentionInDays=2)
    )
    assert code == "InvalidParameterException"
    assert message.startswith(
        "1 validation error detected: Value '2' at 'retentionInDays' failed to satisfy "
        "constraint: Member must satisfy enum value set: [1, 3, 5, 7, 14, 30, 60, 90,"
    )
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    after = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert after["retentionInDays"] == 7
    assert after["storedBytes"] == before["storedBytes"] - len("ten days old") - len(
        "also ten days old"
    )
    events = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)
    assert [event["message"] for event in events["events"]] == ["fresh"]
    logs.delete_retention_policy(logGroupName=group)
    assert (
        "retentionInDays" not in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    )


# ------------------------------------------------------------------ FilterLogEvents


def test_filter_log_events(logs: Any, unique_name: Callable[[str], str]) -> None:
    group = f"/filter/{unique_name('group')}"
    logs.create_log_group(logGroupName=group)
    start = now_ms() - 60_000
    lines = {
        "a": ["ERROR disk full", '{"level": "ERROR", "latency": 900}', "INFO fine"],
        "b": ["WARN slow", '{"level": "INFO", "latency": 3}', "ERROR timeout"],
    }
    for stream_name, messages in lines.items():
        logs.create_log_stream(logGroupName=group, logStreamName=stream_name)
        offset = 0 if stream_name == "a" else 1
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream_name,
            logEvents=[
                {"timestamp": start + 10 * i + offset, "message": m} for i, m in enumerate(messages)
            ],
        )

    def search(**params: Any) -> list[str]:
        events = logs.filter_log_events(logGroupName=group, **params)["events"]
        return [event["message"] for event in events]

    assert search() == [lines[s][i] for i in range(3) for s in "ab"]  # interleaved by time
    assert search(filterPattern="ERROR") == [
        "ERROR disk full",
        '{"level": "ERROR", "latency": 900}',
        "ERROR timeout",
    ]
    assert search(filterPattern="?WARN ?fine") == ["WARN slow", "INFO fine"]
    assert search(filterPattern="ERROR -timeout -disk") == ['{"level": "ERROR", "latency": 900}']
    assert search(filterPattern='{ $.level = "ERROR" }') == ['{"level": "ERROR", "latency": 900}']
    assert search(filterPattern="{ $.latency < 10 }") == ['{"level": "INFO", "latency": 3}']
    assert search(filterPattern='"disk full"') == ["ERROR disk full"]
    assert search(logStreamNames=["b"], filterPattern="ERROR") == ["ERROR timeout"]
    assert search(logStreamNamePrefix="a", startTime=start + 10, endTime=start + 20) == [
        '{"level": "ERROR", "latency": 900}',
        "INFO fine",
    ]
    arn = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["logGroupArn"]
    by_arn = logs.filter_log_events(logGroupIdentifier=arn, filterPattern="disk")["events"]
    assert [event["message"] for event in by_arn] == ["ERROR disk full"]
    first = logs.filter_log_events(logGroupName=group, limit=4)
    event = first["events"][0]
    assert set(event) == {"logStreamName", "timestamp", "message", "ingestionTime", "eventId"}
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=group, PaginationConfig={"PageSize": 4}
    )
    assert sum(len(page["events"]) for page in pages) == 6
    assert error_of(lambda: search(filterPattern="{ $.level = }"))[0] == "InvalidParameterException"
