"""CloudWatch reads over the telemetry store: dimensions, periods, statistics, the rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lamina.errors import InvalidNextToken, InvalidParameterCombination, InvalidParameterValue
from lamina.invoke.events import InvocationRecord
from lamina.observability.cloudwatch import MetricReader
from lamina.observability.telemetry import Telemetry
from lamina.store.sqlite.metrics import SqliteMetricsStore

# A minute boundary, a while ago: 2026-01-01T00:00:00Z.
T0 = 1767225600.0
NOW = T0 + 3600


def record(
    at: float,
    *,
    function: str = "fn",
    version: str = "$LATEST",
    alias: str | None = None,
    duration: float = 10.0,
    error: bool = False,
    billed: int | None = None,
    memory: int = 128,
    architecture: str = "x86_64",
) -> InvocationRecord:
    return InvocationRecord(
        request_id="r",
        function_name=function,
        executed_version=version,
        alias=alias,
        started_at=at,
        duration_ms=duration,
        billed_ms=billed if billed is not None else int(duration) + 1,
        init_ms=None,
        memory_mb=memory,
        max_memory_mb=40,
        function_error=error,
        error_type=None,
        status=None,
        provisioned=False,
        architecture=architecture,
    )


@pytest.fixture
def telemetry(tmp_path: Path) -> Iterator[Telemetry]:
    instance = Telemetry(SqliteMetricsStore(tmp_path / "metrics.db"), clock=lambda: NOW)
    yield instance
    instance.store.close()


@pytest.fixture
def reader(telemetry: Telemetry) -> MetricReader:
    return MetricReader(telemetry, clock=lambda: NOW)


def stats(reader: MetricReader, metric: str, dims: dict[str, str], **extra: Any) -> Any:
    params = {
        "Namespace": "AWS/Lambda",
        "MetricName": metric,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
        "StartTime": datetime.fromtimestamp(T0, UTC),
        "EndTime": T0 + 3600,
        "Period": 3600,
        "Statistics": ["Sum", "SampleCount", "Minimum", "Maximum", "Average"],
        **extra,
    }
    return reader.get_metric_statistics(params)["Datapoints"]


def test_invocations_errors_and_durations_per_function(
    telemetry: Telemetry, reader: MetricReader
) -> None:
    for index, duration in enumerate([5.0, 15.0, 40.0]):
        telemetry.invoked(record(T0 + 10 + index, duration=duration, error=index == 2))
    [invocations] = stats(reader, "Invocations", {"FunctionName": "fn"})
    assert (invocations["Sum"], invocations["SampleCount"], invocations["Unit"]) == (3, 3, "Count")
    [errors] = stats(reader, "Errors", {"FunctionName": "fn"})
    # Errors is published per invocation as 0 or 1: Average is the error rate.
    assert (errors["Sum"], errors["SampleCount"]) == (1, 3)
    assert errors["Average"] == pytest.approx(1 / 3)
    [duration] = stats(
        reader, "Duration", {"FunctionName": "fn"}, ExtendedStatistics=["p50", "p100"]
    )
    assert duration["Unit"] == "Milliseconds"
    assert (duration["Minimum"], duration["Maximum"], duration["Sum"]) == (5, 40, 60)
    assert duration["ExtendedStatistics"]["p100"] == 40
    assert duration["ExtendedStatistics"]["p50"] == pytest.approx(15, rel=0.025)
    assert duration["Timestamp"] == datetime.fromtimestamp(T0, UTC)
    # The same invocations, account-wide (no dimensions).
    [everything] = stats(reader, "Invocations", {})
    assert everything["Sum"] == 3


def test_versions_and_aliases_publish_resource_and_executed_version(
    telemetry: Telemetry, reader: MetricReader
) -> None:
    telemetry.invoked(record(T0 + 1, version="3", alias="live"))
    telemetry.invoked(record(T0 + 2, version="3", alias="live"))
    telemetry.invoked(record(T0 + 3, version="3"))
    telemetry.invoked(record(T0 + 4))
    assert stats(reader, "Invocations", {"FunctionName": "fn"})[0]["Sum"] == 4
    by_alias = {"FunctionName": "fn", "Resource": "fn:live"}
    assert stats(reader, "Invocations", by_alias)[0]["Sum"] == 2
    assert stats(reader, "Invocations", {**by_alias, "ExecutedVersion": "3"})[0]["Sum"] == 2
    assert stats(reader, "Invocations", {"FunctionName": "fn", "Resource": "fn:3"})[0]["Sum"] == 1
    # Dimensions must match a published set exactly, as on CloudWatch.
    assert stats(reader, "Invocations", {"Resource": "fn:live"}) == []
    assert stats(reader, "Invocations", {"FunctionName": "other"}) == []


def test_throttles_count_but_are_not_invocations(
    telemetry: Telemetry, reader: MetricReader
) -> None:
    telemetry.throttled("fn", "$LATEST", None)
    telemetry.throttled("fn", "$LATEST", None)
    [throttles] = stats(
        reader,
        "Throttles",
        {"FunctionName": "fn"},
        StartTime=NOW - 60,
        EndTime=NOW + 60,
        Period=120,
    )
    assert throttles["Sum"] == 2
    assert (
        stats(
            reader,
            "Invocations",
            {"FunctionName": "fn"},
            StartTime=NOW - 60,
            EndTime=NOW + 60,
            Period=120,
        )
        == []
    )


def test_concurrency_is_the_level_seen_when_invocations_finish(
    telemetry: Telemetry, reader: MetricReader
) -> None:
    # The engine's level events: three of fn and one of other admitted, from the shared pool.
    for _ in range(3):
        telemetry.admitted("fn", unreserved=True)
    telemetry.admitted("other", unreserved=True)
    for _ in range(3):  # each reports while it is still in flight, then leaves
        telemetry.invoked(record(T0 + 5))
        telemetry.released("fn", unreserved=True)
    telemetry.released("other", unreserved=True)
    assert telemetry.levels().account_in_flight == 0
    [concurrency] = stats(reader, "ConcurrentExecutions", {"FunctionName": "fn"})
    assert concurrency["Maximum"] == 3
    [account] = stats(reader, "ConcurrentExecutions", {})
    assert account["Maximum"] == 4
    [unreserved] = stats(reader, "UnreservedConcurrentExecutions", {})
    assert unreserved["Maximum"] == 4


def test_periods_bucket_minutes_from_the_start_time(
    telemetry: Telemetry, reader: MetricReader
) -> None:
    for minute in range(10):
        telemetry.invoked(record(T0 + minute * 60 + 30))
    points = stats(
        reader,
        "Invocations",
        {"FunctionName": "fn"},
        StartTime=T0 + 60,  # buckets start here: 1-5, 6-10 (minute 0 is before the start)
        EndTime=T0 + 660,
        Period=300,
    )
    assert [(p["Timestamp"].timestamp() - T0, p["Sum"]) for p in points] == [(60, 5), (360, 4)]


def test_start_time_is_rounded_down_to_the_minute(
    telemetry: Telemetry, reader: MetricReader
) -> None:
    telemetry.invoked(record(T0 + 61))
    [point] = stats(reader, "Invocations", {"FunctionName": "fn"}, StartTime=T0 + 90, Period=60)
    assert point["Timestamp"].timestamp() == T0 + 60


def test_unit_filter_and_unknown_namespace_return_nothing(
    telemetry: Telemetry, reader: MetricReader
) -> None:
    telemetry.invoked(record(T0 + 1))
    assert stats(reader, "Invocations", {"FunctionName": "fn"}, Unit="Count") != []
    assert stats(reader, "Invocations", {"FunctionName": "fn"}, Unit="Seconds") == []
    assert stats(reader, "Invocations", {"FunctionName": "fn"}, Namespace="AWS/EC2") == []


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"Period": 90}, InvalidParameterValue, "The parameter Period must be a multiple of 60."),
        ({"EndTime": T0}, InvalidParameterValue, "must not equal"),
        ({"EndTime": T0 - 60}, InvalidParameterValue, "must be less than"),
        (
            {"EndTime": T0 + 86400 + 60, "Period": 60},
            InvalidParameterCombination,
            "You have requested up to 1441 datapoints, which exceeds the limit of 1440.",
        ),
        ({"Statistics": []}, InvalidParameterCombination, "Statistics and ExtendedStatistics"),
        ({"ExtendedStatistics": ["tm99"]}, InvalidParameterValue, "ExtendedStatistics.member.1"),
    ],
)
def test_get_metric_statistics_rules(
    reader: MetricReader, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace(".", r"\.")):
        stats(reader, "Invocations", {"FunctionName": "fn"}, **change)


def test_exactly_1440_datapoints_are_allowed(reader: MetricReader) -> None:
    assert stats(reader, "Invocations", {}, EndTime=T0 + 86400, Period=60) == []


def metric_query(query_id: str, metric: str, stat: str, **extra: Any) -> dict[str, Any]:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Lambda",
                "MetricName": metric,
                "Dimensions": [{"Name": "FunctionName", "Value": "fn"}],
            },
            "Period": 60,
            "Stat": stat,
        },
        **extra,
    }


def test_get_metric_data_returns_each_query_newest_first(
    telemetry: Telemetry, reader: MetricReader
) -> None:
    for minute, duration in ((0, 10.0), (1, 20.0), (1, 30.0), (3, 5.0)):
        telemetry.invoked(record(T0 + minute * 60 + 1, duration=duration))
    result = reader.get_metric_data(
        {
            "MetricDataQueries": [
                metric_query("calls", "Invocations", "Sum", Label="Calls"),
                metric_query("slowest", "Duration", "Maximum"),
                metric_query("hidden", "Errors", "Sum", ReturnData=False),
                metric_query("median", "Duration", "p50"),
            ],
            "StartTime": T0,
            "EndTime": T0 + 600,
        }
    )
    results = {r["Id"]: r for r in result["MetricDataResults"]}
    assert set(results) == {"calls", "slowest", "median"}
    calls = results["calls"]
    assert calls["Label"] == "Calls" and calls["StatusCode"] == "Complete"
    assert [t.timestamp() - T0 for t in calls["Timestamps"]] == [180, 60, 0]
    assert calls["Values"] == [1, 2, 1]
    assert results["slowest"]["Label"] == "Duration"
    assert results["slowest"]["Values"] == [5, 30, 10]
    ascending = reader.get_metric_data(
        {
            "MetricDataQueries": [metric_query("calls", "Invocations", "Sum")],
            "StartTime": T0,
            "EndTime": T0 + 600,
            "ScanBy": "TimestampAscending",
        }
    )["MetricDataResults"][0]
    assert ascending["Values"] == [1, 2, 1]
    assert [t.timestamp() - T0 for t in ascending["Timestamps"]] == [0, 60, 180]


@pytest.mark.parametrize(
    ("queries", "error"),
    [
        ([metric_query("Bad-Id", "Invocations", "Sum")], InvalidParameterValue),
        (
            [metric_query("a", "Invocations", "Sum"), metric_query("a", "Errors", "Sum")],
            InvalidParameterValue,
        ),
        ([{"Id": "e", "Expression": "m1 * 2"}], InvalidParameterValue),
        ([{"Id": "e"}], InvalidParameterCombination),
        ([metric_query("a", "Invocations", "tm99")], InvalidParameterValue),
    ],
)
def test_get_metric_data_rules(
    reader: MetricReader, queries: list[dict[str, Any]], error: type[Exception]
) -> None:
    with pytest.raises(error):
        reader.get_metric_data({"MetricDataQueries": queries, "StartTime": T0, "EndTime": NOW})


def test_list_metrics_filters_by_name_and_dimensions(
    telemetry: Telemetry, reader: MetricReader
) -> None:
    telemetry.invoked(record(NOW - 120, alias="live", version="2"))
    telemetry.invoked(record(NOW - 120, function="other"))
    listed = reader.list_metrics({"Namespace": "AWS/Lambda", "MetricName": "Invocations"})
    dimension_sets = sorted(
        tuple((d["Name"], d["Value"]) for d in metric["Dimensions"]) for metric in listed["Metrics"]
    )
    assert dimension_sets == [
        (),
        (("ExecutedVersion", "2"), ("FunctionName", "fn"), ("Resource", "fn:live")),
        (("FunctionName", "fn"),),
        (("FunctionName", "fn"), ("Resource", "fn:live")),
        (("FunctionName", "other"),),
    ]
    only_other = reader.list_metrics(
        {"MetricName": "Invocations", "Dimensions": [{"Name": "FunctionName", "Value": "other"}]}
    )
    assert [m["Dimensions"] for m in only_other["Metrics"]] == [
        [{"Name": "FunctionName", "Value": "other"}]
    ]
    assert reader.list_metrics({"Namespace": "AWS/EC2"})["Metrics"] == []
    with pytest.raises(InvalidNextToken):
        reader.list_metrics({"NextToken": "nonsense"})


def test_series_survive_a_new_telemetry_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    first = Telemetry(SqliteMetricsStore(path), clock=lambda: NOW)
    first.invoked(record(T0 + 1, duration=8.0))
    first.close()
    second = Telemetry(SqliteMetricsStore(path), clock=lambda: NOW)
    # A later delta for the same minute adds to the stored row, histograms included.
    second.invoked(record(T0 + 2, duration=32.0))
    reader = MetricReader(second, clock=lambda: NOW)
    [point] = stats(reader, "Duration", {"FunctionName": "fn"}, ExtendedStatistics=["p50"])
    assert (point["SampleCount"], point["Minimum"], point["Maximum"]) == (2, 8, 32)
    assert point["ExtendedStatistics"]["p50"] == 8
    usage = second.store.usage(0)
    assert [(u.function, u.requests, u.billed_ms) for u in usage] == [("fn", 2, 9 + 33)]
    second.close()
