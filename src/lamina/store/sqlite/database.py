"""SQLite connections, schema and transactions shared by the SQLite stores."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

# A function's reserved concurrency, as its record holds it: indexed for the few that have one.
# (As text: SQLite 3.45 reads a BLOB argument of its JSON functions as its own binary JSON.)
RESERVED = "json_extract(CAST(doc AS TEXT), '$.reserved_concurrency')"

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS functions_reserved ON functions (RESERVED) WHERE RESERVED IS NOT NULL;
CREATE TABLE IF NOT EXISTS function_versions (
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (function, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    function TEXT NOT NULL,
    name TEXT NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (function, name)
);
CREATE TABLE IF NOT EXISTS function_children (
    function TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (function, kind, key)
);
CREATE TABLE IF NOT EXISTS layers (
    name TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS layer_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS code_signing_configs (
    id TEXT PRIMARY KEY,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS async_events (
    event_id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    qualifier TEXT,
    payload BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    requeues INTEGER NOT NULL DEFAULT 0,
    hops INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    deliveries BLOB,
    lease_owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS async_events_due
    ON async_events (next_attempt_at) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS async_events_leased
    ON async_events (lease_until) WHERE state = 'in_flight';
CREATE INDEX IF NOT EXISTS async_events_function ON async_events (function, state);
CREATE TABLE IF NOT EXISTS event_buses (
    name TEXT PRIMARY KEY,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS event_bus_rules (
    bus TEXT NOT NULL,
    name TEXT NOT NULL,
    doc BLOB NOT NULL,
    has_pattern INTEGER NOT NULL DEFAULT 0,
    next_fire_at INTEGER,
    last_fired INTEGER,
    PRIMARY KEY (bus, name)
);
CREATE INDEX IF NOT EXISTS event_bus_rules_due
    ON event_bus_rules (next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS event_bus_rules_patterns
    ON event_bus_rules (bus, name) WHERE has_pattern = 1;
CREATE TABLE IF NOT EXISTS event_bus_targets (
    bus TEXT NOT NULL,
    rule TEXT NOT NULL,
    id TEXT NOT NULL,
    arn TEXT NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (bus, rule, id)
);
CREATE INDEX IF NOT EXISTS event_bus_targets_arn ON event_bus_targets (bus, arn, rule);
CREATE TABLE IF NOT EXISTS event_bus_stamp (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stamp INTEGER NOT NULL
);
INSERT OR IGNORE INTO event_bus_stamp (id, stamp) VALUES (1, 0);
""".replace("RESERVED", RESERVED)


def dumps(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def loads(raw: bytes) -> dict[str, Any]:
    value = orjson.loads(raw)
    assert isinstance(value, dict)
    return value


class Database:
    """One SQLite file; a connection per thread, writers serialised by BEGIN IMMEDIATE."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        # Bumped on every write, so in-process caches know when to re-read.
        self.changes = 0
        # executescript commits on its own; the statements are idempotent.
        self.connection().executescript(SCHEMA)

    def connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, isolation_level=None, timeout=30.0)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
            self._local.depth = 0
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self.connection()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield connection
            finally:
                self._local.depth -= 1
            return
        connection.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        stamp = self.changes
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        else:
            connection.execute("COMMIT")
            # Again after the commit: a reader that saw the stamp of a statement inside this
            # transaction may have read the state before it and cached it under that stamp.
            # Only if one moved it: queue and rule writes bypass `execute` so that they
            # leave function caches alone.
            if self.changes != stamp:
                self.changes += 1
        finally:
            self._local.depth = 0

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return self.connection().execute(sql, params).fetchall()

    def query_one(self, sql: str, *params: Any) -> Any:
        row = self.connection().execute(sql, params).fetchone()
        return row[0] if row else None

    def execute(self, sql: str, *params: Any) -> None:
        self.connection().execute(sql, params)
        self.changes += 1
