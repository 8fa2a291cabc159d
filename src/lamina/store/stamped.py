"""A value derived from a store, kept until the store's change stamp moves.

The hot paths (admitting an invocation, serving a function URL, delivering an event) need
state that changes rarely; reading it once per change rather than once per request keeps
storage scans off those paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class StampedCache(Generic[T]):
    """`load()`'s result, loaded again whenever `stamp()` (a store's change stamp) has moved."""

    def __init__(self, stamp: Callable[[], int], load: Callable[[], T]) -> None:
        self._stamp = stamp
        self._load = load
        # (stamp, value) in one attribute, so that a reader never pairs a value with a
        # stamp it was not loaded under.
        self._entry: tuple[int, T] | None = None

    def get(self) -> T:
        stamp = self._stamp()
        entry = self._entry
        if entry is None or entry[0] != stamp:
            # The stamp is read before the load: a write during the load moves it, so the
            # next call loads again rather than keeping a value that missed the write.
            entry = self._entry = (stamp, self._load())
        return entry[1]

    async def get_in_thread(self) -> T:
        """`get` for the event loop: a load, when one is due, runs in a worker thread."""
        stamp = self._stamp()
        entry = self._entry
        if entry is None or entry[0] != stamp:
            entry = self._entry = (stamp, await asyncio.to_thread(self._load))
        return entry[1]
