"""Code and layer archives in PostgreSQL, cached on this node's disk by SHA-256.

PostgreSQL is the truth: `exists` asks it, and a put inside a transaction commits or rolls
back with the records that name the blob. The cache is content-addressed, so a file in it is
never stale; `path` fills it on first use, for the sandboxes that unpack archives from disk.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from lamina.store.postgres.database import PgDatabase

MIGRATIONS = {
    1: """
    CREATE TABLE IF NOT EXISTS blobs (
        key TEXT COLLATE "C" PRIMARY KEY,
        data BYTEA NOT NULL,
        size BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    -- Archives are zips already: storing them out of line uncompressed saves the attempt.
    ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;
    """,
}


class PgBlobStore:
    """Blobs in the `blobs` table; local copies at `<cache>/<2 hex>/<sha256 hex>`."""

    def __init__(self, database: PgDatabase, cache: Path) -> None:
        self._db = database
        self._cache = cache
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        database.migrate("blobs", MIGRATIONS)

    def path(self, key: str) -> Path:
        target = self._local(key)
        if not target.exists():
            data = self._fetch(key)
            if data is not None:
                self._keep(target, data)
        return target

    def exists(self, key: str) -> bool:
        return bool(self._db.query_one("SELECT 1 FROM blobs WHERE key = %s", key))

    def put(self, data: bytes, key: str | None = None) -> str:
        """Store `data`; `key`, when the caller already hashed it, must be its SHA-256 hex."""
        key = key or hashlib.sha256(data).hexdigest()
        if not self.exists(key):
            self._db.execute(
                "INSERT INTO blobs (key, data, size) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO NOTHING",
                key,
                data,
                len(data),
                stamp=None,
            )
        target = self._local(key)
        if not target.exists():
            self._keep(target, data)
        return key

    def get(self, key: str) -> bytes:
        target = self._local(key)
        if target.exists():
            return target.read_bytes()
        data = self._fetch(key)
        if data is None:
            raise FileNotFoundError(f"no blob {key}")
        self._keep(target, data)
        return data

    def _local(self, key: str) -> Path:
        return self._cache / key[:2] / key

    def _fetch(self, key: str) -> bytes | None:
        # Binary results: bytea in text form would arrive hex-encoded, twice its size.
        with self._db.transaction(exclusive=False) as connection:
            row = connection.execute(
                "SELECT data FROM blobs WHERE key = %s", (key,), binary=True
            ).fetchone()
        return bytes(row[0]) if row else None

    @staticmethod
    def _keep(target: Path, data: bytes) -> None:
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
