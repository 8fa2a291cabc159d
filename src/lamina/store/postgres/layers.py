"""Layer versions in PostgreSQL."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from lamina.model.functions import LayerVersion
from lamina.store.postgres.database import PgDatabase, dumps, loads

MIGRATIONS = {
    1: """
    CREATE TABLE IF NOT EXISTS layers (
        name TEXT COLLATE "C" PRIMARY KEY,
        last_version INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS layer_versions (
        name TEXT COLLATE "C" NOT NULL,
        version INTEGER NOT NULL,
        doc BYTEA NOT NULL,
        code_size BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (name, version)
    );
    """,
}


class PgLayerStore:
    def __init__(self, database: PgDatabase) -> None:
        self._db = database
        database.migrate("layers", MIGRATIONS)

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def last_version(self, name: str) -> int:
        value = self._db.query_one("SELECT last_version FROM layers WHERE name = %s", name)
        return int(value or 0)

    def set_last_version(self, name: str, version: int) -> None:
        self._db.execute(
            "INSERT INTO layers (name, last_version) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET last_version = excluded.last_version",
            name,
            version,
        )

    def get_version(self, name: str, version: int) -> LayerVersion | None:
        raw = self._db.query_one(
            "SELECT doc FROM layer_versions WHERE name = %s AND version = %s", name, version
        )
        return LayerVersion.from_doc(loads(raw)) if raw else None

    def put_version(self, layer: LayerVersion) -> None:
        self._db.execute(
            "INSERT INTO layer_versions (name, version, doc, code_size) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (name, version) DO UPDATE SET doc = excluded.doc, "
            "code_size = excluded.code_size",
            layer.name,
            layer.version,
            dumps(layer.to_doc()),
            layer.code_size,
        )

    def delete_version(self, name: str, version: int) -> None:
        self._db.execute(
            "DELETE FROM layer_versions WHERE name = %s AND version = %s", name, version
        )

    def list_versions(self, name: str) -> list[LayerVersion]:
        rows = self._db.query(
            "SELECT doc FROM layer_versions WHERE name = %s ORDER BY version DESC", name
        )
        return [LayerVersion.from_doc(loads(row[0])) for row in rows]

    def latest_versions(self) -> list[LayerVersion]:
        rows = self._db.query(
            "SELECT DISTINCT ON (name) doc FROM layer_versions ORDER BY name, version DESC"
        )
        return [LayerVersion.from_doc(loads(row[0])) for row in rows]

    def total_code_size(self) -> int:
        return int(self._db.query_one("SELECT coalesce(sum(code_size), 0) FROM layer_versions"))
