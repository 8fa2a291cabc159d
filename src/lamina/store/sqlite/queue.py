"""The durable asynchronous-event queue in SQLite.

Writes go straight to the connection rather than through `Database.execute`: that bumps the
change counter caches of function configurations watch, and queue traffic changes none.
Connections that write here switch to `synchronous=FULL`, so a committed event survives a
power cut as well as a crash; callers amortise the fsync by committing many writes at once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from lamina.store.protocols import EVENT_STATES, AsyncEvent
from lamina.store.sqlite.database import Database

_COLUMNS = (
    "event_id, function, qualifier, payload, enqueued_at, next_attempt_at, state, "
    "attempts, requeues, hops, last_error, deliveries"
)


def _event(row: Sequence[Any]) -> AsyncEvent:
    return AsyncEvent(
        event_id=row[0],
        function=row[1],
        qualifier=row[2],
        payload=bytes(row[3]),
        enqueued_at=row[4],
        next_attempt_at=row[5],
        state=row[6],
        attempts=row[7],
        requeues=row[8],
        hops=row[9],
        last_error=row[10],
        deliveries=bytes(row[11]) if row[11] is not None else None,
    )


class SqliteAsyncQueue:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._durable = threading.local()

    def transaction(self) -> AbstractContextManager[Any]:
        self._connection()
        return self._db.transaction()

    def _connection(self) -> sqlite3.Connection:
        connection = self._db.connection()
        if not getattr(self._durable, "set", False):
            connection.execute("PRAGMA synchronous=FULL")
            self._durable.set = True
        return connection

    def _write(self, sql: str, *params: Any) -> int:
        connection = self._connection()
        with self._db.transaction():
            return connection.execute(sql, params).rowcount

    def enqueue(self, events: Sequence[AsyncEvent]) -> None:
        rows = [
            (
                event.event_id,
                event.function,
                event.qualifier,
                event.payload,
                event.enqueued_at,
                event.next_attempt_at,
                event.state,
                event.attempts,
                event.requeues,
                event.hops,
                event.last_error,
                event.deliveries,
            )
            for event in events
        ]
        connection = self._connection()
        with self._db.transaction():
            connection.executemany(
                f"INSERT INTO async_events ({_COLUMNS}) VALUES ({', '.join('?' * 12)})",
                rows,
            )

    def claim(self, owner: str, now: float, limit: int, lease_s: float) -> list[AsyncEvent]:
        connection = self._connection()
        with self._db.transaction():
            rows = connection.execute(
                "UPDATE async_events SET state = 'in_flight', lease_owner = ?, lease_until = ? "
                "WHERE event_id IN (SELECT event_id FROM async_events "
                "WHERE state = 'queued' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at LIMIT ?) "
                f"RETURNING {_COLUMNS}",
                (owner, now + lease_s, now, limit),
            ).fetchall()
        events = [_event(row) for row in rows]
        # RETURNING gives rows in no particular order; hand out the longest-waiting first.
        events.sort(key=lambda event: event.next_attempt_at)
        return events

    def renew(self, owner: str, until: float) -> int:
        return self._write(
            "UPDATE async_events SET lease_until = ? WHERE state = 'in_flight' AND lease_owner = ?",
            until,
            owner,
        )

    def complete(self, event_id: str, owner: str) -> None:
        self._write(
            "DELETE FROM async_events WHERE event_id = ? AND lease_owner = ?", event_id, owner
        )

    def retry(
        self,
        event_id: str,
        owner: str,
        next_attempt_at: float,
        attempts: int,
        requeues: int,
        last_error: str | None,
        deliveries: bytes | None = None,
    ) -> None:
        self._write(
            "UPDATE async_events SET state = 'queued', next_attempt_at = ?, attempts = ?, "
            "requeues = ?, last_error = ?, deliveries = ?, lease_owner = NULL, "
            "lease_until = NULL WHERE event_id = ? AND lease_owner = ?",
            next_attempt_at,
            attempts,
            requeues,
            last_error,
            deliveries,
            event_id,
            owner,
        )

    def fail(self, event_id: str, owner: str, reason: str) -> None:
        self._write(
            "UPDATE async_events SET state = 'failed', last_error = ?, lease_owner = NULL, "
            "lease_until = NULL WHERE event_id = ? AND lease_owner = ?",
            reason,
            event_id,
            owner,
        )

    def release(self, owner: str) -> int:
        return self._write(
            "UPDATE async_events SET state = 'queued', lease_owner = NULL, lease_until = NULL "
            "WHERE state = 'in_flight' AND lease_owner = ?",
            owner,
        )

    def recover(self, now: float) -> int:
        return self._write(
            "UPDATE async_events SET state = 'queued', lease_owner = NULL, lease_until = NULL "
            "WHERE state = 'in_flight' AND lease_until < ?",
            now,
        )

    def counts(self, function: str | None = None) -> dict[str, dict[str, int]]:
        sql = (
            "SELECT function, CASE WHEN state = 'queued' AND "
            "(attempts > 0 OR requeues > 0 OR deliveries IS NOT NULL) THEN 'retrying' "
            "ELSE state END AS shown, count(*) FROM async_events"
        )
        params: tuple[Any, ...] = ()
        if function is not None:
            sql += " WHERE function = ?"
            params = (function,)
        result: dict[str, dict[str, int]] = {}
        for name, state, count in self._db.query(sql + " GROUP BY function, shown", *params):
            result.setdefault(name, dict.fromkeys(EVENT_STATES, 0))[state] = count
        return result

    def redrive(self, function: str, event_id: str | None, now: float) -> list[str]:
        sql = (
            "UPDATE async_events SET state = 'queued', enqueued_at = ?, next_attempt_at = ?, "
            "attempts = 0, requeues = 0, deliveries = NULL, last_error = NULL "
            "WHERE function = ? AND state = 'failed'"
        )
        params: list[Any] = [now, now, function]
        if event_id is not None:
            sql += " AND event_id = ?"
            params.append(event_id)
        connection = self._connection()
        with self._db.transaction():
            rows = connection.execute(sql + " RETURNING event_id", params).fetchall()
        return sorted(row[0] for row in rows)

    def events(self, function: str, limit: int = 50) -> list[AsyncEvent]:
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM async_events WHERE function = ? "
            "ORDER BY state = 'failed' DESC, next_attempt_at LIMIT ?",
            function,
            limit,
        )
        return [_event(row) for row in rows]
