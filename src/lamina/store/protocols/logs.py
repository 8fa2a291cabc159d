"""CloudWatch Logs persistence: groups, streams and their events.

An event's position is `(timestamp, id)`, the id being a number the store gives events in the
order they are appended. Positions order a stream's and a group's events totally; paging
tokens carry them, so a page resumes exactly where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

DAY_MS = 86_400_000
GROUP_MISSING = "The specified log group does not exist."
STREAM_MISSING = "The specified log stream does not exist."
# A page stops at its limit or at about 1 MB, counting each event's UTF-8 message and this
# overhead, as CloudWatch Logs counts them.
MAX_PAGE_BYTES = 1024 * 1024
EVENT_OVERHEAD = 26

Position = tuple[int, int]
# Lines of one stream to append: (group, stream, [(timestamp_ms, message), ...]).
Batch = tuple[str, str, list[tuple[int, str]]]


def message_bytes(message: str) -> int:
    """A message's size as CloudWatch counts it: UTF-8 bytes."""
    # isascii() is O(1) in CPython: most lines skip the encode.
    return len(message) if message.isascii() else len(message.encode("utf-8", "replace"))


@dataclass(frozen=True)
class LogGroup:
    id: int
    name: str
    created_ms: int
    retention_days: int | None
    stored_bytes: int  # the UTF-8 bytes of the messages it holds


@dataclass(frozen=True)
class LogStream:
    id: int
    name: str
    created_ms: int
    first_event_ms: int | None
    last_event_ms: int | None
    last_ingestion_ms: int | None


@dataclass(frozen=True)
class LogEvent:
    id: int
    stream_id: int
    timestamp: int
    ingestion_time: int
    message: str

    @property
    def position(self) -> Position:
        return self.timestamp, self.id


class MessageFilter(Protocol):
    """A compiled filter pattern, as a search needs it.

    The substring tests are what a store can evaluate itself (in SQL); when `exact` is false
    they are only necessary, and `matches` decides for the messages that pass them.
    """

    @property
    def all_of(self) -> Sequence[str]:
        """Substrings every matching message contains."""
        ...

    @property
    def none_of(self) -> Sequence[str]:
        """Substrings no matching message contains."""
        ...

    @property
    def any_of(self) -> Sequence[str]:
        """Substrings of which a matching message contains one (no test when empty)."""
        ...

    @property
    def exact(self) -> bool:
        """True when the substring tests are the whole test."""
        ...

    def matches(self, message: str) -> bool: ...


class LogStore(Protocol):
    """Log groups, their streams and events; thread-safe.

    Missing groups and streams raise `ResourceNotFound` with `GROUP_MISSING` or
    `STREAM_MISSING`; creating one that exists raises `ResourceAlreadyExists`. Disk use is
    bounded: past its bound a store deletes the oldest events first.
    """

    def create_group(self, name: str) -> None: ...
    def delete_group(self, name: str) -> None:
        """The group with its streams and events."""
        ...

    def group(self, name: str) -> LogGroup: ...
    def groups(self, after: str | None, limit: int, prefix: str | None = None) -> list[LogGroup]:
        """Groups in name order after `after`, only those starting with `prefix` if given."""
        ...

    def set_retention(self, group: str, days: int | None) -> None:
        """Keep the group's events for `days` (None: forever); applied at once."""
        ...

    def apply_retention(self, now_ms: int | None = None) -> None:
        """Delete every event older than its group's retention period."""
        ...

    def create_stream(self, group: str, stream: str) -> None: ...
    def delete_stream(self, group: str, stream: str) -> None: ...
    def streams(self, group_id: int) -> list[LogStream]:
        """The group's streams in name order."""
        ...

    def stream(self, group_id: int, name: str) -> LogStream: ...

    def append(self, batches: Iterable[Batch], create: bool = True) -> int:
        """Store lines, in one transaction; returns the message bytes stored.

        With `create`, missing groups and streams are created, as Lambda does for a
        function's first output; otherwise they raise. Raises `StorageError` when the
        backend cannot take the write (a full disk): nothing of it was stored.
        """
        ...

    def read_stream(
        self,
        stream_id: int,
        start: int | None,
        end: int | None,
        position: Position | None,
        forward: bool,
        limit: int,
    ) -> list[LogEvent]:
        """A page of one stream's events with `start <= timestamp < end`, oldest first.

        Forward, the first events after `position` (from the start without one); backward,
        the last events before `position` (the newest without one). At most `limit` events
        and about `MAX_PAGE_BYTES`.
        """
        ...

    def filter_events(
        self,
        group_id: int,
        stream_ids: Sequence[int] | None,
        start: int | None,
        end: int | None,
        pattern: MessageFilter,
        after: Position | None,
        limit: int,
    ) -> tuple[list[LogEvent], bool]:
        """The group's matching events with `start <= timestamp <= end` after `after`, in
        position order across its streams (all of them, or those of `stream_ids`).

        A page holds at most `limit` events and about `MAX_PAGE_BYTES`; True if more may follow.
        """
        ...

    def close(self) -> None: ...
