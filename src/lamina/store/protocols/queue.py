"""The durable queue behind asynchronous invocation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from lamina.store.protocols.transactional import Transactional


@dataclass(frozen=True)
class AsyncEvent:
    """One accepted asynchronous event, as the durable queue holds it."""

    event_id: str  # the request id the caller saw; kept across retries, as on AWS
    function: str
    qualifier: str | None
    payload: bytes
    enqueued_at: float  # epoch seconds
    next_attempt_at: float
    state: str = "queued"  # queued, in_flight or failed (see EVENT_STATES)
    attempts: int = 0  # invocations that ended in a function error
    requeues: int = 0  # throttles, platform and delivery errors since the last phase change
    hops: int = 0  # destinations between this event and the caller's (recursion guard)
    last_error: str | None = None
    # Set once the outcome is known and sends to destinations/DLQ remain (JSON list).
    deliveries: bytes | None = None

    @property
    def retrying(self) -> bool:
        return self.state == "queued" and bool(
            self.attempts or self.requeues or self.deliveries is not None
        )


# What `lamina events` shows: a queued event that has been tried before is "retrying".
EVENT_STATES = ("queued", "retrying", "in_flight", "failed")


class AsyncQueue(Transactional, Protocol):
    """The durable queue behind asynchronous invocation: append, lease, settle.

    Every method commits before it returns unless it runs inside `transaction()`, which
    callers use to settle one event and enqueue another atomically, or to group-commit.
    """

    def enqueue(self, events: Sequence[AsyncEvent]) -> None: ...

    def claim(self, owner: str, now: float, limit: int, lease_s: float) -> list[AsyncEvent]:
        """Lease up to `limit` events due by `now` to `owner`, oldest due first."""
        ...

    def renew(self, owner: str, until: float) -> int:
        """Extend every lease `owner` holds; returns how many it holds."""
        ...

    def complete(self, event_id: str, owner: str) -> None:
        """The event reached its end (success, destination or DLQ): forget it."""
        ...

    def retry(
        self,
        event_id: str,
        owner: str,
        next_attempt_at: float,
        attempts: int,
        requeues: int,
        last_error: str | None,
        deliveries: bytes | None = None,
    ) -> None:
        """Give the event back to the queue, due again at `next_attempt_at`."""
        ...

    def fail(self, event_id: str, owner: str, reason: str) -> None:
        """Terminal: nothing more can be done; kept (state failed) so people can see it."""
        ...

    def release(self, owner: str) -> int:
        """Hand back every event `owner` holds, due now (a clean shutdown)."""
        ...

    def recover(self, now: float) -> int:
        """Hand back events whose lease expired (their holder crashed); returns how many."""
        ...

    def counts(self, function: str | None = None) -> dict[str, dict[str, int]]:
        """function -> {state: count} over EVENT_STATES."""
        ...

    def events(self, function: str, limit: int = 50) -> list[AsyncEvent]:
        """The function's events, failed ones first, then by when they are due."""
        ...

    def redrive(self, function: str, event_id: str | None, now: float) -> list[str]:
        """Put the function's failed events (all, or the one with `event_id`) back on the
        queue as if accepted at `now`: due at once, no attempts used, nothing owed. Returns
        the ids moved; an event no longer failed is left alone, so of two racing redrives
        only one moves it."""
        ...
