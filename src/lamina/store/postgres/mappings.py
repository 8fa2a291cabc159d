"""Event source mappings and their shard checkpoints in PostgreSQL.

As in SQLite, a mapping's state, transition reason and last processing result have columns
of their own, so that pollers (on any node) move them without rewriting the document. A
checkpoint references its mapping and goes with it; a poller's late write for a mapping
being deleted waits for the delete and then writes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import Any

from lamina.model.mappings import EventSourceMapping, ShardCheckpoint
from lamina.store.postgres.database import PgDatabase, dumps, loads

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS event_source_mappings (
    uuid text COLLATE "C" PRIMARY KEY,
    function_name text NOT NULL,
    function_arn text NOT NULL,
    event_source_arn text,
    state text NOT NULL,
    state_reason text NOT NULL,
    last_result text,
    doc bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS event_source_mappings_function
    ON event_source_mappings (function_name, uuid);
CREATE INDEX IF NOT EXISTS event_source_mappings_source
    ON event_source_mappings (event_source_arn, uuid);
CREATE TABLE IF NOT EXISTS event_source_mapping_checkpoints (
    uuid text COLLATE "C" NOT NULL
        REFERENCES event_source_mappings (uuid) ON DELETE CASCADE,
    shard_id text COLLATE "C" NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (uuid, shard_id)
);
""",
}

_COLUMNS = "doc, state, state_reason, last_result"


def _mapping(row: Sequence[Any]) -> EventSourceMapping:
    doc = loads(row[0])
    doc["state"], doc["state_transition_reason"], doc["last_processing_result"] = row[1:4]
    return EventSourceMapping.from_doc(doc)


class PgEventSourceMappingStore:
    def __init__(self, database: PgDatabase) -> None:
        self._db = database
        database.migrate("mappings", MIGRATIONS)

    def transaction(self) -> AbstractContextManager[Any]:
        # Exclusive: a caller's read-modify-write is serialised against every node's, as
        # SQLite's BEGIN IMMEDIATE serialises it.
        return self._db.transaction()

    def _write(self, sql: str, *params: Any) -> int:
        # One statement (atomic on its own), or part of the caller's transaction; a mapping
        # changes no function, so no change stamp moves.
        return self._db.execute(sql, *params, stamp=None)

    def get(self, uuid: str) -> EventSourceMapping | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM event_source_mappings WHERE uuid = %s", uuid)
        return _mapping(rows[0]) if rows else None

    def put(self, mapping: EventSourceMapping) -> None:
        self._write(
            "INSERT INTO event_source_mappings (uuid, function_name, function_arn, "
            "event_source_arn, state, state_reason, last_result, doc) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (uuid) DO UPDATE SET "
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
        # The checkpoints go by the foreign key's cascade, in the same statement.
        self._write("DELETE FROM event_source_mappings WHERE uuid = %s", uuid)

    def page(
        self,
        after: str | None,
        limit: int,
        *,
        function_name: str | None = None,
        function_arn: str | None = None,
        event_source_arn: str | None = None,
    ) -> list[EventSourceMapping]:
        conditions, params = ["uuid > %s"], [after or ""]
        for column, value in (
            ("function_name", function_name),
            ("function_arn", function_arn),
            ("event_source_arn", event_source_arn),
        ):
            if value is not None:
                conditions.append(f"{column} = %s")
                params.append(value)
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM event_source_mappings WHERE {' AND '.join(conditions)} "
            "ORDER BY uuid LIMIT %s",
            *params,
            limit,
        )
        return [_mapping(row) for row in rows]

    def in_states(self, states: Collection[str]) -> list[EventSourceMapping]:
        states = list(states)
        if not states:
            return []
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM event_source_mappings WHERE state = ANY(%s) ORDER BY uuid",
            states,
        )
        return [_mapping(row) for row in rows]

    def set_state(
        self, uuid: str, state: str, reason: str, expected: Collection[str] | None = None
    ) -> bool:
        # A compare-and-set: of two racing transitions the second waits for the first's row
        # lock, then sees the state it left and matches no row.
        sql = "UPDATE event_source_mappings SET state = %s, state_reason = %s WHERE uuid = %s"
        params: list[Any] = [state, reason, uuid]
        if expected is not None:
            expected = list(expected)
            if not expected:
                return False
            sql += " AND state = ANY(%s)"
            params.append(expected)
        return self._write(sql, *params) == 1

    def record_result(self, uuid: str, result: str) -> None:
        self._write(
            "UPDATE event_source_mappings SET last_result = %s WHERE uuid = %s", result, uuid
        )

    def checkpoints(self, uuid: str) -> list[ShardCheckpoint]:
        rows = self._db.query(
            "SELECT shard_id, doc FROM event_source_mapping_checkpoints WHERE uuid = %s "
            "ORDER BY shard_id",
            uuid,
        )
        return [ShardCheckpoint.from_doc(row[0], loads(row[1])) for row in rows]

    def put_checkpoint(self, uuid: str, checkpoint: ShardCheckpoint) -> None:
        # Locking the mapping's key makes a racing delete either wait for this write (and
        # then cascade to it) or win first (and then this selects no mapping, writes nothing).
        self._write(
            "INSERT INTO event_source_mapping_checkpoints (uuid, shard_id, doc) "
            "SELECT uuid, %s, %s FROM event_source_mappings WHERE uuid = %s FOR KEY SHARE "
            "ON CONFLICT (uuid, shard_id) DO UPDATE SET doc = excluded.doc",
            checkpoint.shard_id,
            dumps(checkpoint.to_doc()),
            uuid,
        )
