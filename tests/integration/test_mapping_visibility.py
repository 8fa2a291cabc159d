"""Seeing event source mappings at work: `lamina mappings` (over `/_lamina/mappings`), their
metrics in the CloudWatch API (by EventSourceMappingUUID, for mappings whose MetricsConfig
names EventCount, as on AWS) and on Prometheus' `/metrics` (every mapping's).

A real Lamina polls SQS queues on moto's standalone server; the mappings live in Lamina.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.lamina_cli import run_lamina
from tests.support.peers import MotoServer
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

HANDLER = "def handler(event, context):\n    return {}\n"
KEY, SECRET = "AKIDLAMINATEST", "lamina-secret-key"
EVENT_COUNT = {"Metrics": ["EventCount"]}


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[LaminaServer]:
    instance = LaminaServer(tmp_path_factory.mktemp("esm-visibility") / "data", env=moto.env)
    yield instance.start()
    instance.stop()


@pytest.fixture(scope="module")
def api(lamina: LaminaServer) -> Iterator[Any]:
    client = lamina.client("lambda")
    yield client
    client.close()


@pytest.fixture(scope="module")
def cloudwatch(lamina: LaminaServer) -> Iterator[Any]:
    client = lamina.client("cloudwatch")
    yield client
    client.close()


@pytest.fixture(scope="module")
def sqs(moto: MotoServer) -> Iterator[Any]:
    client = moto.client("sqs")
    yield client
    client.close()


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def function(api: Any) -> Callable[[], str]:
    def create() -> str:
        name = fresh("fn")
        api.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": HANDLER})},
        )
        return name

    return create


@pytest.fixture
def queue(sqs: Any) -> Callable[[], tuple[str, str]]:
    """A fresh queue in moto: (URL, ARN)."""

    def create() -> tuple[str, str]:
        url: str = sqs.create_queue(QueueName=fresh("q"))["QueueUrl"]
        arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        return url, arn

    return create


def mappings_cli(lamina: LaminaServer, *args: str) -> Any:
    return run_lamina("mappings", *args, "--endpoint", lamina.endpoint)


def shown(lamina: LaminaServer, *args: str) -> dict[str, dict[str, Any]]:
    """`lamina mappings --json`, by UUID."""
    result = mappings_cli(lamina, "--json", *args)
    assert result.returncode == 0, result.stderr
    return {row["UUID"]: row for row in json.loads(result.stdout)["Mappings"]}


def table_row(lamina: LaminaServer, mapping_uuid: str, *args: str) -> list[str]:
    result = mappings_cli(lamina, *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "UUID",
        "FUNCTION",
        "KIND",
        "STATE",
        "LAG",
        "ERRORS",
        "LAST",
        "RESULT",
        "SOURCE",
    ]
    [line] = [line for line in lines if line.startswith(mapping_uuid)]
    return line.split()


def scrape(lamina: LaminaServer) -> dict[tuple[str, str], float]:
    """`/metrics` samples labelled by mapping: (sample name, mapping UUID) -> value."""
    with urllib.request.urlopen(f"{lamina.endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, sample.labels["event_source_mapping_uuid"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "event_source_mapping_uuid" in sample.labels
    }


def total(cloudwatch: Any, metric: str, mapping_uuid: str) -> float | None:
    """The metric's Sum over the last half hour for one mapping; None without data."""
    now = datetime.now(UTC)
    datapoints = cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName=metric,
        Dimensions=[{"Name": "EventSourceMappingUUID", "Value": mapping_uuid}],
        StartTime=now - timedelta(minutes=30),
        EndTime=now + timedelta(minutes=2),
        Period=3600,
        Statistics=["Sum"],
    )["Datapoints"]
    if not datapoints:
        return None
    return float(sum(point["Sum"] for point in datapoints))


# ------------------------------------------------------------------------- tests


def test_every_mapping_is_listed_with_its_state(
    lamina: LaminaServer,
    api: Any,
    function: Callable[[], str],
    queue: Callable[[], tuple[str, str]],
) -> None:
    name, other = function(), function()
    _, arn = queue()
    _, other_arn = queue()
    disabled = api.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, Enabled=False
    )["UUID"]
    elsewhere = api.create_event_source_mapping(
        EventSourceArn=other_arn, FunctionName=other, Enabled=False
    )["UUID"]
    wait_until(
        lambda: api.get_event_source_mapping(UUID=disabled)["State"] == "Disabled",
        message="the mapping never settled Disabled",
    )

    rows = shown(lamina, name)
    assert list(rows) == [disabled]  # only the function's own
    row = rows[disabled]
    assert row["FunctionArn"] == api.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    assert row["EventSourceArn"] == arn
    assert row["EventSourceMappingArn"].endswith(f":event-source-mapping:{disabled}")
    assert (row["Kind"], row["State"]) == ("sqs", "Disabled")
    assert row["StateTransitionReason"] == "USER_INITIATED"
    assert row["LastProcessingResult"] is None  # AWS shows none for SQS
    assert row["Poller"] is None  # nothing polls a Disabled mapping
    # A function ARN finds the same; with no filter every mapping is there.
    assert list(shown(lamina, f"arn:aws:lambda:us-east-1:000000000000:function:{name}")) == [
        disabled
    ]
    assert {disabled, elsewhere} <= set(shown(lamina))

    fields = table_row(lamina, disabled, name)
    assert fields[1:6] == [name, "sqs", "Disabled", "-", "-"]
    assert fields[6] == "-" and fields[7] == arn

    nobody = fresh("fn")
    empty = mappings_cli(lamina, nobody)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip() == f"No event source mappings for {nobody}."


def test_an_sqs_mapping_at_work(
    lamina: LaminaServer,
    api: Any,
    cloudwatch: Any,
    sqs: Any,
    function: Callable[[], str],
    queue: Callable[[], tuple[str, str]],
) -> None:
    name = function()
    url, arn = queue()
    quiet_url, quiet_arn = queue()
    # Opted in to AWS's event counts, and one that is not (CloudWatch gets none of it).
    mapping = api.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, BatchSize=10, MetricsConfig=EVENT_COUNT
    )["UUID"]
    quiet = api.create_event_source_mapping(
        EventSourceArn=quiet_arn, FunctionName=name, BatchSize=10
    )["UUID"]
    for index in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": index}))
    for index in range(3):
        sqs.send_message(QueueUrl=quiet_url, MessageBody=json.dumps({"n": index}))

    def settled() -> dict[str, dict[str, Any]] | None:
        rows = shown(lamina, name)
        for mapping_uuid, count in ((mapping, 5), (quiet, 3)):
            row = rows[mapping_uuid]
            invoked = row["Metrics"].get("InvokedEventCount", {}).get("Sum")
            if row["Poller"] is None or invoked != count or row["Poller"]["Lag"] != 0:
                return None
        return rows

    rows = wait_until(
        settled, timeout=60, interval=0.5, message="the queues were never drained and shown"
    )
    row = rows[mapping]
    assert (row["State"], row["Kind"]) == ("Enabled", "sqs")
    assert row["Poller"]["LagUnit"] == "messages"
    assert row["Poller"]["Errors"] == 0
    assert row["Poller"]["LastError"] is None
    assert row["Metrics"]["PolledEventCount"]["Sum"] == 5

    fields = table_row(lamina, mapping, name)
    assert fields[1:7] == [name, "sqs", "Enabled", "0", "msgs", "0"]
    assert fields[-1] == arn

    # CloudWatch: the opted-in mapping's counts by its UUID; nothing for the other.
    assert total(cloudwatch, "PolledEventCount", mapping) == 5
    assert total(cloudwatch, "InvokedEventCount", mapping) == 5
    assert total(cloudwatch, "PolledEventCount", quiet) is None
    assert total(cloudwatch, "InvokedEventCount", quiet) is None
    listed = cloudwatch.list_metrics(
        Namespace="AWS/Lambda",
        Dimensions=[{"Name": "EventSourceMappingUUID", "Value": mapping}],
    )["Metrics"]
    names = {metric["MetricName"] for metric in listed}
    assert {"PolledEventCount", "InvokedEventCount"} <= names
    for metric in listed:
        assert metric["Dimensions"] == [{"Name": "EventSourceMappingUUID", "Value": mapping}]
    now = datetime.now(UTC)
    data = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "invoked",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "InvokedEventCount",
                        "Dimensions": [{"Name": "EventSourceMappingUUID", "Value": mapping}],
                    },
                    "Period": 3600,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=now - timedelta(minutes=30),
        EndTime=now + timedelta(minutes=2),
    )["MetricDataResults"]
    assert sum(data[0]["Values"]) == 5

    # Prometheus: every mapping's counters (Lamina's own page: no opt-in).
    samples = scrape(lamina)
    assert samples[("aws_lambda_polled_event_count_total", mapping)] == 5
    assert samples[("aws_lambda_invoked_event_count_total", mapping)] == 5
    assert samples[("aws_lambda_polled_event_count_total", quiet)] == 3
    assert samples[("aws_lambda_invoked_event_count_total", quiet)] == 3

    # The JSON snapshot has them too, by mapping UUID.
    with urllib.request.urlopen(f"{lamina.endpoint}/_lamina/metrics", timeout=5) as response:
        snapshot = json.loads(response.read())
    assert snapshot["InvokedEventCount"][mapping]["Sum"] == 5

    # Disabled: the poller stops, and the listing says so.
    api.update_event_source_mapping(UUID=mapping, Enabled=False)
    wait_until(
        lambda: (
            (row := shown(lamina, name)[mapping])["State"] == "Disabled" and row["Poller"] is None
        ),
        timeout=30,
        message="the poller of a disabled mapping kept running",
    )


def test_the_route_needs_a_signature_when_the_server_does(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    secured = LaminaServer(
        tmp_path_factory.mktemp("esm-secured") / "data",
        env={"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET},
    ).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{secured.endpoint}/_lamina/mappings", timeout=10)
        refused.value.close()
        assert refused.value.code == 403

        env = {"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
        signed = run_lamina("mappings", "--endpoint", secured.endpoint, env=env)
        assert signed.returncode == 0, signed.stderr
        assert signed.stdout.strip() == "No event source mappings."

        stranger = run_lamina(
            "mappings",
            "--endpoint",
            secured.endpoint,
            env={"AWS_ACCESS_KEY_ID": "AKIDSTRANGER", "AWS_SECRET_ACCESS_KEY": "nope"},
        )
        assert stranger.returncode == 1
        assert "refused /_lamina/mappings" in stranger.stderr
    finally:
        secured.stop()
