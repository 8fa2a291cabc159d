"""The contract between the supervisor and one mapping's poller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PollerStatus:
    """What `lamina mappings` shows of a running poller."""

    # How far behind the source the poller is: messages visible in the queue (SQS, MQ) or
    # the iterator age in milliseconds (streams); None while unknown.
    lag: float | None = None
    lag_unit: str = "messages"  # "messages" or "milliseconds"
    # Invocations that failed (function errors, throttles, platform errors) since start.
    errors: int = 0
    # The last problem met reading the source or invoking (None when none so far).
    last_error: str | None = None


class EventSourcePoller(Protocol):
    """Polls one mapping's source until stopped. Built per mapping version: an update stops
    the poller and starts a new one with the new settings."""

    async def run(self) -> None:
        """Poll and invoke until `stop()`; return once the batches in flight are settled.

        Must not raise for source or invocation problems (record them and back off); the
        supervisor restarts a poller whose `run` raised anyway, after a pause.
        """
        ...

    def stop(self) -> None:
        """Ask `run` to return: take no new batches, finish (or abandon safely) the current."""
        ...

    def status(self) -> PollerStatus: ...
