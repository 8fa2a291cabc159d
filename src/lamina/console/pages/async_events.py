"""The Async events tab: the function's queued, retrying, in-flight and failed events (as
`lamina events` shows them), and redriving one failed event or all of them."""

from __future__ import annotations

import time

import anyio.to_thread
from starlette.responses import Response

from lamina.console.api_calls import ApiError
from lamina.console.authorization import INVOKE_FUNCTION, READ_FUNCTION
from lamina.console.pages.function import function_name, get_function, render_tab
from lamina.console.web import Visit
from lamina.errors import LaminaError
from lamina.store.protocols.queue import EVENT_STATES

_LIMIT = 200
_PREVIEW = 300


async def show(visit: Visit) -> Response:
    name = function_name(visit)
    function = await get_function(visit, name)
    visit.check(READ_FUNCTION, name)
    queue = visit.console.deps.queue

    def read() -> tuple[dict[str, int], list[dict[str, object]]]:
        counts = queue.counts(name).get(name, {})
        now = time.time()
        rows: list[dict[str, object]] = [
            {
                "id": event.event_id,
                "state": "retrying" if event.retrying else event.state,
                "qualifier": event.qualifier or "$LATEST",
                "attempts": event.attempts,
                "age_s": round(now - event.enqueued_at, 1),
                "next_s": round(max(0.0, event.next_attempt_at - now), 1),
                "error": event.last_error or "",
                "payload": event.payload[:_PREVIEW].decode("utf-8", errors="replace"),
            }
            for event in queue.events(name, _LIMIT)
        ]
        return counts, rows

    counts, rows = await anyio.to_thread.run_sync(read)
    return render_tab(
        visit,
        "async",
        function,
        counts={state: counts.get(state, 0) for state in EVENT_STATES},
        rows=rows,
    )


async def redrive(visit: Visit) -> Response:
    name = function_name(visit)
    visit.check(INVOKE_FUNCTION, name)
    event_id = visit.form.get("event_id") or None
    try:
        redriven = await visit.console.deps.redrive(name, event_id)
    except LaminaError as error:
        raise ApiError(error.code, error.message, error.status) from error
    if not redriven:
        message = "No failed events to redrive."
    elif len(redriven) == 1:
        message = f"Redrove event {redriven[0]}: it is queued again."
    else:
        message = f"Redrove {len(redriven)} events: they are queued again."
    return visit.redirect(f"/functions/{name}/async", message)
