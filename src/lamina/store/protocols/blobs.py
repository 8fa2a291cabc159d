"""Content-addressed archives."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    """Content-addressed archives (function code, layers), keyed by SHA-256 hex."""

    def put(self, data: bytes, key: str | None = None) -> str:
        """Store `data` under its SHA-256 (`key`, when the caller already hashed it); storing
        the same bytes again is harmless. Returns the key."""
        ...

    def get(self, key: str) -> bytes:
        """The blob's bytes; FileNotFoundError if there is none."""
        ...

    def path(self, key: str) -> Path:
        """A local file holding the blob (sandboxes mount and unpack archives from disk)."""
        ...

    def exists(self, key: str) -> bool: ...
