"""The seam through which the engine reports each finished or refused invocation.

Metrics, billing and `lamina top` subscribe here instead of reaching into the engine, so
the invoke path pays for one small record and one call, whatever is listening.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lamina.invoke.tracing import Trace
    from lamina.model.functions import LoggingConfig
    from lamina.sandbox.lifecycle import EnvironmentListener
    from lamina.sandbox.log_sink import LogSink


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


class EnvironmentLogging(Protocol):
    """Chooses, for a new environment, the sink its output goes to and the listener that
    writes its platform lines (observability provides it; the engine only calls it)."""

    def __call__(
        self,
        sink: LogSink,
        logging: LoggingConfig,
        function_name: str,
        version: str,
        initialization_type: str,
    ) -> tuple[LogSink, EnvironmentListener]: ...


class LevelObserver(Protocol):
    """Told of every change to the engine's levels, as it happens, so that gauges
    (concurrent executions, warm environments, provisioned utilisation) are kept by their
    consumer rather than read out of the engine. Called on the event loop; must not block."""

    def admitted(self, function_name: str, unreserved: bool) -> None:
        """An invocation took a concurrency slot (`unreserved`: from the shared pool)."""
        ...

    def released(self, function_name: str, unreserved: bool) -> None:
        """That slot was given back."""
        ...

    def environment_started(self, function_name: str) -> None:
        """An on-demand environment began its init (it counts until it stops)."""
        ...

    def environment_stopped(self, function_name: str) -> None: ...

    def provisioned_changed(self, function_name: str, qualifier: str, busy: int, held: int) -> None:
        """A provisioned config now holds `held` environments, `busy` of them invoking;
        (0, 0) once it is no longer provisioned."""
        ...


class NoLevels:
    def admitted(self, function_name: str, unreserved: bool) -> None:
        pass

    def released(self, function_name: str, unreserved: bool) -> None:
        pass

    def environment_started(self, function_name: str) -> None:
        pass

    def environment_stopped(self, function_name: str) -> None:
        pass

    def provisioned_changed(self, function_name: str, qualifier: str, busy: int, held: int) -> None:
        pass
