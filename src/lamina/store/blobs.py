"""A content-addressed blob store on local disk."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class FileBlobStore:
    """Blobs live at `<root>/<2 hex>/<sha256 hex>`; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, key: str) -> Path:
        return self._root / key[:2] / key

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def put(self, data: bytes, key: str | None = None) -> str:
        """Store `data`; `key`, when the caller already hashed it, must be its SHA-256 hex."""
        key = key or hashlib.sha256(data).hexdigest()
        target = self.path(key)
        if target.exists():
            return key
        target.parent.mkdir(exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()
