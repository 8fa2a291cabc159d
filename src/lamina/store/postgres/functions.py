"""The function aggregate in PostgreSQL. Environment variables are sealed in the stored
documents (`lamina.store.environment_sealing`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from lamina.model.functions import Alias, FunctionConfig, FunctionRecord
from lamina.store.environment_sealing import EnvironmentSealer
from lamina.store.postgres.database import CONTROL, PgDatabase, dumps, loads

# code_size is kept beside each document so total_code_size sums a column rather than
# decoding every document; so is a function's reserved concurrency, for `reservations`.
MIGRATIONS = {
    1: """
    CREATE TABLE IF NOT EXISTS functions (
        name TEXT COLLATE "C" PRIMARY KEY,
        doc BYTEA NOT NULL,
        code_size BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS function_versions (
        function TEXT COLLATE "C" NOT NULL,
        version INTEGER NOT NULL,
        doc BYTEA NOT NULL,
        code_size BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (function, version)
    );
    CREATE TABLE IF NOT EXISTS aliases (
        function TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        doc BYTEA NOT NULL,
        PRIMARY KEY (function, name)
    );
    CREATE TABLE IF NOT EXISTS function_children (
        function TEXT COLLATE "C" NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        doc BYTEA NOT NULL,
        PRIMARY KEY (function, kind, key)
    );
    CREATE INDEX IF NOT EXISTS function_children_kind
        ON function_children (kind, function, key);
    """,
    # Read from the stored documents once. PostgreSQL's JSON refuses the escaped NUL a
    # description or tag may hold, so each becomes U+FFFD first (both escapes are six
    # characters, so the document stays well formed).
    2: """
    ALTER TABLE functions ADD COLUMN IF NOT EXISTS reserved INTEGER;
    UPDATE functions SET reserved = (
        replace(convert_from(doc, 'UTF8'), '\\u0000', '\\ufffd')::json ->> 'reserved_concurrency'
    )::integer;
    CREATE INDEX IF NOT EXISTS functions_reserved
        ON functions (name, reserved) WHERE reserved IS NOT NULL;
    """,
}


class PgFunctionStore:
    def __init__(self, database: PgDatabase, sealer: EnvironmentSealer) -> None:
        self._db = database
        self._sealer = sealer
        database.migrate("functions", MIGRATIONS)

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def change_stamp(self) -> int:
        return self._db.change_stamp(CONTROL)

    def shared_stamp(self) -> int:
        return self._db.shared_stamp(CONTROL)

    def catch_up(self, stamp: int) -> None:
        self._db.catch_up(stamp, CONTROL)

    def get(self, name: str) -> FunctionRecord | None:
        raw = self._db.query_one("SELECT doc FROM functions WHERE name = %s", name)
        return FunctionRecord.from_doc(self._sealer.open_record(loads(raw))) if raw else None

    def put(self, record: FunctionRecord) -> None:
        self._db.execute(
            "INSERT INTO functions (name, doc, code_size, reserved) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, code_size = excluded.code_size, "
            "reserved = excluded.reserved",
            record.name,
            dumps(self._sealer.seal_record(record.to_doc())),
            record.latest.code_size,
            record.reserved_concurrency,
        )

    def delete(self, name: str) -> None:
        with self._db.transaction():
            for table in ("functions", "function_versions", "aliases", "function_children"):
                column = "name" if table == "functions" else "function"
                self._db.execute(f"DELETE FROM {table} WHERE {column} = %s", name)

    def page(self, after: str | None, limit: int) -> list[FunctionRecord]:
        rows = self._db.query(
            "SELECT doc FROM functions WHERE name > %s ORDER BY name LIMIT %s", after or "", limit
        )
        return [FunctionRecord.from_doc(self._sealer.open_record(loads(row[0]))) for row in rows]

    def count(self) -> int:
        return int(self._db.query_one("SELECT count(*) FROM functions"))

    def reservations(self) -> dict[str, int]:
        rows = self._db.query("SELECT name, reserved FROM functions WHERE reserved IS NOT NULL")
        return {name: int(reserved) for name, reserved in rows}

    def names(self) -> Iterator[str]:
        for row in self._db.query("SELECT name FROM functions ORDER BY name"):
            yield row[0]

    def get_version(self, name: str, version: int) -> FunctionConfig | None:
        raw = self._db.query_one(
            "SELECT doc FROM function_versions WHERE function = %s AND version = %s", name, version
        )
        return FunctionConfig.from_doc(self._sealer.open_config(loads(raw))) if raw else None

    def put_version(self, config: FunctionConfig) -> None:
        self._db.execute(
            "INSERT INTO function_versions (function, version, doc, code_size) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (function, version) "
            "DO UPDATE SET doc = excluded.doc, code_size = excluded.code_size",
            config.function_name,
            int(config.version),
            dumps(self._sealer.seal_config(config.to_doc())),
            config.code_size,
        )

    def delete_version(self, name: str, version: int) -> None:
        self._db.execute(
            "DELETE FROM function_versions WHERE function = %s AND version = %s", name, version
        )

    def list_versions(self, name: str, after: int | None, limit: int) -> list[FunctionConfig]:
        rows = self._db.query(
            "SELECT doc FROM function_versions WHERE function = %s AND version > %s "
            "ORDER BY version LIMIT %s",
            name,
            after if after is not None else -1,
            limit,
        )
        return [FunctionConfig.from_doc(self._sealer.open_config(loads(row[0]))) for row in rows]

    def get_alias(self, name: str, alias: str) -> Alias | None:
        raw = self._db.query_one(
            "SELECT doc FROM aliases WHERE function = %s AND name = %s", name, alias
        )
        return Alias.from_doc(loads(raw)) if raw else None

    def put_alias(self, alias: Alias) -> None:
        self._db.execute(
            "INSERT INTO aliases (function, name, doc) VALUES (%s, %s, %s) "
            "ON CONFLICT (function, name) DO UPDATE SET doc = excluded.doc",
            alias.function_name,
            alias.name,
            dumps(alias.to_doc()),
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self._db.execute("DELETE FROM aliases WHERE function = %s AND name = %s", name, alias)

    def list_aliases(self, name: str) -> list[Alias]:
        rows = self._db.query("SELECT doc FROM aliases WHERE function = %s ORDER BY name", name)
        return [Alias.from_doc(loads(row[0])) for row in rows]

    def get_child(self, name: str, kind: str, key: str) -> dict[str, Any] | None:
        raw = self._db.query_one(
            "SELECT doc FROM function_children WHERE function = %s AND kind = %s AND key = %s",
            name,
            kind,
            key,
        )
        return loads(raw) if raw else None

    def put_child(self, name: str, kind: str, key: str, doc: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO function_children (function, kind, key, doc) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (function, kind, key) DO UPDATE SET doc = excluded.doc",
            name,
            kind,
            key,
            dumps(doc),
        )

    def delete_child(self, name: str, kind: str, key: str) -> None:
        self._db.execute(
            "DELETE FROM function_children WHERE function = %s AND kind = %s AND key = %s",
            name,
            kind,
            key,
        )

    def list_children(self, name: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self._db.query(
            "SELECT key, doc FROM function_children WHERE function = %s AND kind = %s ORDER BY key",
            name,
            kind,
        )
        return [(row[0], loads(row[1])) for row in rows]

    def list_children_of_kind(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._db.query(
            "SELECT function, key, doc FROM function_children WHERE kind = %s "
            "ORDER BY function, key",
            kind,
        )
        return [(row[0], row[1], loads(row[2])) for row in rows]

    def total_code_size(self) -> int:
        return int(
            self._db.query_one(
                "SELECT (SELECT coalesce(sum(code_size), 0) FROM functions) "
                "+ (SELECT coalesce(sum(code_size), 0) FROM function_versions)"
            )
        )
