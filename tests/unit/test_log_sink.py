"""The engine's sink: batching into the store, the per-invocation budget, a full disk."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from lamina.observability.log_sink import StoreLogSink, truncation_marker
from lamina.store.errors import StorageError
from lamina.store.protocols.logs import Batch, LogStore
from lamina.store.sqlite.logs import SqliteLogStore

GROUP, STREAM = "/aws/lambda/fn", "2024/01/01/[$LATEST]" + "c" * 32
MB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    instance = SqliteLogStore(tmp_path / "logs.db", 256 * MB)
    yield instance
    instance.close()


def messages(store: LogStore) -> list[str]:
    group = store.group(GROUP)
    stream = store.stream(group.id, STREAM)
    events = store.read_stream(stream.id, None, None, None, True, 10_000)
    return [event.message for event in events]


def test_lines_are_stored_in_order_and_flush_waits_for_them(store: LogStore) -> None:
    sink = StoreLogSink(store)
    sink.write_platform(GROUP, STREAM, 1, "START RequestId: r Version: $LATEST")
    for n in range(50):
        sink.write_many(GROUP, STREAM, [(2, f"line {n}a"), (2, f"line {n}b")])
    sink.write_platform(GROUP, STREAM, 3, None)  # filtered by the system level: not stored
    assert sink.flush()
    stored = messages(store)
    assert stored[0].startswith("START") and stored[-1] == "line 49b" and len(stored) == 101
    sink.close()


def test_an_invocation_over_its_budget_is_cut_with_one_marker(store: LogStore) -> None:
    sink = StoreLogSink(store, max_invocation_bytes=1 * MB)
    line = "y" * 1000
    sink.write_platform(GROUP, STREAM, 1, "START RequestId: one Version: $LATEST")
    for _ in range(3000):  # about 3 MB
        sink.write_many(GROUP, STREAM, [(2, line)])
    sink.write_platform(GROUP, STREAM, 3, "END RequestId: one")
    sink.write_platform(GROUP, STREAM, 4, "START RequestId: two Version: $LATEST")
    sink.write_many(GROUP, STREAM, [(5, "the next invocation logs again")])
    assert sink.flush()
    stored = messages(store)
    marker = stored.index(truncation_marker(1 * MB))
    assert 900 < marker < 1000  # about 1 MB of lines made it, counted with their overhead
    assert stored[marker + 1 :] == [
        "END RequestId: one",
        "START RequestId: two Version: $LATEST",
        "the next invocation logs again",
    ]
    sink.close()


def test_saturated_while_too_much_waits_to_be_written(store: LogStore) -> None:
    sink = StoreLogSink(store, max_pending_bytes=64 * 1024)
    sink.close()  # no writer: everything stays pending
    sink.write_many(GROUP, STREAM, [(1, "z" * 70_000)])
    assert sink.saturated


class FullDisk(SqliteLogStore):
    """Refuses appends while `full`, as a store does when the disk has no space left."""

    full = True

    def append(self, batches: Iterable[Batch], create: bool = True) -> int:
        if self.full:
            raise StorageError("database or disk is full")
        return super().append(batches, create)


def test_lines_lost_to_a_full_disk_are_reported_once_space_returns(tmp_path: Path) -> None:
    store = FullDisk(tmp_path / "logs.db", 256 * MB)
    sink = StoreLogSink(store)
    sink.write_many(GROUP, STREAM, [(1, "lost one"), (1, "lost two")])
    assert sink.flush()
    sink.write_many(GROUP, STREAM, [(1, "lost three")])
    assert sink.flush()
    store.full = False
    sink.write_many(GROUP, STREAM, [(2, "kept")])
    assert sink.flush()
    # The marker carries the time it was written, after the line stamped 2.
    assert messages(store) == ["kept", "[lamina] 3 log lines were dropped: the disk was full"]
    sink.close()
    store.close()
