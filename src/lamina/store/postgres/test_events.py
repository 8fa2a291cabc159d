"""Saved test events in PostgreSQL. They reference their function (ON DELETE CASCADE), so
deleting the function on any node deletes them."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from lamina.store.postgres.database import PgDatabase
from lamina.store.protocols.test_events import SavedEvent

# Opened after the functions store, whose migration makes the table referenced here.
MIGRATIONS = {
    1: """
    CREATE TABLE IF NOT EXISTS saved_test_events (
        function TEXT COLLATE "C" NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
        name TEXT COLLATE "C" NOT NULL,
        body TEXT NOT NULL,
        modified DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (function, name)
    );
    """,
}

_COLUMNS = "function, name, body, modified"


class PgSavedEventStore:
    def __init__(self, database: PgDatabase) -> None:
        self._db = database
        database.migrate("saved_test_events", MIGRATIONS)

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def put(self, event: SavedEvent) -> bool:
        # No change stamp: saved events are in no cache.
        moved = self._db.execute(
            f"INSERT INTO saved_test_events ({_COLUMNS}) "
            "SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM functions WHERE name = %s) "
            "ON CONFLICT (function, name) DO UPDATE SET "
            "body = excluded.body, modified = excluded.modified",
            event.function,
            event.name,
            event.body,
            event.modified,
            event.function,
            stamp=None,
        )
        return moved > 0

    def get(self, function: str, name: str) -> SavedEvent | None:
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM saved_test_events WHERE function = %s AND name = %s",
            function,
            name,
        )
        return SavedEvent(*rows[0]) if rows else None

    def list(self, function: str) -> list[SavedEvent]:
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM saved_test_events WHERE function = %s ORDER BY name",
            function,
        )
        return [SavedEvent(*row) for row in rows]

    def count(self, function: str) -> int:
        return int(
            self._db.query_one(
                "SELECT count(*) FROM saved_test_events WHERE function = %s", function
            )
        )

    def delete(self, function: str, name: str) -> bool:
        deleted = self._db.execute(
            "DELETE FROM saved_test_events WHERE function = %s AND name = %s",
            function,
            name,
            stamp=None,
        )
        return deleted > 0
