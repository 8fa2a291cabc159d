"""Event source mappings and their shard checkpoints in SQLite (the main database).

A mapping's state, transition reason and last processing result live in columns of their
own, so that pollers can move them without rewriting (and racing) the rest of the document.
Writes bypass `Database.execute`, whose change counter tells function caches to re-read: a
mapping changes no function.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import Any

from lamina.model.mappings import EventSourceMapping, ShardCheckpoint
from lamina.store.sqlite.database import Database, dumps, loads

SCHEMA = """
CREATE TABLE IF NOT EXISTS event_source_mappings (
    uuid TEXT PRIMARY KEY,
    function_name TEXT NOT NULL,
    function_arn TEXT NOT NULL,
    event_source_arn TEXT,
    state TEXT NOT NULL,
    state_reason TEXT NOT NULL,
    last_result TEXT,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS event_source_mappings_function
    ON event_source_mappings (function_name, uuid);
CREATE INDEX IF NOT EXISTS event_source_mappings_source
    ON event_source_mappings (event_source_arn, uuid);
CREATE TABLE IF NOT EXISTS event_source_mapping_checkpoints (
    uuid TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (uuid, shard_id)
);
"""

_COLUMNS = "doc, state, state_reason, last_result"


def _mapping(row: Sequence[Any]) -> EventSourceMapping:
    doc = loads(row[0])
    doc["state"], doc["state_transition_reason"], doc["last_processing_result"] = row[1:4]
    return EventSourceMapping.from_doc(doc)


class SqliteEventSourceMappingStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        # The tables are this store's own; the statements are idempotent.
        database.connection().executescript(SCHEMA)

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def _write(self, sql: str, *params: Any) -> int:
        with self._db.transaction() as connection:
            return int(connection.execute(sql, params).rowcount)

    def get(self, uuid: str) -> EventSourceMapping | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM event_source_mappings WHERE uuid = ?", uuid)
        return _mapping(rows[0]) if rows else None

    def put(self, mapping: EventSourceMapping) -> None:
        self._write(
            "INSERT INTO event_source_mappings (uuid, function_name, function_arn, "
            "event_source_arn, state, state_reason, last_result, doc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uuid) DO UPDATE SET "
            "function_name = excluded.function_name, function_arn = excluded.function_arn, "
            "event_source_arn = excluded.event_source_arn, state = excluded.state, "
            "state_reason = excluded.state_reason, last_result = excluded.last_result, "
            "doc = excluded.doc",
            mapping.uuid,
            mapping.function_name,
            mapping.function_arn,
            mapping.event_source_arn,
            mapping.state,
            mapping.state_transition_reason,
            mapping.last_processing_result,
            dumps(mapping.to_doc()),
        )

    def delete(self, uuid: str) -> None:
        with self._db.transaction() as connection:
            connection.execute(
                "DELETE FROM event_source_mapping_checkpoints WHERE uuid = ?", (uuid,)
            )
            connection.execute("DELETE FROM event_source_mappings WHERE uuid = ?", (uuid,))

    def page(
        self,
        after: str | None,
        limit: int,
        *,
        function_name: str | None = None,
        function_arn: str | None = None,
        event_source_arn: str | None = None,
    ) -> list[EventSourceMapping]:
        conditions, params = ["uuid > ?"], [after or ""]
        for column, value in (
            ("function_name", function_name),
            ("function_arn", function_arn),
            ("event_source_arn", event_source_arn),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM event_source_mappings WHERE {' AND '.join(conditions)} "
            "ORDER BY uuid LIMIT ?",
            *params,
            limit,
        )
        return [_mapping(row) for row in rows]

    def in_states(self, states: Collection[str]) -> list[EventSourceMapping]:
        states = list(states)
        if not states:
            return []
        marks = ", ".join("?" for _ in states)
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM event_source_mappings WHERE state IN ({marks}) ORDER BY uuid",
            *states,
        )
        return [_mapping(row) for row in rows]

    def set_state(
        self, uuid: str, state: str, reason: str, expected: Collection[str] | None = None
    ) -> bool:
        sql = "UPDATE event_source_mappings SET state = ?, state_reason = ? WHERE uuid = ?"
        params: list[Any] = [state, reason, uuid]
        if expected is not None:
            expected = list(expected)
            if not expected:
                return False
            sql += f" AND state IN ({', '.join('?' for _ in expected)})"
            params.extend(expected)
        return self._write(sql, *params) == 1

    def record_result(self, uuid: str, result: str) -> None:
        self._write("UPDATE event_source_mappings SET last_result = ? WHERE uuid = ?", result, uuid)

    def checkpoints(self, uuid: str) -> list[ShardCheckpoint]:
        rows = self._db.query(
            "SELECT shard_id, doc FROM event_source_mapping_checkpoints WHERE uuid = ? "
            "ORDER BY shard_id",
            uuid,
        )
        return [ShardCheckpoint.from_doc(row[0], loads(row[1])) for row in rows]

    def put_checkpoint(self, uuid: str, checkpoint: ShardCheckpoint) -> None:
        self._write(
            "INSERT INTO event_source_mapping_checkpoints (uuid, shard_id, doc) "
            "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM event_source_mappings WHERE uuid = ?) "
            "ON CONFLICT (uuid, shard_id) DO UPDATE SET doc = excluded.doc",
            uuid,
            checkpoint.shard_id,
            dumps(checkpoint.to_doc()),
            uuid,
        )
