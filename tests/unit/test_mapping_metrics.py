"""Event source mapping metrics on their way out: the pollers' registry (keyed by mapping
UUID) folded into CloudWatch's series as AWS publishes them, onto `/metrics`, and the
`lamina mappings` table.

AWS publishes the event counts (PolledEventCount ... DeletedEventCount) by the dimension
EventSourceMappingUUID, and only for mappings whose MetricsConfig names EventCount;
IteratorAge is a function metric (FunctionName, Resource, and across functions).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lamina import metrics as m
from lamina.commands.mappings import lag
from lamina.commands.mappings import render as render_table
from lamina.metrics import MetricsRegistry
from lamina.model.mappings import ENABLED, KINESIS, SQS, EventSourceMapping
from lamina.observability.aggregation import MappingFacts
from lamina.observability.cloudwatch import MetricReader
from lamina.observability.prometheus import render
from lamina.observability.telemetry import LiveLevels, Telemetry
from lamina.store.protocols.mappings import EventSourceMappingStore
from lamina.store.sqlite import open_stores
from lamina.store.sqlite.metrics import SqliteMetricsStore
from tests.support.domain import ACCOUNT

T0 = 1767225600.0  # 2026-01-01T00:00:00Z, a minute boundary
NOW = T0 + 3600
QUEUE = "arn:aws:sqs:us-east-1:123456789012:orders"
STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
OPTED_IN = {"MetricsConfig": {"Metrics": ["EventCount"]}}


def mapping(uuid: str, **changes: Any) -> EventSourceMapping:
    base = EventSourceMapping(
        uuid=uuid,
        kind=SQS,
        function_name="consumer",
        function_arn=ACCOUNT.function_arn("consumer", None),
        event_source_arn=QUEUE,
        state=ENABLED,
        state_transition_reason="USER_INITIATED",
        enabled=True,
        last_modified=1.0,
        batch_size=10,
    )
    return replace(base, **changes)


@pytest.fixture
def store(tmp_path: Path) -> EventSourceMappingStore:
    return open_stores(tmp_path).mappings


@pytest.fixture
def telemetry(tmp_path: Path, store: EventSourceMappingStore) -> Iterator[Telemetry]:
    instance = Telemetry(
        SqliteMetricsStore(tmp_path / "metrics.db"), clock=lambda: NOW, mappings=store
    )
    yield instance
    instance.store.close()


@pytest.fixture
def registry(telemetry: Telemetry) -> MetricsRegistry:
    """The pollers' registry, wired to the telemetry as the server wires it."""
    instance = MetricsRegistry()
    instance.subscribe(telemetry.mapping_metric)
    return instance


def statistics(
    telemetry: Telemetry, metric: str, dims: dict[str, str], stat: str = "Sum"
) -> list[float]:
    reader = MetricReader(telemetry, clock=lambda: NOW)
    points = reader.get_metric_statistics(
        {
            "Namespace": "AWS/Lambda",
            "MetricName": metric,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
            "StartTime": datetime.fromtimestamp(T0, UTC),
            "EndTime": NOW,
            "Period": 3600,
            "Statistics": [stat],
        }
    )["Datapoints"]
    return [point[stat] for point in points]


def listed(telemetry: Telemetry, **params: Any) -> list[tuple[str, dict[str, str]]]:
    reader = MetricReader(telemetry, clock=lambda: NOW)
    metrics = reader.list_metrics({"Namespace": "AWS/Lambda", **params})["Metrics"]
    return [
        (metric["MetricName"], {d["Name"]: d["Value"] for d in metric["Dimensions"]})
        for metric in metrics
    ]


def test_facts_follow_the_mapping() -> None:
    plain = MappingFacts.of(mapping("u1"))
    assert plain == MappingFacts(function="consumer", resource=None, event_counts=False)
    aliased = mapping("u2", function_arn=ACCOUNT.function_arn("consumer", "live"), extras=OPTED_IN)
    assert MappingFacts.of(aliased) == MappingFacts("consumer", "consumer:live", True)
    latest = mapping("u3", function_arn=ACCOUNT.function_arn("consumer", "$LATEST"))
    assert MappingFacts.of(latest).resource is None
    other_group = mapping("u4", extras={"MetricsConfig": {"Metrics": []}})
    assert not MappingFacts.of(other_group).event_counts


def test_event_counts_by_mapping_uuid_when_opted_in(
    store: EventSourceMappingStore, telemetry: Telemetry
) -> None:
    store.put(mapping("u-in", extras=OPTED_IN))
    store.put(mapping("u-out"))
    # Counted as the pollers count, at known times (the registry stamps the wall clock).
    for uuid in ("u-in", "u-out"):
        telemetry.mapping_metric(m.POLLED_EVENT_COUNT, uuid, 7, T0 + 5)
        telemetry.mapping_metric(m.POLLED_EVENT_COUNT, uuid, 3, T0 + 65)
        telemetry.mapping_metric(m.INVOKED_EVENT_COUNT, uuid, 10, T0 + 66)
        telemetry.mapping_metric(m.FILTERED_OUT_EVENT_COUNT, uuid, 0, T0 + 66)

    dims = {"EventSourceMappingUUID": "u-in"}
    assert statistics(telemetry, m.POLLED_EVENT_COUNT, dims) == [10]
    assert statistics(telemetry, m.POLLED_EVENT_COUNT, dims, "SampleCount") == [2]
    assert statistics(telemetry, m.INVOKED_EVENT_COUNT, dims) == [10]
    assert statistics(telemetry, m.FILTERED_OUT_EVENT_COUNT, dims) == [0]
    # Without MetricsConfig, AWS publishes none of them; nor by function or account-wide.
    assert statistics(telemetry, m.POLLED_EVENT_COUNT, {"EventSourceMappingUUID": "u-out"}) == []
    assert statistics(telemetry, m.POLLED_EVENT_COUNT, {"FunctionName": "consumer"}) == []
    assert statistics(telemetry, m.POLLED_EVENT_COUNT, {}) == []

    assert sorted(listed(telemetry, Dimensions=[{"Name": "EventSourceMappingUUID"}])) == [
        (m.FILTERED_OUT_EVENT_COUNT, dims),
        (m.INVOKED_EVENT_COUNT, dims),
        (m.POLLED_EVENT_COUNT, dims),
    ]


def test_iterator_age_is_a_function_metric(
    store: EventSourceMappingStore, telemetry: Telemetry
) -> None:
    store.put(
        mapping(
            "u-stream",
            kind=KINESIS,
            event_source_arn=STREAM,
            function_arn=ACCOUNT.function_arn("consumer", "live"),
        )
    )
    telemetry.mapping_metric(m.ITERATOR_AGE, "u-stream", 1200, T0 + 10)
    telemetry.mapping_metric(m.ITERATOR_AGE, "u-stream", 300, T0 + 20)

    for dims in (
        {"FunctionName": "consumer"},
        {"FunctionName": "consumer", "Resource": "consumer:live"},
        {},
    ):
        assert statistics(telemetry, m.ITERATOR_AGE, dims, "Maximum") == [1200]
        assert statistics(telemetry, m.ITERATOR_AGE, dims, "Minimum") == [300]
    assert statistics(telemetry, m.ITERATOR_AGE, {"EventSourceMappingUUID": "u-stream"}) == []


def test_a_mapping_deleted_after_it_was_seen_still_counts(
    store: EventSourceMappingStore, telemetry: Telemetry
) -> None:
    store.put(mapping("u-gone", extras=OPTED_IN))
    telemetry.mapping_metric(m.INVOKED_EVENT_COUNT, "u-gone", 4, T0 + 5)
    telemetry.flush()
    store.delete("u-gone")
    telemetry.mapping_metric(m.INVOKED_EVENT_COUNT, "u-gone", 6, T0 + 6)
    # Never seen at all: nothing is known to publish it by.
    telemetry.mapping_metric(m.INVOKED_EVENT_COUNT, "u-never", 1, T0 + 6)
    assert statistics(telemetry, m.INVOKED_EVENT_COUNT, {"EventSourceMappingUUID": "u-gone"}) == [
        10
    ]
    assert statistics(telemetry, m.INVOKED_EVENT_COUNT, {"EventSourceMappingUUID": "u-never"}) == []


def test_opting_in_later_publishes_from_then_on(
    store: EventSourceMappingStore, telemetry: Telemetry
) -> None:
    store.put(mapping("u-late"))
    telemetry.mapping_metric(m.POLLED_EVENT_COUNT, "u-late", 5, T0 + 5)
    telemetry.flush()
    store.put(mapping("u-late", extras=OPTED_IN))
    telemetry.mapping_metric(m.POLLED_EVENT_COUNT, "u-late", 2, T0 + 6)
    assert statistics(telemetry, m.POLLED_EVENT_COUNT, {"EventSourceMappingUUID": "u-late"}) == [2]


def test_the_registry_feeds_the_fold(
    store: EventSourceMappingStore, telemetry: Telemetry, registry: MetricsRegistry
) -> None:
    store.put(mapping("u-reg", extras=OPTED_IN))
    registry.count(m.DELETED_EVENT_COUNT, "u-reg", 3)
    telemetry.flush()
    rows = telemetry.store.series_names(0)
    assert (m.DELETED_EVENT_COUNT, '[["EventSourceMappingUUID","u-reg"]]') in rows


def test_prometheus_families_per_mapping_uuid() -> None:
    registry = MetricsRegistry()
    registry.count(m.POLLED_EVENT_COUNT, "u-1", 12)
    registry.count(m.INVOKED_EVENT_COUNT, "u-1", 10)
    registry.count(m.FILTERED_OUT_EVENT_COUNT, "u-1", 2)
    registry.count(m.POLLED_EVENT_COUNT, "u-2", 1)
    registry.observe(m.ITERATOR_AGE, "u-2", 250)
    registry.observe(m.ITERATOR_AGE, "u-2", 750)
    levels = LiveLevels({}, 0, 0, 1000, {})
    body, _ = render({}, levels, registry.snapshot(), "")

    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            uuid = sample.labels.get("event_source_mapping_uuid")
            if uuid is not None:
                samples[(sample.name, uuid)] = sample.value
    assert samples == {
        ("aws_lambda_polled_event_count_total", "u-1"): 12,
        ("aws_lambda_polled_event_count_total", "u-2"): 1,
        ("aws_lambda_invoked_event_count_total", "u-1"): 10,
        ("aws_lambda_filtered_out_event_count_total", "u-1"): 2,
        ("aws_lambda_iterator_age_milliseconds_count", "u-2"): 2,
        ("aws_lambda_iterator_age_milliseconds_sum", "u-2"): 1000,
    }
    # Every family is on the page even before any mapping has counted.
    empty, _ = render({}, levels, {}, "")
    names = {family.name for family in text_string_to_metric_families(empty.decode())}
    assert {
        "aws_lambda_polled_event_count",
        "aws_lambda_filtered_out_event_count",
        "aws_lambda_invoked_event_count",
        "aws_lambda_failed_invoke_event_count",
        "aws_lambda_dropped_event_count",
        "aws_lambda_on_failure_destination_delivered_event_count",
        "aws_lambda_iterator_age_milliseconds",
    } <= names


def test_the_cli_table_shows_lag_in_its_unit() -> None:
    assert lag({}) == "-"
    assert lag({"Lag": None, "LagUnit": "messages"}) == "-"
    assert lag({"Lag": 1.0, "LagUnit": "messages"}) == "1 msg"
    assert lag({"Lag": 42.0, "LagUnit": "messages"}) == "42 msgs"
    assert lag({"Lag": 850.0, "LagUnit": "milliseconds"}) == "850 ms"
    assert lag({"Lag": 3200.0, "LagUnit": "milliseconds"}) == "3.2 s"
    assert lag({"Lag": 240_000.0, "LagUnit": "milliseconds"}) == "4.0 min"
    assert lag({"Lag": 7_200_000.0, "LagUnit": "milliseconds"}) == "2.0 h"

    document = {
        "Mappings": [
            {
                "UUID": "u-stream",
                "FunctionArn": ACCOUNT.function_arn("consumer", "live"),
                "EventSourceArn": STREAM,
                "Kind": KINESIS,
                "State": ENABLED,
                "LastProcessingResult": "PROBLEM: Function call failed",
                "Poller": {
                    "Lag": 3200.0,
                    "LagUnit": "milliseconds",
                    "Errors": 2,
                    "LastError": "Unhandled",
                },
            }
        ]
    }
    lines = render_table(document).splitlines()
    assert lines[1].split() == [
        "u-stream",
        "consumer:live",
        "kinesis",
        "Enabled",
        "3.2",
        "s",
        "2",
        "PROBLEM:",
        "Function",
        "call",
        "failed",
        STREAM,
    ]
    assert lines[-2:] == ["Last errors:", "  u-stream: Unhandled"]
    assert render_table({"Mappings": []}, "consumer") == "No event source mappings for consumer."
