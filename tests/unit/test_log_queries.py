"""GetLogEvents' and FilterLogEvents' tokens over a store: their shape, the token that comes
back unchanged at either end, and tokens that are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.errors import InvalidParameter
from lamina.observability import log_queries
from lamina.observability.filter_pattern import compile_pattern
from lamina.store.protocols.logs import LogStore
from lamina.store.sqlite import open_log_store

GROUP, STREAM = "/aws/lambda/fn", "2024/01/01/[$LATEST]" + "a" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    instance = open_log_store(tmp_path, 64 * 1024 * 1024)
    instance.append([(GROUP, STREAM, [(1_000_000 + i, f"line {i}") for i in range(5)])])
    yield instance
    instance.close()


def page(
    store: LogStore, token: str | None = None, limit: int = 10_000, head: bool = False
) -> tuple[list[str], str, str]:
    stream = store.stream(store.group(GROUP).id, STREAM)
    events, forward, backward = log_queries.stream_page(
        store, stream.id, None, None, token, limit, head
    )
    return [event.message for event in events], forward, backward


def test_forward_paging_ends_with_the_same_token(store: LogStore) -> None:
    first, forward, backward = page(store, head=True, limit=2)
    assert first == ["line 0", "line 1"]
    assert forward.startswith("f/") and backward.startswith("b/")
    assert len(forward) == len(backward) == 58
    second, forward, _ = page(store, forward, limit=2)
    third, forward, _ = page(store, forward, limit=2)
    assert (second, third) == (["line 2", "line 3"], ["line 4"])
    empty, again, _ = page(store, forward, limit=2)
    assert (empty, again) == ([], forward)
    # New events appear to a client polling with the same forward token.
    store.append([(GROUP, STREAM, [(2_000_000, "late")])])
    assert page(store, forward)[0] == ["late"]


def test_default_page_is_the_newest_events_and_backward_tokens_walk_back(store: LogStore) -> None:
    newest, _, backward = page(store, limit=2)
    assert newest == ["line 3", "line 4"]
    older, _, backward = page(store, backward, limit=2)
    oldest, _, backward = page(store, backward, limit=2)
    assert (older, oldest) == (["line 1", "line 2"], ["line 0"])
    assert page(store, backward, limit=2)[0::2] == ([], backward)


@pytest.mark.parametrize("token", ["f/123", "x/" + "0" * 56, "f/" + "a" * 56, "f"])
def test_bad_tokens_are_invalid(store: LogStore, token: str) -> None:
    with pytest.raises(InvalidParameter, match="nextToken is invalid"):
        page(store, token)


def test_search_hands_out_a_token_only_while_more_may_follow(store: LogStore) -> None:
    group = store.group(GROUP).id
    pattern = compile_pattern("line")
    first, token = log_queries.search(store, group, None, None, None, pattern, None, 3)
    assert [event.message for event in first] == ["line 0", "line 1", "line 2"]
    assert token == log_queries.token("f", first[-1].position)
    rest, token = log_queries.search(store, group, None, None, None, pattern, token, 3)
    assert ([event.message for event in rest], token) == (["line 3", "line 4"], None)
    assert len({log_queries.event_id(event) for event in first + rest}) == 5
    with pytest.raises(InvalidParameter):  # searches only go forward
        log_queries.search(store, group, None, None, None, pattern, "b/" + "0" * 56, 3)
