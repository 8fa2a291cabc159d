"""The audit trail in PostgreSQL: every node's API calls in one table, bounded, newest kept.

A record is stored as orjson's bytes (it comes back exactly as appended) beside the members
a query filters on, each in a column computed as `AuditQuery.matches` reads it, so the whole
query runs on the server. Records are numbered by a running byte offset (`pos`, the end of
the record in a log that never shrinks), taken from a one-row counter under its row lock:
appenders on any number of nodes are serialised there, so offsets commit in order and
readers never see a hole that fills later. Dropping whatever ends more than `max_bytes`
before the newest offset keeps the table within its bound, as the file store's segments do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import psycopg

from lamina.store.errors import StorageError
from lamina.store.postgres.database import PgDatabase
from lamina.store.protocols.audit import AuditQuery, function_name

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS audit_records (
    pos bigint PRIMARY KEY,
    time text COLLATE "C" NOT NULL,
    operation text COLLATE "C" NOT NULL,
    function text COLLATE "C",
    status bigint NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_function ON audit_records (function, pos)
    WHERE function IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_log (
    id integer PRIMARY KEY CHECK (id = 1),
    end_pos bigint NOT NULL
);
INSERT INTO audit_log (id, end_pos) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
""",
}


class PgAuditStore:
    """Implements `AuditStore`: any number of writers and readers, on any nodes."""

    def __init__(self, database: PgDatabase, max_bytes: int, *, owned: bool = False) -> None:
        self._db = database
        self.max_bytes = max_bytes
        self._owned = owned
        database.migrate("audit", MIGRATIONS)

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        rows = [_columns(record) for record in records]
        # A line's size as the file store counts it: the JSON and its newline.
        sizes = [len(row[-1]) + 1 for row in rows]
        total, ends = 0, []
        for size in sizes:
            total += size
            ends.append(total)
        try:
            with self._db.transaction(exclusive=False) as db, db.pipeline():
                # The batch's offsets follow the counter's old value; the counter's row lock
                # serialises appenders until this transaction ends.
                db.execute(
                    "WITH counter AS (UPDATE audit_log SET end_pos = end_pos + %s WHERE id = 1 "
                    "RETURNING end_pos - %s AS start) "
                    "INSERT INTO audit_records (pos, time, operation, function, status, record) "
                    "SELECT counter.start + v.pos, v.time, v.operation, v.function, v.status, "
                    "v.record FROM counter, unnest(%s::bigint[], %s::text[], %s::text[], "
                    "%s::text[], %s::bigint[], %s::bytea[]) "
                    "AS v(pos, time, operation, function, status, record)",
                    (total, total, ends, *(list(column) for column in zip(*rows, strict=True))),
                )
                db.execute(
                    "DELETE FROM audit_records WHERE pos <= "
                    "(SELECT end_pos FROM audit_log WHERE id = 1) - %s",
                    (self.max_bytes,),
                )
        except psycopg.Error as error:
            raise StorageError(f"could not write the audit log: {error}") from error

    def query(self, query: AuditQuery) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if query.since is not None:
            clauses.append("time >= %s")
            params.append(query.since)
        if query.failed:
            clauses.append("status >= 400")
        if query.operation is not None:
            clauses.append("operation = %s")
            params.append(query.operation.lower())
        if query.function is not None:
            clauses.append("function = %s")
            params.append(function_name(query.function))
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = self._db.query(
            f"SELECT record FROM audit_records {where}ORDER BY pos DESC LIMIT %s",
            *params,
            query.limit,
        )
        return [orjson.loads(row[0]) for row in reversed(rows)]

    def close(self) -> None:
        if self._owned:
            self._db.close()


def _columns(record: Mapping[str, Any]) -> tuple[str, str, str | None, int, bytes]:
    """(time, operation, function, status, JSON) as `AuditQuery.matches` sees the record."""
    moment = record.get("Time", "")
    resource = record.get("Resource")
    try:
        status = int(record.get("Status") or 0)
    except (TypeError, ValueError):
        status = 0
    return (
        moment if isinstance(moment, str) else "",
        str(record.get("Operation")).lower(),
        function_name(resource) if isinstance(resource, str) else None,
        status,
        orjson.dumps(record),
    )
