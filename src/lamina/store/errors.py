"""What a store raises that its callers may handle without knowing the backend."""

from __future__ import annotations


class StorageError(Exception):
    """The backend could not take a write (its disk is full, it is locked or unreachable);
    nothing of the write was stored, and a later one may succeed."""
