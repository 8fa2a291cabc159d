"""Reading events back: GetLogEvents' stream pages and FilterLogEvents' group searches.

A position is an event's (timestamp, id): events are ordered by it, and tokens carry it as
`f/<56 digits>` (events after it) or `b/<56 digits>` (events before it), the shape of
CloudWatch Logs' tokens. A page stops at `limit` events or about 1 MB, as AWS's do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from lamina.errors import InvalidParameter
from lamina.observability.filter_pattern import FilterPattern
from lamina.observability.log_store import message_bytes

MAX_PAGE_BYTES = 1024 * 1024
_DIGITS = 28
ORIGIN = (0, 0)


@dataclass(frozen=True)
class Event:
    id: int
    stream_id: int
    timestamp: int
    ingestion_time: int
    message: str

    @property
    def position(self) -> tuple[int, int]:
        return self.timestamp, self.id

    @property
    def event_id(self) -> str:
        return encode_position(self.position)


def encode_position(position: tuple[int, int]) -> str:
    timestamp, row = position
    return f"{timestamp:0{_DIGITS}d}{row:0{_DIGITS}d}"


def token(direction: str, position: tuple[int, int]) -> str:
    return f"{direction}/{encode_position(position)}"


def parse_token(text: str, directions: str = "fb") -> tuple[str, tuple[int, int]]:
    direction, _, digits = text.partition("/")
    if direction not in directions or len(digits) != 2 * _DIGITS or not digits.isdigit():
        raise InvalidParameter("The specified nextToken is invalid.")
    return direction, (int(digits[:_DIGITS]), int(digits[_DIGITS:]))


def _events(rows: Iterator[Any]) -> Iterator[Event]:
    for row in rows:
        yield Event(*row)


def _page(events: Iterator[Event], limit: int) -> tuple[list[Event], bool]:
    """Up to `limit` events and about 1 MB; True if events were left over."""
    page: list[Event] = []
    size = 0
    for event in events:
        size += message_bytes(event.message) + 26
        if len(page) >= limit or (page and size > MAX_PAGE_BYTES):
            return page, True
        page.append(event)
    return page, False


_COLUMNS = "id, stream_id, ts, ingested_ms, message"


def stream_page(
    db: sqlite3.Connection,
    stream_id: int,
    start: int | None,
    end: int | None,
    next_token: str | None,
    limit: int,
    from_head: bool,
) -> tuple[list[Event], str, str]:
    """GetLogEvents: a page of one stream and its forward and backward tokens.

    At either end of the stream the token passed in comes back unchanged, as AWS does, so
    a client polling with the forward token sees new events as they arrive.
    """
    clauses, params = ["stream_id = ?"], [stream_id]
    if start is not None:
        clauses.append("ts >= ?")
        params.append(start)
    if end is not None:
        clauses.append("ts < ?")
        params.append(end)
    direction, position = parse_token(next_token) if next_token else ("", ORIGIN)
    forward = direction == "f" or (not direction and from_head)
    if direction:
        clauses.append("(ts, id) > (?, ?)" if forward else "(ts, id) < (?, ?)")
        params += list(position)
    order = "ts, id" if forward else "ts DESC, id DESC"
    with closing(
        db.execute(
            f"SELECT {_COLUMNS} FROM log_events WHERE {' AND '.join(clauses)} ORDER BY {order}",
            params,
        )
    ) as rows:
        page, _ = _page(_events(rows), limit)
    if not forward:
        page.reverse()
    if page:
        return page, token("f", page[-1].position), token("b", page[0].position)
    # At an end of the stream: the token passed in comes back as it was.
    forward_token = next_token if direction == "f" else token("f", position)
    backward_token = next_token if direction == "b" else token("b", position)
    assert forward_token is not None and backward_token is not None
    return [], forward_token, backward_token


def search(
    db: sqlite3.Connection,
    group_id: int,
    stream_ids: list[int] | None,
    start: int | None,
    end: int | None,
    pattern: FilterPattern,
    after: tuple[int, int] | None,
    limit: int,
) -> tuple[list[Event], bool]:
    """FilterLogEvents: matching events of a group in time order; True if more may follow."""
    clauses: list[str] = ["group_id = ?"]
    params: list[Any] = [group_id]
    if stream_ids is not None:
        clauses.append(f"stream_id IN ({', '.join('?' for _ in stream_ids)})")
        params += stream_ids
    if start is not None:
        clauses.append("ts >= ?")
        params.append(start)
    if end is not None:
        clauses.append("ts <= ?")
        params.append(end)
    if after is not None:
        clauses.append("(ts, id) > (?, ?)")
        params += list(after)
    condition, values = pattern.sql
    if condition:
        clauses.append(condition)
        params += values
    # Closed at once: a half-read statement would hold a read snapshot, which keeps the WAL
    # from being checkpointed.
    with closing(
        db.execute(
            f"SELECT {_COLUMNS} FROM log_events WHERE {' AND '.join(clauses)} ORDER BY ts, id",
            params,
        )
    ) as rows:
        events = _events(rows)
        if not pattern.exact_in_sql:
            events = (event for event in events if pattern.matches(event.message))
        return _page(events, limit)
