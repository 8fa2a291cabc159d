"""KMS keys in PostgreSQL. Writes leave the control change stamp alone: a key changes no
function (`stamp=None`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from lamina.model.kms import KmsKey
from lamina.store.kms_documents import decode, encode_metadata, seal_material
from lamina.store.postgres.database import PgDatabase
from lamina.store.sealing import MasterKey

MIGRATIONS = {
    1: """
    CREATE TABLE IF NOT EXISTS kms_keys (
        key_id TEXT COLLATE "C" PRIMARY KEY,
        doc BYTEA NOT NULL,
        material BYTEA NOT NULL
    );
    """,
}


class PgKmsKeyStore:
    def __init__(self, database: PgDatabase, master: MasterKey) -> None:
        self._db = database
        self._master = master
        database.migrate("kms", MIGRATIONS)

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def put_key(self, key: KmsKey) -> None:
        self._db.execute(
            "INSERT INTO kms_keys (key_id, doc, material) VALUES (%s, %s, %s) "
            "ON CONFLICT (key_id) DO UPDATE SET doc = excluded.doc, material = excluded.material",
            key.key_id,
            encode_metadata(key),
            seal_material(self._master, key),
            stamp=None,
        )

    def get_key(self, key_id: str) -> KmsKey | None:
        rows = self._db.query("SELECT doc, material FROM kms_keys WHERE key_id = %s", key_id)
        return decode(self._master, rows[0][0], rows[0][1]) if rows else None

    def keys(self, after: str | None, limit: int) -> list[KmsKey]:
        rows = self._db.query(
            "SELECT doc, material FROM kms_keys WHERE key_id > %s ORDER BY key_id LIMIT %s",
            after or "",
            limit,
        )
        return [decode(self._master, row[0], row[1]) for row in rows]
