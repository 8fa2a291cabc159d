"""Layer versions in SQLite."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from lamina.model.functions import LayerVersion
from lamina.store.sqlite.database import Database, dumps, loads


class SqliteLayerStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def last_version(self, name: str) -> int:
        value = self._db.query_one("SELECT last_version FROM layers WHERE name = ?", name)
        return int(value or 0)

    def set_last_version(self, name: str, version: int) -> None:
        self._db.execute(
            "INSERT INTO layers (name, last_version) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last_version = excluded.last_version",
            name,
            version,
        )

    def get_version(self, name: str, version: int) -> LayerVersion | None:
        raw = self._db.query_one(
            "SELECT doc FROM layer_versions WHERE name = ? AND version = ?", name, version
        )
        return LayerVersion.from_doc(loads(raw)) if raw else None

    def put_version(self, layer: LayerVersion) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO layer_versions (name, version, doc) VALUES (?, ?, ?)",
            layer.name,
            layer.version,
            dumps(layer.to_doc()),
        )

    def delete_version(self, name: str, version: int) -> None:
        self._db.execute("DELETE FROM layer_versions WHERE name = ? AND version = ?", name, version)

    def list_versions(self, name: str) -> list[LayerVersion]:
        rows = self._db.query(
            "SELECT doc FROM layer_versions WHERE name = ? ORDER BY version DESC", name
        )
        return [LayerVersion.from_doc(loads(row[0])) for row in rows]

    def latest_versions(self) -> list[LayerVersion]:
        rows = self._db.query(
            "SELECT doc FROM layer_versions AS v WHERE version = "
            "(SELECT max(version) FROM layer_versions WHERE name = v.name) ORDER BY name"
        )
        return [LayerVersion.from_doc(loads(row[0])) for row in rows]

    def total_code_size(self) -> int:
        value = self._db.query_one(
            "SELECT coalesce(sum(json_extract(doc, '$.code_size')), 0) FROM layer_versions"
        )
        return int(value)
