"""Reading events back: GetLogEvents' stream pages and FilterLogEvents' group searches.

A position is an event's (timestamp, id): the store orders events by it, and tokens carry it
as `f/<56 digits>` (events after it) or `b/<56 digits>` (events before it), the shape of
CloudWatch Logs' tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from lamina.errors import InvalidParameter
from lamina.store.protocols.logs import LogEvent, LogStore, MessageFilter, Position

_DIGITS = 28
ORIGIN = (0, 0)


def encode_position(position: Position) -> str:
    timestamp, row = position
    return f"{timestamp:0{_DIGITS}d}{row:0{_DIGITS}d}"


def event_id(event: LogEvent) -> str:
    """FilterLogEvents' `eventId`: the event's position, so it is unique and sorts in order."""
    return encode_position(event.position)


def token(direction: str, position: Position) -> str:
    return f"{direction}/{encode_position(position)}"


def parse_token(text: str, directions: str = "fb") -> tuple[str, Position]:
    direction, _, digits = text.partition("/")
    if direction not in directions or len(digits) != 2 * _DIGITS or not digits.isdigit():
        raise InvalidParameter("The specified nextToken is invalid.")
    return direction, (int(digits[:_DIGITS]), int(digits[_DIGITS:]))


def stream_page(
    store: LogStore,
    stream_id: int,
    start: int | None,
    end: int | None,
    next_token: str | None,
    limit: int,
    from_head: bool,
) -> tuple[list[LogEvent], str, str]:
    """GetLogEvents: a page of one stream and its forward and backward tokens.

    At either end of the stream the token passed in comes back unchanged, as AWS does, so
    a client polling with the forward token sees new events as they arrive.
    """
    direction, position = parse_token(next_token) if next_token else ("", ORIGIN)
    forward = direction == "f" or (not direction and from_head)
    page = store.read_stream(stream_id, start, end, position if direction else None, forward, limit)
    if page:
        return page, token("f", page[-1].position), token("b", page[0].position)
    # At an end of the stream: the token passed in comes back as it was.
    forward_token = next_token if direction == "f" else token("f", position)
    backward_token = next_token if direction == "b" else token("b", position)
    assert forward_token is not None and backward_token is not None
    return [], forward_token, backward_token


def search(
    store: LogStore,
    group_id: int,
    stream_ids: Sequence[int] | None,
    start: int | None,
    end: int | None,
    pattern: MessageFilter,
    next_token: str | None,
    limit: int,
) -> tuple[list[LogEvent], str | None]:
    """FilterLogEvents: matching events of a group in time order, and the token to the next
    page if more may follow."""
    after = parse_token(next_token, "f")[1] if next_token else None
    events, more = store.filter_events(group_id, stream_ids, start, end, pattern, after, limit)
    return events, token("f", events[-1].position) if more and events else None
