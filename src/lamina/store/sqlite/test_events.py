"""Saved test events in SQLite, in the control plane's database (beside `functions`, which
they reference: deleting a function deletes its events, the connection enforcing foreign
keys)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from lamina.store.protocols.test_events import SavedEvent
from lamina.store.sqlite.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS saved_test_events (
    function TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    modified REAL NOT NULL,
    PRIMARY KEY (function, name)
);
"""


class SqliteSavedEventStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        database.connection().executescript(SCHEMA)

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def put(self, event: SavedEvent) -> bool:
        # Straight to the connection: saved events are in no cache, so they move no stamp.
        with self._db.transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO saved_test_events (function, name, body, modified) "
                "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM functions WHERE name = ?) "
                "ON CONFLICT (function, name) DO UPDATE SET "
                "body = excluded.body, modified = excluded.modified",
                (event.function, event.name, event.body, event.modified, event.function),
            )
            return cursor.rowcount > 0

    def get(self, function: str, name: str) -> SavedEvent | None:
        rows = self._db.query(
            "SELECT function, name, body, modified FROM saved_test_events "
            "WHERE function = ? AND name = ?",
            function,
            name,
        )
        return SavedEvent(*rows[0]) if rows else None

    def list(self, function: str) -> list[SavedEvent]:
        rows = self._db.query(
            "SELECT function, name, body, modified FROM saved_test_events "
            "WHERE function = ? ORDER BY name",
            function,
        )
        return [SavedEvent(*row) for row in rows]

    def count(self, function: str) -> int:
        sql = "SELECT count(*) FROM saved_test_events WHERE function = ?"
        return int(self._db.query_one(sql, function))

    def delete(self, function: str, name: str) -> bool:
        with self._db.transaction() as connection:
            cursor = connection.execute(
                "DELETE FROM saved_test_events WHERE function = ? AND name = ?", (function, name)
            )
            return cursor.rowcount > 0
