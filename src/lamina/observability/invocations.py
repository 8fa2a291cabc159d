"""The seam through which the engine reports each finished or refused invocation.

Metrics, billing and `lamina top` subscribe here instead of reaching into the engine, so
the invoke path pays for one small record and one call, whatever is listening.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lamina.observability.tracing import Trace


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    request_id: str
    function_name: str
    executed_version: str
    # The alias the caller named (None for a version or $LATEST).
    alias: str | None
    started_at: float  # epoch seconds
    duration_ms: float
    billed_ms: int
    init_ms: float | None
    memory_mb: int
    max_memory_mb: int
    function_error: bool
    error_type: str | None
    # "timeout", "error" (crash, out of memory) or None when the runtime answered.
    status: str | None
    provisioned: bool
    # Asynchronous (Event) invocations are reported by the dispatcher with this set.
    asynchronous: bool = False
    # The instruction set the function runs on; AWS prices arm64 lower.
    architecture: str = "x86_64"
    # Set for invocations Lamina records (Active tracing, sampled): their spans' ids.
    trace: Trace | None = None


class InvocationObserver(Protocol):
    def invoked(self, record: InvocationRecord) -> None:
        """Called on the event loop once per finished invocation; must not block."""
        ...

    def throttled(self, function_name: str, version: str, alias: str | None) -> None:
        """Called when an invocation is refused with 429 by a concurrency limit."""
        ...


class NoObserver:
    def invoked(self, record: InvocationRecord) -> None:
        pass

    def throttled(self, function_name: str, version: str, alias: str | None) -> None:
        pass
