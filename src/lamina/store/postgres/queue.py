"""The durable asynchronous-event queue in PostgreSQL: one row per event, leased by claimers.

A claim locks the due rows it takes with `FOR UPDATE SKIP LOCKED`, so claimers on any number
of nodes take disjoint events without waiting for one another; backoff is the `run_at`
column (an event is not due before it), and an event that reached its end is deleted. No
transaction stays open while a function runs: a lease is a column pair (owner, until) that
its holder renews, and an event whose holder stopped renewing is handed back by `recover`.

The table churns (every event is inserted, updated a few times and deleted), so it is
vacuumed far more eagerly than PostgreSQL's defaults would: dead rows under the due index
otherwise slow every claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from lamina.store.postgres.database import PgDatabase
from lamina.store.protocols import EVENT_STATES, AsyncEvent

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS async_events (
    event_id text COLLATE "C" PRIMARY KEY,
    function text COLLATE "C" NOT NULL,
    qualifier text,
    payload bytea NOT NULL,
    enqueued_at double precision NOT NULL,
    run_at double precision NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    requeues integer NOT NULL DEFAULT 0,
    hops integer NOT NULL DEFAULT 0,
    last_error text,
    deliveries bytea,
    lease_owner text,
    lease_until double precision
) WITH (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.02
);
CREATE INDEX IF NOT EXISTS async_events_due ON async_events (run_at) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS async_events_leased
    ON async_events (lease_until) WHERE state = 'in_flight';
CREATE INDEX IF NOT EXISTS async_events_owner
    ON async_events (lease_owner) WHERE state = 'in_flight';
CREATE INDEX IF NOT EXISTS async_events_function ON async_events (function, state);
""",
}

_COLUMNS = (
    "event_id, function, qualifier, payload, enqueued_at, run_at, state, "
    "attempts, requeues, hops, last_error, deliveries"
)
_INSERT = f"INSERT INTO async_events ({_COLUMNS}) VALUES ({', '.join(['%s'] * 12)})"
# The due rows nobody else is taking, oldest due first; rows another claimer has locked are
# skipped rather than waited for. A row that changed between the scan and its lock is
# checked again against the WHERE (so a row just claimed elsewhere is not taken twice).
_CLAIM = (
    "WITH due AS (SELECT event_id FROM async_events "
    "WHERE state = 'queued' AND run_at <= %s ORDER BY run_at LIMIT %s "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE async_events e SET state = 'in_flight', lease_owner = %s, lease_until = %s "
    "FROM due WHERE e.event_id = due.event_id RETURNING "
    + ", ".join(f"e.{column.strip()}" for column in _COLUMNS.split(","))
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


class PgAsyncQueue:
    def __init__(self, database: PgDatabase) -> None:
        self._db = database
        database.migrate("queue", MIGRATIONS)

    def transaction(self) -> AbstractContextManager[Any]:
        # Not the database's exclusive write lock: the row locks serialise what must be, and
        # that lock would make every node's queue commits queue up behind one another.
        return self._db.transaction(exclusive=False)

    def _write(self, sql: str, *params: Any) -> int:
        # One statement: autocommit on its own, or part of the caller's transaction. It moves
        # no change stamp: queue traffic changes nothing a cache holds.
        return self._db.execute(sql, *params, stamp=None)

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
        if len(rows) == 1:
            self._write(_INSERT, *rows[0])
        elif rows:
            # All or nothing (a duplicate id fails the batch), pipelined by psycopg.
            with self._db.transaction(exclusive=False) as connection, connection.cursor() as cursor:
                cursor.executemany(_INSERT, rows)

    def claim(self, owner: str, now: float, limit: int, lease_s: float) -> list[AsyncEvent]:
        rows = self._db.query(_CLAIM, now, limit, owner, now + lease_s)
        events = [_event(row) for row in rows]
        # RETURNING gives rows in no particular order; hand out the longest-waiting first.
        events.sort(key=lambda event: event.next_attempt_at)
        return events

    def renew(self, owner: str, until: float) -> int:
        return self._write(
            "UPDATE async_events SET lease_until = %s "
            "WHERE state = 'in_flight' AND lease_owner = %s",
            until,
            owner,
        )

    def complete(self, event_id: str, owner: str) -> None:
        self._write(
            "DELETE FROM async_events WHERE event_id = %s AND lease_owner = %s", event_id, owner
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
            "UPDATE async_events SET state = 'queued', run_at = %s, attempts = %s, "
            "requeues = %s, last_error = %s, deliveries = %s, lease_owner = NULL, "
            "lease_until = NULL WHERE event_id = %s AND lease_owner = %s",
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
            "UPDATE async_events SET state = 'failed', last_error = %s, lease_owner = NULL, "
            "lease_until = NULL WHERE event_id = %s AND lease_owner = %s",
            reason,
            event_id,
            owner,
        )

    def release(self, owner: str) -> int:
        return self._write(
            "UPDATE async_events SET state = 'queued', lease_owner = NULL, lease_until = NULL "
            "WHERE state = 'in_flight' AND lease_owner = %s",
            owner,
        )

    def recover(self, now: float) -> int:
        # Rows locked meanwhile are skipped, not waited for: their holder is settling them
        # (or another node is recovering them). Every node recovers, so none ever waits on
        # another here, and two recovering nodes cannot deadlock.
        return self._write(
            "UPDATE async_events SET state = 'queued', lease_owner = NULL, lease_until = NULL "
            "WHERE event_id IN (SELECT event_id FROM async_events "
            "WHERE state = 'in_flight' AND lease_until < %s FOR UPDATE SKIP LOCKED)",
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
            sql += " WHERE function = %s"
            params = (function,)
        result: dict[str, dict[str, int]] = {}
        for name, state, count in self._db.query(sql + " GROUP BY 1, 2", *params):
            result.setdefault(name, dict.fromkeys(EVENT_STATES, 0))[state] = count
        return result

    def redrive(self, function: str, event_id: str | None, now: float) -> list[str]:
        # A racing redrive waits for the row lock, then finds the row no longer failed
        # (READ COMMITTED re-checks the WHERE on the new version) and leaves it.
        sql = (
            "UPDATE async_events SET state = 'queued', enqueued_at = %s, run_at = %s, "
            "attempts = 0, requeues = 0, deliveries = NULL, last_error = NULL "
            "WHERE function = %s AND state = 'failed'"
        )
        params: list[Any] = [now, now, function]
        if event_id is not None:
            sql += " AND event_id = %s"
            params.append(event_id)
        rows = self._db.query(sql + " RETURNING event_id", *params)
        return sorted(row[0] for row in rows)

    def events(self, function: str, limit: int = 50) -> list[AsyncEvent]:
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM async_events WHERE function = %s "
            "ORDER BY state = 'failed' DESC, run_at LIMIT %s",
            function,
            limit,
        )
        return [_event(row) for row in rows]
