"""Spans of recorded invocations, exported over OTLP/HTTP by the OpenTelemetry SDK.

The engine measures an invocation's phases itself and reports them once it is over, so each
span is built finished, with the ids the function was already given (its `Parent=` is the
"Invocation" span), rather than started and ended live through a tracer. A recorded
invocation becomes, in the X-Ray trace the caller started:

    <function name>       the request inside Lamina, from its receipt to the function's answer
      Dwell Time          an asynchronous event's wait in the queue, retry delays included
      Placement           finding a warm environment, or making one (code, sandbox)
      Initialization      a cold start's runtime and init code (absent on warm starts)
      Invocation          the handler; spans the function records nest under it

A `SpanBatcher` queues spans and exports them from its own thread, so the event loop only
builds them (for sampled invocations alone).
"""

from __future__ import annotations

import logging
import random

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import Attributes

from lamina.constants import FUNCTION_ERROR_UNHANDLED
from lamina.invoke.events import InvocationObserver, InvocationRecord
from lamina.invoke.tracing import Trace, otel_trace_id
from lamina.observability.tracing_batcher import SpanBatcher
from lamina.settings import SpanBatching

log = logging.getLogger("lamina.tracing")

_SCOPE = InstrumentationScope("lamina")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK = Status(StatusCode.UNSET)


def _ns(epoch_s: float) -> int:
    return int(epoch_s * 1_000_000_000)


class SpanExporting:
    """An `InvocationObserver` that passes every record on and exports recorded ones."""

    def __init__(
        self,
        inner: InvocationObserver,
        processor: SpanProcessor,
        region: str,
        account_id: str,
    ) -> None:
        self._inner = inner
        self._processor = processor
        self._region = region
        self._account_id = account_id
        # One resource per function, so that trace viewers list each function as a service.
        self._resources: dict[str, Resource] = {}

    @classmethod
    def to_endpoint(
        cls,
        inner: InvocationObserver,
        endpoint: str,
        batching: SpanBatching,
        region: str,
        account_id: str,
    ) -> SpanExporting:
        # The exporter reads the rest of its settings (headers, timeout, compression) from
        # the OTEL_EXPORTER_OTLP_* variables itself: the SDK's configuration, not Lamina's.
        exporter = OTLPSpanExporter(endpoint=endpoint)
        return cls(inner, SpanBatcher.configured(exporter, batching), region, account_id)

    def close(self) -> None:
        """Export the spans still queued (briefly: see `SpanBatcher.shutdown`)."""
        self._processor.shutdown()

    # ---------------------------------------------------------- InvocationObserver

    def invoked(self, record: InvocationRecord) -> None:
        self._inner.invoked(record)
        if record.trace is not None and record.trace.sampled:
            # Tracing must never fail the invocation it describes.
            try:
                for span in self.spans(record, record.trace):
                    self._processor.on_end(span)
            except Exception:
                log.exception("could not record the spans of %s", record.request_id)

    def throttled(self, function_name: str, version: str, alias: str | None) -> None:
        self._inner.throttled(function_name, version, alias)

    # ------------------------------------------------------------------ the spans

    def spans(self, record: InvocationRecord, trace: Trace) -> list[ReadableSpan]:
        trace_id = otel_trace_id(trace.root)
        resource = self._resource(record.function_name)
        caller = (
            SpanContext(trace_id, int(trace.parent, 16), is_remote=True, trace_flags=_SAMPLED)
            if trace.parent
            else None
        )
        root = SpanContext(trace_id, _new_span_id(), is_remote=False, trace_flags=_SAMPLED)
        status = (
            Status(StatusCode.ERROR, record.error_type or FUNCTION_ERROR_UNHANDLED)
            if record.function_error
            else _OK
        )
        invoke_start = record.started_at
        end = invoke_start + record.duration_ms / 1000
        # The environment reports how long its init took, not when: it ended as the
        # invocation began. Wall-clock and interval timers can disagree by a little, so the
        # earlier boundaries are clamped to keep every span inside its parent.
        work_start = invoke_start - (record.init_ms or 0.0) / 1000
        admitted = min(trace.admitted_at, work_start)
        received = min(trace.received_at, admitted)

        def child(
            name: str, start: float, stop: float, span_id: int = 0, outcome: Status = _OK
        ) -> ReadableSpan:
            context = SpanContext(trace_id, span_id or _new_span_id(), False, _SAMPLED)
            return self._span(name, context, root, resource, start, stop, status=outcome)

        spans = [
            self._span(
                record.function_name,
                root,
                caller,
                resource,
                received,
                end,
                self._attributes(record, trace),
                SpanKind.SERVER,
                status,
            )
        ]
        if received < admitted:
            spans.append(child("Dwell Time", received, admitted))
        spans.append(child("Placement", admitted, work_start))
        if record.init_ms is not None:
            spans.append(child("Initialization", work_start, invoke_start))
        spans.append(child("Invocation", invoke_start, end, int(trace.segment, 16), status))
        return spans

    def _attributes(self, record: InvocationRecord, trace: Trace) -> dict[str, str | bool | int]:
        attributes: dict[str, str | bool | int] = {
            "faas.name": record.function_name,
            "faas.version": record.executed_version,
            "faas.invocation_id": record.request_id,
            "faas.coldstart": record.init_ms is not None,
            "faas.max_memory": record.memory_mb * 1024 * 1024,
            "cloud.region": self._region,
            "cloud.account.id": self._account_id,
            "aws.xray.trace_id": trace.root,
            "lamina.billed_duration_ms": record.billed_ms,
            "lamina.max_memory_used_mb": record.max_memory_mb,
        }
        if record.alias is not None:
            attributes["lamina.alias"] = record.alias
        if record.function_error:
            attributes["error.type"] = record.error_type or FUNCTION_ERROR_UNHANDLED
        return attributes

    @staticmethod
    def _span(
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        resource: Resource,
        start: float,
        end: float,
        attributes: Attributes = None,
        kind: SpanKind = SpanKind.INTERNAL,
        status: Status = _OK,
    ) -> ReadableSpan:
        return ReadableSpan(
            name,
            context=context,
            parent=parent,
            resource=resource,
            attributes=attributes,
            kind=kind,
            status=status,
            start_time=_ns(start),
            end_time=_ns(end),
            instrumentation_scope=_SCOPE,
        )

    def _resource(self, function: str) -> Resource:
        resource = self._resources.get(function)
        if resource is None:
            # Lamina runs functions as Lambda does; tools that know Lambda's conventions
            # (faas.*, cloud.platform) read these spans as they would AWS's.
            resource = Resource.create(
                {
                    "service.name": function,
                    "faas.name": function,
                    "cloud.provider": "aws",
                    "cloud.platform": "aws_lambda",
                    "cloud.region": self._region,
                    "cloud.account.id": self._account_id,
                }
            )
            self._resources[function] = resource
        return resource


def _new_span_id() -> int:
    # Ids of spans the function never sees; only the "Invocation" span's was sent to it.
    return random.getrandbits(64) or 1
