"""Turning span export on: the OpenTelemetry SDK is loaded only when an endpoint is set."""

from __future__ import annotations

from collections.abc import Callable

from lamina.invoke.events import InvocationObserver
from lamina.settings import Settings


def traced_observer(
    observer: InvocationObserver, settings: Settings
) -> tuple[InvocationObserver, Callable[[], None]]:
    """`observer`, plus span export to `settings.otlp_endpoint` when one is set; its closer.

    Without an endpoint the observer is returned as it is, so untraced deployments pay
    nothing per invocation and never import the OpenTelemetry SDK.
    """
    endpoint = settings.otlp_endpoint
    if not endpoint:
        return observer, lambda: None
    # Imported only when needed: the SDK and its exporter take a while to load.
    from lamina.observability.tracing_export import SpanExporting

    exporting = SpanExporting.to_endpoint(
        observer, endpoint, settings.span_batching, settings.region, settings.account_id
    )
    return exporting, exporting.close
