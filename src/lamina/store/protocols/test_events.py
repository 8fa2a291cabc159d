"""Saved test events: named JSON documents per function, as the console's Test tab keeps them.

A function's saved events go with it: deleting the function deletes them (the stores declare
the reference to the function, ON DELETE CASCADE, so no path can leave them behind).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lamina.store.protocols.transactional import Transactional


@dataclass(frozen=True)
class SavedEvent:
    """One saved test event: `body` is the JSON text as it was saved."""

    function: str
    name: str
    body: str
    modified: float  # epoch seconds


class SavedEventStore(Transactional, Protocol):
    """Saved test events by (function, name)."""

    def put(self, event: SavedEvent) -> bool:
        """Create or replace; False (nothing stored) when the function does not exist."""
        ...

    def get(self, function: str, name: str) -> SavedEvent | None: ...

    def list(self, function: str) -> list[SavedEvent]:
        """The function's saved events, by name."""
        ...

    def count(self, function: str) -> int: ...

    def delete(self, function: str, name: str) -> bool:
        """Whether there was such an event."""
        ...
