"""The Prometheus page, read back with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from lamina.observability.aggregation import Cell
from lamina.observability.prometheus import prometheus_name, render
from lamina.observability.telemetry import LiveLevels


def samples(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_names_follow_cloudwatch() -> None:
    assert prometheus_name("Invocations") == "aws_lambda_invocations"
    assert prometheus_name("AsyncEventsReceived") == "aws_lambda_async_events_received"
    assert (
        prometheus_name("ProvisionedConcurrencyUtilization")
        == "aws_lambda_provisioned_concurrency_utilization"
    )


def test_page_carries_counters_histogram_levels_and_async_metrics() -> None:
    cell = Cell(errors=1, throttles=2, billed_ms=7)
    for duration in (0.5, 3.0, 3.0, 700.0):
        cell.duration.add(duration)
    levels = LiveLevels(
        in_flight={"fn": 2},
        account_in_flight=2,
        unreserved_in_flight=2,
        account_limit=1000,
        environments={"fn": 3},
        provisioned=[("fn", "live", 1, 4)],
    )
    snapshot = {
        "AsyncEventsReceived": {"fn": {"Sum": 5.0}},
        "AsyncEventAge": {"fn": {"SampleCount": 5, "Sum": 50.0, "Minimum": 1, "Maximum": 20}},
    }
    body, content_type = render({("fn", "fn:live", "3"): cell}, levels, snapshot, "")
    assert content_type.startswith("text/plain")
    found = samples(body)
    labels = frozenset(
        {("function_name", "fn"), ("resource", "fn:live"), ("executed_version", "3")}
    )
    assert found[("aws_lambda_invocations_total", labels)] == 4
    assert found[("aws_lambda_errors_total", labels)] == 1
    assert found[("aws_lambda_throttles_total", labels)] == 2
    assert found[("lamina_billed_duration_milliseconds_total", labels)] == 7
    assert found[("aws_lambda_duration_milliseconds_count", labels)] == 4
    assert found[("aws_lambda_duration_milliseconds_sum", labels)] == 706.5

    def bucket(bound: str) -> float:
        return found[("aws_lambda_duration_milliseconds_bucket", labels | {("le", bound)})]

    # Power-of-two bounds are exact: 0.5 lands in le=0.5, 3.0 in le=4.0, 700 in le=1024.
    assert (bucket("0.25"), bucket("0.5"), bucket("2.0"), bucket("4.0")) == (0, 1, 1, 3)
    assert (bucket("512.0"), bucket("1024.0"), bucket("+Inf")) == (3, 4, 4)
    fn = frozenset({("function_name", "fn")})
    assert found[("aws_lambda_concurrent_executions", fn)] == 2
    # Warm environments count on-demand and provisioned ones.
    assert found[("lamina_warm_environments", fn)] == 3 + 4
    live = frozenset({("function_name", "fn"), ("resource", "fn:live")})
    assert found[("aws_lambda_provisioned_concurrency_utilization", live)] == 0.25
    assert found[("aws_lambda_async_events_received_total", fn)] == 5
    assert found[("aws_lambda_async_event_age_milliseconds_count", fn)] == 5


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    levels = LiveLevels({}, 0, 0, 1000, {})
    body, content_type = render({}, levels, {}, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
