"""The LogStore contract: groups and streams, appends and their counters, stream pages in both
directions, group searches, retention, deletion, the disk bound and concurrent writers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from lamina.errors import ResourceAlreadyExists, ResourceNotFound
from lamina.store.protocols.logs import (
    DAY_MS,
    GROUP_MISSING,
    MAX_PAGE_BYTES,
    STREAM_MISSING,
    LogEvent,
    LogStore,
)
from tests.support.backends import Backend

GROUP = "/aws/lambda/fn"
STREAM = "2024/01/01/[$LATEST]" + "a" * 32
OTHER = "2024/01/01/[$LATEST]" + "b" * 32


@pytest.fixture
def logs(store_backend: Backend) -> LogStore:
    return store_backend.logs()


@dataclass(frozen=True)
class Terms:
    """A filter as the pattern compiler hands it over: substrings, then maybe a test."""

    all_of: tuple[str, ...] = ()
    none_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    exact: bool = True
    test: Callable[[str], bool] = field(default=lambda message: True)

    def matches(self, message: str) -> bool:
        return (
            all(term in message for term in self.all_of)
            and not any(term in message for term in self.none_of)
            and (not self.any_of or any(term in message for term in self.any_of))
            and self.test(message)
        )


EVERYTHING = Terms()


def fill(logs: LogStore, count: int, stream: str = STREAM, base: int = 1_000_000) -> None:
    logs.append([(GROUP, stream, [(base + i, f"line {i}") for i in range(count)])])


def stream_id(logs: LogStore, name: str = STREAM, group: str = GROUP) -> int:
    return logs.stream(logs.group(group).id, name).id


def messages(events: list[LogEvent]) -> list[str]:
    return [event.message for event in events]


def read(
    logs: LogStore,
    *,
    position: tuple[int, int] | None = None,
    forward: bool = True,
    start: int | None = None,
    end: int | None = None,
    limit: int = 10_000,
) -> list[LogEvent]:
    return logs.read_stream(stream_id(logs), start, end, position, forward, limit)


# ---------------------------------------------------------------- groups and streams


def test_groups_and_streams_are_created_on_first_output(logs: LogStore) -> None:
    before = int(time.time() * 1000)
    stored = logs.append([(GROUP, STREAM, [(1_000_002, "late"), (1_000_000, "first")])])
    after = int(time.time() * 1000)
    group = logs.group(GROUP)
    assert (group.name, group.retention_days, group.stored_bytes, stored) == (GROUP, None, 9, 9)
    assert before <= group.created_ms <= after
    (stream,) = logs.streams(group.id)
    assert stream.name == STREAM and before <= stream.created_ms <= after
    assert (stream.first_event_ms, stream.last_event_ms) == (1_000_000, 1_000_002)
    assert stream.last_ingestion_ms is not None and before <= stream.last_ingestion_ms <= after
    assert logs.stream(group.id, STREAM) == stream


def test_stored_bytes_count_utf8(logs: LogStore) -> None:
    logs.append([(GROUP, STREAM, [(1, "é"), (2, "日本"), (3, "a")])])
    assert logs.group(GROUP).stored_bytes == 2 + 6 + 1


def test_an_empty_batch_creates_and_stores_nothing(logs: LogStore) -> None:
    assert logs.append([(GROUP, STREAM, [])]) == 0
    assert logs.groups(None, 10) == []


def test_create_and_delete_errors(logs: LogStore) -> None:
    logs.create_group("/custom")
    with pytest.raises(ResourceAlreadyExists, match="log group already exists"):
        logs.create_group("/custom")
    logs.create_stream("/custom", "s")
    with pytest.raises(ResourceAlreadyExists, match="log stream already exists"):
        logs.create_stream("/custom", "s")
    with pytest.raises(ResourceNotFound, match=GROUP_MISSING):
        logs.create_stream("/missing", "s")
    with pytest.raises(ResourceNotFound, match=GROUP_MISSING):
        logs.delete_group("/missing")
    with pytest.raises(ResourceNotFound, match=GROUP_MISSING):
        logs.group("/missing")
    with pytest.raises(ResourceNotFound, match=GROUP_MISSING):
        logs.set_retention("/missing", 1)
    with pytest.raises(ResourceNotFound, match=STREAM_MISSING):
        logs.delete_stream("/custom", "missing")
    with pytest.raises(ResourceNotFound, match=STREAM_MISSING):
        logs.stream(logs.group("/custom").id, "missing")


def test_appending_without_create_needs_the_stream(logs: LogStore) -> None:
    with pytest.raises(ResourceNotFound, match=GROUP_MISSING):
        logs.append([("/custom", "s", [(1, "x")])], create=False)
    logs.create_group("/custom")
    with pytest.raises(ResourceNotFound, match=STREAM_MISSING):
        logs.append([("/custom", "s", [(1, "x")])], create=False)
    logs.create_stream("/custom", "s")
    assert logs.append([("/custom", "s", [(1, "x")])], create=False) == 1
    assert logs.group("/custom").stored_bytes == 1


def test_groups_page_by_name_and_prefix(logs: LogStore) -> None:
    for name in ["/b/2", "/a/1", "/b/1", "/c", "/a/2"]:
        logs.create_group(name)
    assert [g.name for g in logs.groups(None, 10)] == ["/a/1", "/a/2", "/b/1", "/b/2", "/c"]
    assert [g.name for g in logs.groups(None, 2)] == ["/a/1", "/a/2"]
    assert [g.name for g in logs.groups("/a/2", 2)] == ["/b/1", "/b/2"]
    assert [g.name for g in logs.groups(None, 10, "/b/")] == ["/b/1", "/b/2"]
    assert [g.name for g in logs.groups("/b/1", 10, "/b/")] == ["/b/2"]
    assert logs.groups(None, 10, "/z") == []


def test_streams_are_listed_by_name_per_group(logs: LogStore) -> None:
    logs.append([(GROUP, OTHER, [(1, "x")]), (GROUP, STREAM, [(1, "y")]), ("/g2", "s", [(1, "z")])])
    assert [s.name for s in logs.streams(logs.group(GROUP).id)] == [STREAM, OTHER]
    assert [s.name for s in logs.streams(logs.group("/g2").id)] == ["s"]


# ---------------------------------------------------------------------- stream pages


def test_forward_pages_resume_after_the_last_position(logs: LogStore) -> None:
    fill(logs, 5)
    first = read(logs, limit=2)
    assert messages(first) == ["line 0", "line 1"]
    second = read(logs, position=first[-1].position, limit=2)
    third = read(logs, position=second[-1].position, limit=2)
    assert (messages(second), messages(third)) == (["line 2", "line 3"], ["line 4"])
    assert read(logs, position=third[-1].position) == []
    # New events appear to a reader holding the last position.
    logs.append([(GROUP, STREAM, [(2_000_000, "late")])])
    assert messages(read(logs, position=third[-1].position)) == ["late"]


def test_backward_pages_start_at_the_newest_and_come_oldest_first(logs: LogStore) -> None:
    fill(logs, 5)
    newest = read(logs, forward=False, limit=2)
    assert messages(newest) == ["line 3", "line 4"]
    older = read(logs, position=newest[0].position, forward=False, limit=2)
    oldest = read(logs, position=older[0].position, forward=False, limit=2)
    assert (messages(older), messages(oldest)) == (["line 1", "line 2"], ["line 0"])
    assert read(logs, position=oldest[0].position, forward=False) == []


def test_events_with_one_timestamp_keep_their_append_order(logs: LogStore) -> None:
    logs.append([(GROUP, STREAM, [(5, "a"), (5, "b")])])
    logs.append([(GROUP, STREAM, [(5, "c"), (4, "earlier")])])
    assert messages(read(logs)) == ["earlier", "a", "b", "c"]
    first = read(logs, limit=2)
    assert messages(read(logs, position=first[-1].position)) == ["b", "c"]
    events = read(logs)
    assert len({event.position for event in events}) == 4
    assert [event.position for event in events] == sorted(event.position for event in events)


def test_a_time_range_includes_its_start_and_excludes_its_end(logs: LogStore) -> None:
    fill(logs, 5)
    assert messages(read(logs, start=1_000_001, end=1_000_003)) == ["line 1", "line 2"]
    assert messages(read(logs, start=1_000_003, forward=False)) == ["line 3", "line 4"]


def test_a_page_stops_at_about_a_megabyte(logs: LogStore) -> None:
    big = "x" * (MAX_PAGE_BYTES // 3)
    logs.append([(GROUP, STREAM, [(n, f"{n}{big}") for n in range(5)])])
    first = read(logs)
    assert [event.message[0] for event in first] == ["0", "1"]
    assert [event.message[0] for event in read(logs, position=first[-1].position)] == ["2", "3"]
    # One event larger than the bound still makes a page on its own.
    logs.append([(GROUP, OTHER, [(1, "y" * (MAX_PAGE_BYTES + 10))])])
    (alone,) = logs.read_stream(stream_id(logs, OTHER), None, None, None, True, 10)
    assert len(alone.message) == MAX_PAGE_BYTES + 10


def test_events_carry_their_stream_and_ingestion_time(logs: LogStore) -> None:
    before = int(time.time() * 1000)
    fill(logs, 1)
    (event,) = read(logs)
    assert (event.stream_id, event.timestamp) == (stream_id(logs), 1_000_000)
    assert before <= event.ingestion_time <= int(time.time() * 1000)


# -------------------------------------------------------------------- group searches


def search(
    logs: LogStore,
    pattern: Terms = EVERYTHING,
    *,
    streams: list[str] | None = None,
    start: int | None = None,
    end: int | None = None,
    after: tuple[int, int] | None = None,
    limit: int = 100,
) -> tuple[list[str], bool]:
    group = logs.group(GROUP)
    ids = None if streams is None else [logs.stream(group.id, name).id for name in streams]
    events, more = logs.filter_events(group.id, ids, start, end, pattern, after, limit)
    return messages(events), more


@pytest.fixture
def two_streams(logs: LogStore) -> LogStore:
    logs.append([(GROUP, STREAM, [(10, "ERROR a"), (30, "INFO b")])])
    logs.append([(GROUP, OTHER, [(20, "ERROR c"), (40, "ERROR d WARN")])])
    logs.append([("/elsewhere", STREAM, [(15, "ERROR elsewhere")])])
    return logs


def test_search_orders_every_stream_of_the_group_by_time(two_streams: LogStore) -> None:
    assert search(two_streams) == (["ERROR a", "ERROR c", "INFO b", "ERROR d WARN"], False)
    assert search(two_streams, streams=[OTHER]) == (["ERROR c", "ERROR d WARN"], False)
    assert search(two_streams, streams=[]) == ([], False)


def test_search_time_range_includes_both_ends(two_streams: LogStore) -> None:
    assert search(two_streams, start=20, end=40) == (["ERROR c", "INFO b", "ERROR d WARN"], False)


def test_search_pages_by_position(two_streams: LogStore) -> None:
    group = two_streams.group(GROUP)
    first, more = two_streams.filter_events(
        group.id, None, None, None, Terms(all_of=("ERROR",)), None, 2
    )
    assert (messages(first), more) == (["ERROR a", "ERROR c"], True)
    assert search(two_streams, Terms(all_of=("ERROR",)), after=first[-1].position, limit=2) == (
        ["ERROR d WARN"],
        False,
    )


def test_search_substring_tests(two_streams: LogStore) -> None:
    assert search(two_streams, Terms(all_of=("ERROR", "WARN")))[0] == ["ERROR d WARN"]
    assert search(two_streams, Terms(none_of=("ERROR",)))[0] == ["INFO b"]
    assert search(two_streams, Terms(any_of=("a", "b")))[0] == ["ERROR a", "INFO b"]
    assert search(two_streams, Terms(all_of=("error",)))[0] == []  # case matters
    combined = Terms(all_of=("ERROR",), none_of=("WARN",), any_of=("c", "a"))
    assert search(two_streams, combined)[0] == ["ERROR a", "ERROR c"]


def test_an_inexact_filter_is_decided_by_its_test(two_streams: LogStore) -> None:
    ends_in_c = Terms(all_of=("ERROR",), exact=False, test=lambda message: message.endswith("c"))
    assert search(two_streams, ends_in_c) == (["ERROR c"], False)
    # Paging counts matches only, not the rows the substring tests let through.
    errors = Terms(exact=False, test=lambda message: message.startswith("ERROR"))
    assert search(two_streams, errors, limit=2) == (["ERROR a", "ERROR c"], True)
    assert search(two_streams, errors, limit=3) == (["ERROR a", "ERROR c", "ERROR d WARN"], False)


def test_a_search_page_stops_at_about_a_megabyte(logs: LogStore) -> None:
    big = "x" * (MAX_PAGE_BYTES // 3)
    logs.append([(GROUP, STREAM, [(n, f"{n}{big}") for n in range(3)])])
    found, more = search(logs, limit=100)
    assert ([message[0] for message in found], more) == (["0", "1"], True)


# ------------------------------------------------------------ retention and deletion


def test_retention_deletes_old_events_and_their_bytes(logs: LogStore) -> None:
    now = int(time.time() * 1000)
    logs.append([(GROUP, STREAM, [(now - 5 * DAY_MS, "old"), (now, "new")])])
    logs.append([(GROUP, OTHER, [(now - 4 * DAY_MS, "older")])])
    logs.append([("/kept", STREAM, [(now - 5 * DAY_MS, "no retention")])])
    logs.set_retention(GROUP, 3)
    assert messages(read(logs)) == ["new"]
    group = logs.group(GROUP)
    assert (group.retention_days, group.stored_bytes) == (3, 3)
    assert logs.stream(group.id, STREAM).first_event_ms == now
    assert logs.stream(group.id, OTHER).first_event_ms is None
    assert logs.group("/kept").stored_bytes == len("no retention")


def test_retention_applies_as_time_passes(logs: LogStore) -> None:
    now = int(time.time() * 1000)
    logs.append([(GROUP, STREAM, [(now - DAY_MS // 2, "half a day"), (now, "now")])])
    logs.set_retention(GROUP, 1)
    assert messages(read(logs)) == ["half a day", "now"]
    logs.apply_retention(now + DAY_MS // 2 + 1)
    assert messages(read(logs)) == ["now"]
    assert logs.group(GROUP).stored_bytes == 3


def test_removing_retention_keeps_events(logs: LogStore) -> None:
    now = int(time.time() * 1000)
    logs.append([(GROUP, STREAM, [(now - 10 * DAY_MS, "old")])])
    logs.set_retention(GROUP, 30)
    logs.set_retention(GROUP, None)
    logs.apply_retention(now + 100 * DAY_MS)
    assert logs.group(GROUP).retention_days is None
    assert messages(read(logs)) == ["old"]


def test_deleting_a_stream_takes_its_bytes_from_the_group(logs: LogStore) -> None:
    logs.append([(GROUP, STREAM, [(1, "four")]), (GROUP, OTHER, [(1, "sixsix")])])
    logs.delete_stream(GROUP, STREAM)
    group = logs.group(GROUP)
    assert group.stored_bytes == 6
    assert [s.name for s in logs.streams(group.id)] == [OTHER]
    assert search(logs) == (["sixsix"], False)
    # A running function's next line recreates it.
    logs.append([(GROUP, STREAM, [(2, "again")])])
    assert messages(read(logs)) == ["again"]


def test_deleting_a_group_deletes_its_streams_and_events(logs: LogStore) -> None:
    fill(logs, 3)
    logs.append([("/other", STREAM, [(1, "kept")])])
    logs.delete_group(GROUP)
    with pytest.raises(ResourceNotFound):
        logs.group(GROUP)
    assert [g.name for g in logs.groups(None, 10)] == ["/other"]
    fill(logs, 1)  # a running function's next line recreates both
    assert messages(read(logs)) == ["line 0"]
    assert logs.group(GROUP).stored_bytes == len("line 0")


# ------------------------------------------------------------------ bound and threads


def test_the_disk_bound_drops_the_oldest_events(store_backend: Backend) -> None:
    logs = store_backend.logs(max_bytes=512 * 1024)
    line = "x" * 200
    for batch in range(40):  # about 1.6 MB of text, three times the bound
        logs.append(
            [(GROUP, STREAM, [(batch * 1000 + i, f"{batch} {i} {line}") for i in range(200)])]
        )
    kept = messages(read(logs))
    assert kept[-1].startswith("39 199 ")
    assert not any(message.startswith("0 ") for message in kept)
    assert sum(len(message) for message in kept) <= 512 * 1024
    # What is left is the newest, without holes.
    numbers = [tuple(map(int, message.split()[:2])) for message in kept]
    assert numbers == sorted(numbers)
    assert len(numbers) == 40 * 200 - (numbers[0][0] * 200 + numbers[0][1])
    assert logs.group(GROUP).stored_bytes == sum(len(message) for message in kept)


def test_concurrent_writers_lose_nothing(logs: LogStore) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        start.wait()
        try:
            for batch in range(25):
                lines = [(batch * 10 + i, f"w{number} b{batch} l{i}") for i in range(10)]
                logs.append([(GROUP, f"stream-{number % 2}", lines)])
                logs.filter_events(logs.group(GROUP).id, None, None, None, EVERYTHING, None, 5)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    found, more = search(logs, limit=10_000)
    assert (len(found), more) == (4 * 25 * 10, False)
    assert logs.group(GROUP).stored_bytes == sum(len(message) for message in found)


def test_logs_survive_reopening_the_store(store_backend: Backend) -> None:
    first = store_backend.logs()
    first.append([(GROUP, STREAM, [(int(time.time() * 1000), "kept")])])
    first.set_retention(GROUP, 7)
    first.close()
    again = store_backend.logs()
    assert messages(read(again)) == ["kept"]
    assert again.group(GROUP).retention_days == 7
