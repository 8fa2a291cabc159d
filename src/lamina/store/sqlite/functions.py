"""The function aggregate in SQLite. Environment variables are sealed in the stored documents
(`lamina.store.environment_sealing`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from lamina.model.functions import Alias, FunctionConfig, FunctionRecord
from lamina.store.environment_sealing import EnvironmentSealer
from lamina.store.sqlite.database import RESERVED, Database, dumps, loads


class SqliteFunctionStore:
    def __init__(self, database: Database, sealer: EnvironmentSealer) -> None:
        self._db = database
        self._sealer = sealer

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def change_stamp(self) -> int:
        return self._db.changes

    def shared_stamp(self) -> int:
        return 0  # one node's file: nobody else writes it

    def catch_up(self, stamp: int) -> None:
        pass

    def get(self, name: str) -> FunctionRecord | None:
        raw = self._db.query_one("SELECT doc FROM functions WHERE name = ?", name)
        return FunctionRecord.from_doc(self._sealer.open_record(loads(raw))) if raw else None

    def put(self, record: FunctionRecord) -> None:
        self._db.execute(
            "INSERT INTO functions (name, doc) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
            record.name,
            dumps(self._sealer.seal_record(record.to_doc())),
        )

    def delete(self, name: str) -> None:
        with self._db.transaction():
            for table in ("functions", "function_versions", "aliases", "function_children"):
                column = "name" if table == "functions" else "function"
                self._db.execute(f"DELETE FROM {table} WHERE {column} = ?", name)

    def page(self, after: str | None, limit: int) -> list[FunctionRecord]:
        rows = self._db.query(
            "SELECT doc FROM functions WHERE name > ? ORDER BY name LIMIT ?", after or "", limit
        )
        return [FunctionRecord.from_doc(self._sealer.open_record(loads(row[0]))) for row in rows]

    def count(self) -> int:
        return int(self._db.query_one("SELECT count(*) FROM functions"))

    def reservations(self) -> dict[str, int]:
        # Through the partial index of the schema: only functions with a reservation.
        rows = self._db.query(
            f"SELECT name, {RESERVED} FROM functions WHERE {RESERVED} IS NOT NULL"
        )
        return {name: int(reserved) for name, reserved in rows}

    def names(self) -> Iterator[str]:
        for row in self._db.query("SELECT name FROM functions ORDER BY name"):
            yield row[0]

    def get_version(self, name: str, version: int) -> FunctionConfig | None:
        raw = self._db.query_one(
            "SELECT doc FROM function_versions WHERE function = ? AND version = ?", name, version
        )
        return FunctionConfig.from_doc(self._sealer.open_config(loads(raw))) if raw else None

    def put_version(self, config: FunctionConfig) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO function_versions (function, version, doc) VALUES (?, ?, ?)",
            config.function_name,
            int(config.version),
            dumps(self._sealer.seal_config(config.to_doc())),
        )

    def delete_version(self, name: str, version: int) -> None:
        self._db.execute(
            "DELETE FROM function_versions WHERE function = ? AND version = ?", name, version
        )

    def list_versions(self, name: str, after: int | None, limit: int) -> list[FunctionConfig]:
        rows = self._db.query(
            "SELECT doc FROM function_versions WHERE function = ? AND version > ? "
            "ORDER BY version LIMIT ?",
            name,
            after if after is not None else -1,
            limit,
        )
        return [FunctionConfig.from_doc(self._sealer.open_config(loads(row[0]))) for row in rows]

    def get_alias(self, name: str, alias: str) -> Alias | None:
        raw = self._db.query_one(
            "SELECT doc FROM aliases WHERE function = ? AND name = ?", name, alias
        )
        return Alias.from_doc(loads(raw)) if raw else None

    def put_alias(self, alias: Alias) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO aliases (function, name, doc) VALUES (?, ?, ?)",
            alias.function_name,
            alias.name,
            dumps(alias.to_doc()),
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self._db.execute("DELETE FROM aliases WHERE function = ? AND name = ?", name, alias)

    def list_aliases(self, name: str) -> list[Alias]:
        rows = self._db.query("SELECT doc FROM aliases WHERE function = ? ORDER BY name", name)
        return [Alias.from_doc(loads(row[0])) for row in rows]

    def get_child(self, name: str, kind: str, key: str) -> dict[str, Any] | None:
        raw = self._db.query_one(
            "SELECT doc FROM function_children WHERE function = ? AND kind = ? AND key = ?",
            name,
            kind,
            key,
        )
        return loads(raw) if raw else None

    def put_child(self, name: str, kind: str, key: str, doc: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO function_children (function, kind, key, doc) "
            "VALUES (?, ?, ?, ?)",
            name,
            kind,
            key,
            dumps(doc),
        )

    def delete_child(self, name: str, kind: str, key: str) -> None:
        self._db.execute(
            "DELETE FROM function_children WHERE function = ? AND kind = ? AND key = ?",
            name,
            kind,
            key,
        )

    def list_children(self, name: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self._db.query(
            "SELECT key, doc FROM function_children WHERE function = ? AND kind = ? ORDER BY key",
            name,
            kind,
        )
        return [(row[0], loads(row[1])) for row in rows]

    def list_children_of_kind(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._db.query(
            "SELECT function, key, doc FROM function_children WHERE kind = ? "
            "ORDER BY function, key",
            kind,
        )
        return [(row[0], row[1], loads(row[2])) for row in rows]

    def total_code_size(self) -> int:
        latest = self._db.query_one(
            "SELECT coalesce(sum(json_extract(doc, '$.latest.code_size')), 0) FROM functions"
        )
        versions = self._db.query_one(
            "SELECT coalesce(sum(json_extract(doc, '$.code_size')), 0) FROM function_versions"
        )
        return int(latest) + int(versions)
