"""What happens to an execution environment, told to whoever listens.

An environment emits these events and formats nothing itself: the platform log (INIT_START,
START, END and REPORT, as text or JSON records) is one listener, built for each environment
by whoever creates it. Events are emitted synchronously, at the point they describe, so a
listener that writes to the environment's output keeps AWS's line order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lamina.sandbox.output import EnvironmentOutput


@dataclass(frozen=True, slots=True)
class InitStarted:
    """The runtime is being started (before the sandbox exists)."""

    runtime: str  # the function's runtime identifier, e.g. "python3.12"
    interpreter: str  # the executable that runs it


@dataclass(frozen=True, slots=True)
class InitReported:
    """A SnapStart version's init is over (at publish): INIT_REPORT in its snapshot's stream."""

    init_ms: float
    # "error" or "timeout" when the init failed, with the error type.
    status: str | None = None
    error_type: str | None = None


@dataclass(frozen=True, slots=True)
class RestoreStarted:
    """An environment is being restored from its version's snapshot (SnapStart)."""

    runtime: str
    interpreter: str


@dataclass(frozen=True, slots=True)
class RestoreReported:
    """The restore is over: the runtime is loaded and the after-restore hooks have run."""

    restore_ms: float


@dataclass(frozen=True, slots=True)
class InvokeStarted:
    request_id: str
    version: str


@dataclass(frozen=True, slots=True)
class InvokeEnded:
    """An invocation finished, however it ended; carries what REPORT says."""

    request_id: str
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_mb: int
    # Only on the first invocation of an environment whose init is reported.
    init_ms: float | None
    # "timeout", "error" (crash, out of memory) or None when the runtime answered.
    status: str | None
    error_type: str | None
    # (trace id, segment id) of an invocation the platform traces.
    xray: tuple[str, str] | None
    # Only on the first invocation of an environment restored from a snapshot (SnapStart):
    # REPORT's `Restore Duration` and `Billed Restore Duration`.
    restore_ms: float | None = None
    billed_restore_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ShutDown:
    """The environment is gone: destroyed after a failure, reaped, or closed."""

    environment_id: str


EnvironmentEvent = (
    InitStarted
    | InitReported
    | RestoreStarted
    | RestoreReported
    | InvokeStarted
    | InvokeEnded
    | ShutDown
)


class EnvironmentListener(Protocol):
    """Receives one environment's events, with its output to write platform lines to."""

    def environment_event(self, event: EnvironmentEvent, output: EnvironmentOutput) -> None: ...


class Unheard:
    """A listener that does nothing: an environment nobody reports on."""

    def environment_event(self, event: EnvironmentEvent, output: EnvironmentOutput) -> None:
        pass
