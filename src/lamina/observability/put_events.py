"""PutLogEvents' rules for a batch, as CloudWatch Logs applies them.

A batch is refused whole (InvalidParameterException) when it is over 1,048,576 bytes (each
event's UTF-8 message plus 26 bytes), out of time order, or when its acceptable events span
more than 24 hours. Events more than 2 hours ahead, more than 14 days old, or older than the
group's retention are skipped one by one and reported in `rejectedLogEventsInfo`.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from lamina.errors import InvalidParameter
from lamina.store.protocols.logs import DAY_MS, EVENT_OVERHEAD, message_bytes

MAX_BATCH_BYTES = 1_048_576
_HOUR_MS = 3_600_000
_TOO_NEW_MS = 2 * _HOUR_MS
_TOO_OLD_MS = 14 * DAY_MS
_SPAN_MS = 24 * _HOUR_MS


def check_batch(
    events: list[dict[str, Any]], now: int, retention_start: int | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The events to store, and the `rejectedLogEventsInfo` members (empty if none)."""
    size = sum(message_bytes(event["message"]) + EVENT_OVERHEAD for event in events)
    if size > MAX_BATCH_BYTES:
        raise InvalidParameter(f"Upload too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}")
    stamps = [event["timestamp"] for event in events]
    if any(later < earlier for earlier, later in pairwise(stamps)):
        raise InvalidParameter(
            "Log events in a single PutLogEvents request must be in chronological order."
        )
    rejected: dict[str, int] = {}
    accepted: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        stamp = event["timestamp"]
        if stamp > now + _TOO_NEW_MS:
            rejected.setdefault("tooNewLogEventStartIndex", index)
        elif stamp < now - _TOO_OLD_MS:
            rejected["tooOldLogEventEndIndex"] = index
        elif retention_start is not None and stamp < retention_start:
            rejected["expiredLogEventEndIndex"] = index
        else:
            accepted.append(event)
    if accepted and accepted[-1]["timestamp"] - accepted[0]["timestamp"] > _SPAN_MS:
        raise InvalidParameter(
            "The batch of log events in a single PutLogEvents request cannot span more than "
            "24 hours."
        )
    return accepted, rejected
