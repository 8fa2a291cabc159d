"""Redrive: failed asynchronous events go back to the queue for a new cycle of attempts.

A redriven event keeps its request id (what the caller was given, and what its logs and
earlier failure are filed under) and starts afresh: due at once, its age counted from the
redrive, no retries used, so the function's current MaximumEventAgeInSeconds and
MaximumRetryAttempts apply to it as to a new event. Only failed events move, in one
conditional update, so an event is never lost (it is either still failed or queued) and
never duplicated (it stays one row; a redrive racing another finds it no longer failed).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from lamina.errors import ResourceNotFound
from lamina.invoke.asynchronous.writer import QueueWriter


class FailedEventNotFound(ResourceNotFound):
    """No failed event of the function has that id (never had, or already redriven)."""

    def __init__(self, function: str, event_id: str) -> None:
        super().__init__(f"Function {function} has no failed asynchronous event {event_id}.")


async def redrive(
    writer: QueueWriter, clock: Callable[[], float], function: str, event_id: str | None
) -> list[str]:
    """Redrive one failed event of `function` (`event_id`) or all of them; returns the ids
    moved. One named event that is not failed raises FailedEventNotFound."""
    moved = await writer.submit(partial(writer.queue.redrive, function, event_id, clock()))
    if event_id is not None and not moved:
        raise FailedEventNotFound(function, event_id)
    return moved
