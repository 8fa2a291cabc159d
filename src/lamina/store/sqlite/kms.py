"""KMS keys in SQLite (the main database).

Writes go to the connection directly rather than through `Database.execute`, whose change
counter tells function caches to re-read: a new or changed key changes no function.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from lamina.model.kms import KmsKey
from lamina.store.kms_documents import decode, encode_metadata, seal_material
from lamina.store.sealing import MasterKey
from lamina.store.sqlite.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS kms_keys (
    key_id TEXT PRIMARY KEY,
    doc BLOB NOT NULL,
    material BLOB NOT NULL
);
"""


class SqliteKmsKeyStore:
    def __init__(self, database: Database, master: MasterKey) -> None:
        self._db = database
        self._master = master
        database.connection().executescript(SCHEMA)

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def put_key(self, key: KmsKey) -> None:
        with self._db.transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO kms_keys (key_id, doc, material) VALUES (?, ?, ?)",
                (key.key_id, encode_metadata(key), seal_material(self._master, key)),
            )

    def get_key(self, key_id: str) -> KmsKey | None:
        row = (
            self._db.connection()
            .execute("SELECT doc, material FROM kms_keys WHERE key_id = ?", (key_id,))
            .fetchone()
        )
        return decode(self._master, row[0], row[1]) if row else None

    def keys(self, after: str | None, limit: int) -> list[KmsKey]:
        rows = self._db.query(
            "SELECT doc, material FROM kms_keys WHERE key_id > ? ORDER BY key_id LIMIT ?",
            after or "",
            limit,
        )
        return [decode(self._master, row[0], row[1]) for row in rows]
