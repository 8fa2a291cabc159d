"""Code-signing configs in SQLite."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from lamina.model.functions import CodeSigningConfig
from lamina.store.sqlite.database import Database, dumps, loads


class SqliteCodeSigningConfigStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def get(self, config_id: str) -> CodeSigningConfig | None:
        raw = self._db.query_one("SELECT doc FROM code_signing_configs WHERE id = ?", config_id)
        return CodeSigningConfig.from_doc(loads(raw)) if raw else None

    def put(self, config: CodeSigningConfig) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO code_signing_configs (id, doc) VALUES (?, ?)",
            config.config_id,
            dumps(config.to_doc()),
        )

    def delete(self, config_id: str) -> None:
        self._db.execute("DELETE FROM code_signing_configs WHERE id = ?", config_id)

    def all(self) -> list[CodeSigningConfig]:
        rows = self._db.query("SELECT doc FROM code_signing_configs ORDER BY id")
        return [CodeSigningConfig.from_doc(loads(row[0])) for row in rows]
