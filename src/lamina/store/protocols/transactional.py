"""The one thing every transactional store shares."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol


class Transactional(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """Serialise a read-modify-write; nested calls join the outer transaction."""
        ...
