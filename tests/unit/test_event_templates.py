"""The event templates: each in the shape its trigger's real event has (they are built by
the same code), for the account and region given."""

from __future__ import annotations

import base64
import json

import pytest

from lamina.arns import Account
from lamina.blueprints import catalog
from lamina.blueprints.events import TEMPLATES, template

ACCOUNT = Account("210987654321", "eu-west-1")
NOW = 1_700_000_000.5


def test_every_template_is_json_and_titled() -> None:
    assert set(TEMPLATES) == {
        "function-url",
        "sqs",
        "kinesis",
        "dynamodb",
        "eventbridge",
        "schedule",
    }
    for name in TEMPLATES:
        assert json.loads(json.dumps(template(name, ACCOUNT, now=NOW)))


def test_function_url_event_is_payload_format_2() -> None:
    event = template("function-url", ACCOUNT, now=NOW)
    assert (event["version"], event["routeKey"], event["rawPath"]) == ("2.0", "$default", "/items")
    assert event["queryStringParameters"] == {"verbose": "true"}
    assert json.loads(event["body"]) == {"hello": "world"} and not event["isBase64Encoded"]
    context = event["requestContext"]
    assert context["http"]["method"] == "POST" and context["accountId"] == "anonymous"
    assert context["domainName"] == f"{context['apiId']}.lambda-url.eu-west-1.on.aws"
    assert context["timeEpoch"] == int(NOW * 1000)
    assert event["headers"]["x-amzn-trace-id"].startswith("Root=1-")


def test_sqs_records_carry_the_queue_and_region() -> None:
    records = template("sqs", ACCOUNT, now=NOW)["Records"]
    assert len(records) == 2
    for record in records:
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == "arn:aws:sqs:eu-west-1:210987654321:my-queue"
        assert record["attributes"]["SentTimestamp"] == str(int(NOW * 1000))
        assert json.loads(record["body"])["orderId"] in {1, 2}


def test_kinesis_records_carry_base64_data_and_sequence_numbers() -> None:
    records = template("kinesis", ACCOUNT, "fn", now=NOW)["Records"]
    first = records[0]
    assert first["eventSource"] == "aws:kinesis" and first["eventName"] == "aws:kinesis:record"
    assert first["eventID"] == f"shardId-000000000000:{first['kinesis']['sequenceNumber']}"
    assert json.loads(base64.b64decode(first["kinesis"]["data"])) == {
        "sensor": "s-1",
        "reading": 21,
    }
    assert first["invokeIdentityArn"] == "arn:aws:iam::210987654321:role/fn-role"
    assert first["kinesis"]["approximateArrivalTimestamp"] == NOW


def test_dynamodb_records_are_an_insert_then_a_modify() -> None:
    records = template("dynamodb", ACCOUNT, now=NOW)["Records"]
    assert [record["eventName"] for record in records] == ["INSERT", "MODIFY"]
    assert all(record["eventVersion"] == "1.1" for record in records)
    assert records[0]["dynamodb"]["ApproximateCreationDateTime"] == int(NOW)
    assert "OldImage" not in records[0]["dynamodb"] and "OldImage" in records[1]["dynamodb"]
    assert records[1]["eventSourceARN"].startswith(
        "arn:aws:dynamodb:eu-west-1:210987654321:table/my-table/stream/"
    )


def test_eventbridge_and_schedule_events() -> None:
    custom = template("eventbridge", ACCOUNT, now=NOW)
    assert (custom["source"], custom["detail-type"], custom["account"]) == (
        "my.application",
        "Order Placed",
        "210987654321",
    )
    tick = template("schedule", ACCOUNT, "nightly", now=NOW)
    assert (tick["source"], tick["detail-type"], tick["detail"]) == (
        "aws.events",
        "Scheduled Event",
        {},
    )
    assert tick["resources"] == ["arn:aws:events:eu-west-1:210987654321:rule/nightly-schedule"]
    assert tick["time"].endswith(":00Z")  # a tick is on the minute


def test_an_unknown_template_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        template("carrier-pigeon", ACCOUNT)


def test_every_blueprint_has_a_sample_event() -> None:
    for blueprint in catalog():
        assert isinstance(blueprint.sample_event(ACCOUNT), dict)
