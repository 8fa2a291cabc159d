"""The recursion guard: records a destination sends to a Lamina function count their hops.

A function whose OnSuccess or OnFailure destination leads back to itself, directly or
through others, would run forever. Each record sent to a Lamina function becomes a new
event one hop further from the caller's; with RecursiveLoop=Terminate the chain stops at
`MAX_HOPS`.
"""

from __future__ import annotations

import uuid

from lamina.store.protocols import AsyncEvent

# RecursiveLoop=Terminate stops a chain of destination invocations after this many.
MAX_HOPS = 16
TERMINATE = "Terminate"


def loop_detected(event: AsyncEvent, recursive_loop: str) -> bool:
    """Whether `event` is too deep in a destination chain to run under `recursive_loop`."""
    return event.hops >= MAX_HOPS and recursive_loop == TERMINATE


def next_hop(
    cause: AsyncEvent, function: str, qualifier: str | None, body: str, now: float
) -> AsyncEvent:
    """The event a record for `function` becomes: new, due now, one hop past its cause."""
    return AsyncEvent(
        event_id=str(uuid.uuid4()),
        function=function,
        qualifier=qualifier,
        payload=body.encode(),
        enqueued_at=now,
        next_attempt_at=now,
        hops=cause.hops + 1,
    )
