"""Code-signing configs in PostgreSQL."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from lamina.model.functions import CodeSigningConfig
from lamina.store.postgres.database import PgDatabase, dumps, loads

MIGRATIONS = {
    1: """
    CREATE TABLE IF NOT EXISTS code_signing_configs (
        id TEXT COLLATE "C" PRIMARY KEY,
        doc BYTEA NOT NULL
    );
    """,
}


class PgCodeSigningConfigStore:
    def __init__(self, database: PgDatabase) -> None:
        self._db = database
        database.migrate("code_signing", MIGRATIONS)

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def get(self, config_id: str) -> CodeSigningConfig | None:
        raw = self._db.query_one("SELECT doc FROM code_signing_configs WHERE id = %s", config_id)
        return CodeSigningConfig.from_doc(loads(raw)) if raw else None

    def put(self, config: CodeSigningConfig) -> None:
        self._db.execute(
            "INSERT INTO code_signing_configs (id, doc) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
            config.config_id,
            dumps(config.to_doc()),
        )

    def delete(self, config_id: str) -> None:
        self._db.execute("DELETE FROM code_signing_configs WHERE id = %s", config_id)

    def all(self) -> list[CodeSigningConfig]:
        rows = self._db.query("SELECT doc FROM code_signing_configs ORDER BY id")
        return [CodeSigningConfig.from_doc(loads(row[0])) for row in rows]
