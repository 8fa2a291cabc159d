"""StampedCache over a real SQLite function store: loads once per change, never keeps a miss."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from lamina.store.protocols.functions import FunctionStore
from lamina.store.sqlite import open_stores
from lamina.store.stamped import StampedCache

KIND = "probe"


@pytest.fixture
def store(tmp_path: Path) -> FunctionStore:
    return open_stores(tmp_path / "data").functions


class Keys:
    """A load that lists the probe documents' keys and counts how often it ran, and where."""

    def __init__(self, store: FunctionStore) -> None:
        self.store = store
        self.loads = 0
        self.threads: list[int] = []

    def __call__(self) -> list[str]:
        self.loads += 1
        self.threads.append(threading.get_ident())
        return [key for _, key, _ in self.store.list_children_of_kind(KIND)]


def test_loads_once_until_the_store_changes(store: FunctionStore) -> None:
    load = Keys(store)
    cache = StampedCache(store.change_stamp, load)
    assert cache.get() == []
    assert cache.get() == []
    assert load.loads == 1
    store.put_child("f", KIND, "a", {})
    assert cache.get() == ["a"]
    assert cache.get() == ["a"]
    assert load.loads == 2
    store.delete_child("f", KIND, "a")
    assert cache.get() == []
    assert load.loads == 3


def test_a_write_during_the_load_makes_the_next_get_load_again(store: FunctionStore) -> None:
    load = Keys(store)

    def racing_load() -> list[str]:
        keys = load()
        if load.loads == 1:
            # Stands for another thread's write landing after the load read the store.
            store.put_child("f", KIND, "late", {})
        return keys

    cache = StampedCache(store.change_stamp, racing_load)
    assert cache.get() == []
    assert cache.get() == ["late"]
    assert load.loads == 2


def test_get_in_thread_loads_off_the_event_loop_and_shares_the_value(
    store: FunctionStore,
) -> None:
    load = Keys(store)
    cache = StampedCache(store.change_stamp, load)
    store.put_child("f", KIND, "a", {})

    async def scenario() -> None:
        assert await cache.get_in_thread() == ["a"]
        assert load.threads != [threading.get_ident()]
        assert await cache.get_in_thread() == ["a"]

    asyncio.run(scenario())
    assert cache.get() == ["a"]
    assert load.loads == 1
