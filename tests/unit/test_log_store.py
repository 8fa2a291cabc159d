"""The log store: paging tokens, searches, retention and the disk bound."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.errors import InvalidParameter, ResourceAlreadyExists, ResourceNotFound
from lamina.observability import log_queries
from lamina.observability.filter_pattern import compile_pattern
from lamina.observability.log_store import DAY_MS, LogStore

GROUP = "/aws/lambda/fn"
STREAM = "2024/01/01/[$LATEST]" + "a" * 32
OTHER = "2024/01/01/[$LATEST]" + "b" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    instance = LogStore(tmp_path / "logs.db", 64 * 1024 * 1024)
    yield instance
    instance.close()


def fill(store: LogStore, count: int, stream: str = STREAM, base: int = 1_000_000) -> None:
    store.append([(GROUP, stream, [(base + i, f"line {i}") for i in range(count)])])


def page(
    store: LogStore,
    *,
    start: int | None = None,
    end: int | None = None,
    token: str | None = None,
    limit: int = 10_000,
    head: bool = False,
) -> tuple[list[str], str, str]:
    group = store.group(GROUP)
    stream = store.stream(group.id, STREAM)
    events, forward, backward = log_queries.stream_page(
        store.reader(), stream.id, start, end, token, limit, head
    )
    return [event.message for event in events], forward, backward


def test_groups_and_streams_are_created_on_first_output(store: LogStore) -> None:
    fill(store, 3)
    group = store.group(GROUP)
    assert group.stored_bytes == sum(len(f"line {i}") for i in range(3))
    (stream,) = store.streams(group.id)
    assert stream.name == STREAM
    assert (stream.first_event_ms, stream.last_event_ms) == (1_000_000, 1_000_002)


def test_create_and_delete_errors(store: LogStore) -> None:
    store.create_group("/custom")
    with pytest.raises(ResourceAlreadyExists, match="log group already exists"):
        store.create_group("/custom")
    store.create_stream("/custom", "s")
    with pytest.raises(ResourceAlreadyExists, match="log stream already exists"):
        store.create_stream("/custom", "s")
    with pytest.raises(ResourceNotFound, match=r"The specified log group does not exist\."):
        store.delete_group("/missing")
    with pytest.raises(ResourceNotFound, match=r"The specified log stream does not exist\."):
        store.delete_stream("/custom", "missing")
    with pytest.raises(ResourceNotFound):
        store.append([("/custom", "missing", [(1, "x")])], create=False)


def test_forward_paging_ends_with_the_same_token(store: LogStore) -> None:
    fill(store, 5)
    first, forward, backward = page(store, head=True, limit=2)
    assert first == ["line 0", "line 1"]
    assert forward.startswith("f/") and backward.startswith("b/")
    assert len(forward) == len(backward) == 58
    second, forward, _ = page(store, token=forward, limit=2)
    third, forward, _ = page(store, token=forward, limit=2)
    assert (second, third) == (["line 2", "line 3"], ["line 4"])
    empty, again, _ = page(store, token=forward, limit=2)
    assert (empty, again) == ([], forward)
    # New events appear to a client polling with the same forward token.
    store.append([(GROUP, STREAM, [(2_000_000, "late")])])
    assert page(store, token=forward)[0] == ["late"]


def test_default_page_is_the_newest_events_and_backward_tokens_walk_back(
    store: LogStore,
) -> None:
    fill(store, 5)
    newest, _, backward = page(store, limit=2)
    assert newest == ["line 3", "line 4"]
    older, _, backward = page(store, token=backward, limit=2)
    oldest, _, backward = page(store, token=backward, limit=2)
    assert (older, oldest) == (["line 1", "line 2"], ["line 0"])
    assert page(store, token=backward, limit=2)[0::2] == ([], backward)


def test_time_range_and_bad_tokens(store: LogStore) -> None:
    fill(store, 5)
    assert page(store, start=1_000_001, end=1_000_003, head=True)[0] == ["line 1", "line 2"]
    with pytest.raises(InvalidParameter, match="nextToken is invalid"):
        page(store, token="f/123")


def test_search_orders_streams_by_time_and_pages(store: LogStore) -> None:
    store.append([(GROUP, STREAM, [(10, "ERROR a"), (30, "INFO b")])])
    store.append([(GROUP, OTHER, [(20, "ERROR c"), (40, "ERROR d")])])
    group = store.group(GROUP)

    def search(
        pattern: str = "",
        *,
        streams: list[int] | None = None,
        start: int | None = None,
        end: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> tuple[list[str], bool]:
        events, more = log_queries.search(
            store.reader(), group.id, streams, start, end, compile_pattern(pattern), after, limit
        )
        return [event.message for event in events], more

    assert search() == (["ERROR a", "ERROR c", "INFO b", "ERROR d"], False)
    assert search("ERROR", start=20, end=40) == (["ERROR c", "ERROR d"], False)
    other = store.stream(group.id, OTHER).id
    assert search(streams=[other]) == (["ERROR c", "ERROR d"], False)
    first, more = search("ERROR", limit=2)
    assert (first, more) == (["ERROR a", "ERROR c"], True)
    assert search("ERROR", after=(20, 3), limit=2) == (["ERROR d"], False)


def test_retention_deletes_old_events_and_their_bytes(store: LogStore) -> None:
    now = int(time.time() * 1000)
    store.append([(GROUP, STREAM, [(now - 5 * DAY_MS, "old"), (now, "new")])])
    store.set_retention(GROUP, 3)
    assert page(store, head=True)[0] == ["new"]
    group = store.group(GROUP)
    assert (group.retention_days, group.stored_bytes) == (3, 3)
    assert store.stream(group.id, STREAM).first_event_ms == now


def test_disk_bound_drops_the_oldest_events(tmp_path: Path) -> None:
    bound = 512 * 1024
    store = LogStore(tmp_path / "logs.db", bound)
    line = "x" * 200
    for batch in range(40):  # about 1.6 MB of text, three times the bound
        lines = [(batch * 1000 + i, f"{batch} {i} {line}") for i in range(200)]
        store.append([(GROUP, STREAM, lines)])  # keeps the bound as it goes
    assert store.used_bytes() <= bound
    # The file itself shrinks with it (incremental vacuum, truncated WAL).
    assert store.disk_bytes() <= bound + 64 * 1024
    messages = page(store, head=True)[0]
    assert messages[-1].startswith("39 199 ")
    assert not any(message.startswith("0 ") for message in messages)
    assert store.group(GROUP).stored_bytes == sum(len(message) for message in messages)
    store.close()


def test_deleting_a_group_deletes_its_streams_and_events(store: LogStore) -> None:
    fill(store, 3)
    store.delete_group(GROUP)
    with pytest.raises(ResourceNotFound):
        store.group(GROUP)
    fill(store, 1)  # a running function's next line recreates both
    assert page(store, head=True)[0] == ["line 0"]
