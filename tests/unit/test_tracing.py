"""X-Ray headers, sampling, the XRAY part of REPORT, and the spans of recorded invocations."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

from lamina.invoke.events import InvocationRecord, NoObserver
from lamina.invoke.tracing import (
    Sampler,
    Trace,
    Tracing,
    new_root,
    otel_trace_id,
    parse_header,
    upstream_or_new,
)
from lamina.observability.platform_log import TEXT_PLATFORM_LOG, JsonPlatformLog
from lamina.observability.tracing import traced_observer
from lamina.observability.tracing_batcher import SpanBatcher
from lamina.observability.tracing_export import SpanExporting
from lamina.settings import Settings, SpanBatching, otlp_traces_url
from tests.support.waiting import wait_until

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
CALLER = "53995c3f42cd8ad8"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def always(value: float) -> Tracing:
    """Tracing whose sampler's random draw is always `value` (after each second's first)."""
    return Tracing(Sampler(0.05, clock=FakeClock(), draw=lambda: value))


# -------------------------------------------------------------------------- headers


def test_new_roots_carry_the_epoch_second() -> None:
    root = new_root(0x5759E988)
    assert re.fullmatch(r"1-5759e988-[0-9a-f]{24}", root)
    assert new_root() != new_root()


def test_headers_parse_into_fields() -> None:
    header = f"Root={ROOT}; Parent={CALLER};Sampled=1;Lineage=a87bd80c:0;Self=x"
    assert parse_header(header) == {
        "Root": ROOT,
        "Parent": CALLER,
        "Sampled": "1",
        "Lineage": "a87bd80c:0",
        "Self": "x",
    }
    assert parse_header("garbage;=1;Root=") == {}


def test_front_doors_keep_a_well_formed_header_and_replace_the_rest() -> None:
    given = f"Self=1-00000000-000000000000000000000000;Root={ROOT}"
    assert upstream_or_new(given) == given
    for bad in (None, "", "Root=2-abc", "Parent=53995c3f42cd8ad8", "Root=1-5759e988-short"):
        assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", upstream_or_new(bad))


def test_xray_root_maps_to_the_otel_trace_id() -> None:
    assert otel_trace_id(ROOT) == 0x5759E988BD862E3FE1BE46A994272793


# -------------------------------------------------------------------- trace decisions


def test_passthrough_passes_the_header_on_and_records_nothing() -> None:
    tracing = always(0.0)
    given = f"Root={ROOT};Parent={CALLER};Sampled=1"
    trace = tracing.begin("fn", "PassThrough", given)
    assert trace == Trace(given)
    assert trace.xray is None and not trace.sampled
    fresh = tracing.begin("fn", "PassThrough", None).header
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", fresh)


def test_active_continues_the_callers_trace_with_a_span_of_its_own() -> None:
    trace = always(0.99).begin(
        "fn", "Active", f"Root={ROOT};Parent={CALLER};Sampled=1;Lineage=a87bd80c:0", 12.5
    )
    assert trace.root == ROOT and trace.parent == CALLER and trace.sampled
    assert re.fullmatch(r"[0-9a-f]{16}", trace.segment) and trace.segment != CALLER
    assert trace.header == f"Root={ROOT};Parent={trace.segment};Sampled=1;Lineage=a87bd80c:0"
    assert trace.xray == (ROOT, trace.segment)
    assert trace.received_at == 12.5 and trace.admitted_at > 12.5


def test_active_follows_the_callers_decision() -> None:
    tracing = always(0.0)  # would sample everything it decides itself
    trace = tracing.begin("fn", "Active", f"Root={ROOT};Parent={CALLER};Sampled=0")
    assert not trace.sampled and trace.xray is None
    assert trace.header == f"Root={ROOT};Parent={trace.segment};Sampled=0"


def test_active_decides_when_the_caller_did_not() -> None:
    tracing = always(0.99)  # samples only each second's first invocation of a function
    first = tracing.begin("fn", "Active", f"Root={ROOT};Sampled=?")
    assert first.sampled and first.root == ROOT and first.parent is None
    assert not tracing.begin("fn", "Active", f"Root={ROOT}").sampled
    assert tracing.begin("other", "Active", None).sampled
    fresh = tracing.begin("fn", "Active", "Root=bad;Parent=nothex")
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", fresh.root) and fresh.parent is None


def test_sampler_takes_the_first_each_second_then_its_rate() -> None:
    clock, draws = FakeClock(), iter([0.04, 0.06, 0.01])

    def draw() -> float:
        return next(draws)

    sampler = Sampler(0.05, clock=clock, draw=draw)
    assert sampler.sample("fn")  # the reservoir: no draw
    assert sampler.sample("fn")  # 0.04 < 0.05
    assert not sampler.sample("fn")  # 0.06
    clock.now += 1
    assert sampler.sample("fn")  # a new second
    assert sampler.sample("fn")  # 0.01


# ------------------------------------------------------------------- configuration


def test_the_traces_url_comes_from_lamina_or_opentelemetry_variables() -> None:
    assert otlp_traces_url({}) is None
    assert otlp_traces_url({"LAMINA_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    assert otlp_traces_url({"LAMINA_OTLP_ENDPOINT": "http://c/v1/traces"}) == "http://c/v1/traces"
    assert otlp_traces_url({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://o:4318"}) == (
        "http://o:4318/v1/traces"
    )
    both = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://o:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/custom",
    }
    assert otlp_traces_url(both) == "http://t/custom"
    assert otlp_traces_url({**both, "LAMINA_OTLP_ENDPOINT": "http://l"}) == "http://l/v1/traces"


def test_settings_read_the_endpoint_and_check_the_rate() -> None:
    settings = Settings.from_env(
        {"LAMINA_OTLP_ENDPOINT": "http://c:4318", "LAMINA_TRACE_SAMPLE_RATE": "0.5"}
    )
    assert settings.otlp_endpoint == "http://c:4318/v1/traces"
    assert settings.trace_sample_rate == 0.5
    with pytest.raises(ValueError, match="LAMINA_TRACE_SAMPLE_RATE"):
        Settings.from_env({"LAMINA_TRACE_SAMPLE_RATE": "1.5"}).check()


def test_without_an_endpoint_the_observer_is_left_alone() -> None:
    observer = NoObserver()
    wrapped, close = traced_observer(observer, Settings())
    assert wrapped is observer
    close()


# --------------------------------------------------------------------- REPORT line


def test_report_has_the_xray_part_only_when_recorded() -> None:
    plain = TEXT_PLATFORM_LOG.report("r1", 2.891, 3, 128, 49, None)
    traced = TEXT_PLATFORM_LOG.report("r1", 2.891, 3, 128, 49, None, xray=(ROOT, CALLER))
    assert traced == f"{plain}\nXRAY TraceId: {ROOT}\tSegmentId: {CALLER}\tSampled: true\t"
    assert "XRAY" not in plain
    record = json.loads(
        JsonPlatformLog("fn", "$LATEST", "on-demand", None).report(
            "r1", 2.5, 3, 128, 49, None, xray=(ROOT, CALLER)
        )
        or ""
    )
    assert record["record"]["tracing"] == {
        "spanId": CALLER,
        "type": "X-Amzn-Trace-Id",
        "value": f"Root={ROOT};Parent={CALLER};Sampled=1",
    }


# ----------------------------------------------------------------------------- spans


@pytest.fixture
def exported() -> Iterator[tuple[SpanExporting, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    exporting = SpanExporting(NoObserver(), SimpleSpanProcessor(exporter), "eu-west-1", "1" * 12)
    yield exporting, exporter
    exporting.close()


def record(
    trace: Trace | None, init_ms: float | None = None, error: bool = False
) -> InvocationRecord:
    return InvocationRecord(
        request_id="req-1",
        function_name="fn",
        executed_version="3",
        alias="live",
        started_at=100.0,
        duration_ms=250.0,
        billed_ms=250 + int(init_ms or 0),
        init_ms=init_ms,
        memory_mb=256,
        max_memory_mb=60,
        function_error=error,
        error_type="Runtime.ExitError" if error else None,
        status="error" if error else None,
        provisioned=False,
        trace=trace,
    )


def test_a_cold_invocation_becomes_four_nested_spans(
    exported: tuple[SpanExporting, InMemorySpanExporter],
) -> None:
    exporting, exporter = exported
    # Queued at 99.0, admitted at 99.2, placed by 99.6, initialised by 100.0, done at 100.25.
    trace = Trace("h", ROOT, CALLER, "00000000000000ff", True, 99.0, 99.2)
    exporting.invoked(record(trace, init_ms=400.0))
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert sorted(spans) == ["Dwell Time", "Initialization", "Invocation", "Placement", "fn"]
    root = spans["fn"]
    assert root.context is not None and root.parent is not None
    assert root.context.trace_id == otel_trace_id(ROOT)
    assert root.parent.span_id == int(CALLER, 16) and root.kind is SpanKind.SERVER
    invocation = spans["Invocation"]
    assert invocation.context is not None and invocation.context.span_id == 0xFF
    for child in ("Dwell Time", "Placement", "Initialization", "Invocation"):
        parent = spans[child].parent
        assert parent is not None and parent.span_id == root.context.span_id
    second = 1_000_000_000
    assert (root.start_time, root.end_time) == (99 * second, int(100.25 * second))
    boundaries = [
        (spans[name].start_time, spans[name].end_time)
        for name in ("Dwell Time", "Placement", "Initialization", "Invocation")
    ]
    assert boundaries == [
        (99 * second, int(99.2 * second)),
        (int(99.2 * second), int(99.6 * second)),
        (int(99.6 * second), 100 * second),
        (100 * second, int(100.25 * second)),
    ]
    attributes = dict(root.attributes or {})
    assert attributes["faas.invocation_id"] == "req-1"
    assert attributes["faas.coldstart"] is True and attributes["faas.version"] == "3"
    assert attributes["lamina.alias"] == "live"
    assert root.resource.attributes["service.name"] == "fn"
    assert root.resource.attributes["cloud.region"] == "eu-west-1"


def test_warm_failed_and_unrecorded_invocations(
    exported: tuple[SpanExporting, InMemorySpanExporter],
) -> None:
    exporting, exporter = exported
    exporting.invoked(record(None))
    unsampled = Trace("h", ROOT, None, "00000000000000ff", False, 99.0, 99.0)
    exporting.invoked(record(unsampled))
    assert exporter.get_finished_spans() == ()
    # A synchronous call (received when admitted) waits in no queue: no "Dwell Time".
    trace = Trace("h", ROOT, None, "00000000000000ff", True, 99.5, 99.5)
    exporting.invoked(record(trace, error=True))
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert sorted(spans) == ["Invocation", "Placement", "fn"]
    assert spans["fn"].parent is None
    assert spans["fn"].status.status_code is StatusCode.ERROR
    assert spans["Invocation"].status.status_code is StatusCode.ERROR
    assert dict(spans["fn"].attributes or {})["error.type"] == "Runtime.ExitError"


# ---------------------------------------------------------------------- the batcher


def finished(name: str) -> ReadableSpan:
    context = SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(name, context=context, start_time=1, end_time=2)


def exported_names(exporter: InMemorySpanExporter) -> list[str]:
    return [span.name for span in exporter.get_finished_spans()]


def test_the_batcher_exports_full_batches_at_once_and_the_rest_on_shutdown() -> None:
    exporter = InMemorySpanExporter()
    batcher = SpanBatcher(exporter, delay_s=60, max_batch=2)
    batcher.on_end(finished("a"))
    batcher.on_end(finished("b"))  # a full batch: exported without waiting a minute
    wait_until(
        lambda: len(exporter.get_finished_spans()) >= 2,
        timeout=10,
        interval=0.01,
        message="the full batch was not exported",
    )
    assert exported_names(exporter) == ["a", "b"]
    batcher.on_end(finished("c"))
    batcher.shutdown()
    assert exported_names(exporter) == ["a", "b", "c"]


def test_the_batcher_drops_what_does_not_fit() -> None:
    exporter = InMemorySpanExporter()
    batcher = SpanBatcher(exporter, delay_s=60, max_queue=3)
    for name in "abcde":
        batcher.on_end(finished(name))
    batcher.shutdown()
    assert exported_names(exporter) == ["a", "b", "c"]


def test_the_batcher_starts_no_thread_in_forked_children() -> None:
    """The namespace sandbox forks with a preexec function, which runs at-fork hooks."""
    batcher = SpanBatcher(InMemorySpanExporter())
    read, write = os.pipe()
    try:

        def count_threads() -> None:
            os.write(write, str(len(os.listdir("/proc/self/task"))).encode())

        subprocess.run(["true"], preexec_fn=count_threads, check=True)
        assert os.read(read, 16) == b"1"
    finally:
        os.close(read)
        os.close(write)
        batcher.shutdown()


def test_the_batcher_reads_the_sdks_variables() -> None:
    exporter = InMemorySpanExporter()
    settings = Settings.from_env(
        {"OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "x"}
    )
    # Not a number: that one keeps the specification's default.
    assert settings.span_batching == SpanBatching(delay_ms=50)
    batcher = SpanBatcher.configured(exporter, settings.span_batching)
    try:
        batcher.on_end(finished("a"))
        wait_until(
            exporter.get_finished_spans,
            timeout=10,
            interval=0.01,
            message="nothing was exported after the configured delay",
        )
        assert exported_names(exporter) == ["a"]
    finally:
        batcher.shutdown()
