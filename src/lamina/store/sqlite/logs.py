"""The log store in SQLite: groups, streams and events in their own database (WAL mode).

Every write goes through one connection under one lock: the sink's writer thread appends
engine output in batches, and the Logs API's mutations take the same lock for a moment.
Reads use a connection per thread, so queries never wait for writers (WAL).

Events are indexed by (stream, ts) for GetLogEvents and by (group, ts) for FilterLogEvents;
both indexes end in the rowid, so (ts, id) is a total order that pagination tokens encode.

Disk use is bounded: once the database outgrows `max_bytes`, the oldest events are deleted
(as journald drops its oldest journals) and the freed pages are given back to the file system.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from lamina.errors import ResourceAlreadyExists, ResourceNotFound
from lamina.store.errors import StorageError
from lamina.store.protocols.logs import (
    DAY_MS,
    EVENT_OVERHEAD,
    GROUP_MISSING,
    MAX_PAGE_BYTES,
    STREAM_MISSING,
    Batch,
    LogEvent,
    LogGroup,
    LogStream,
    MessageFilter,
    Position,
    message_bytes,
)

# Pruning frees a little more than the excess, so that a full store is not pruned per batch.
_PRUNE_TARGET = 0.85
_PRUNE_CHUNK = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    retention_days INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS log_streams (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    first_event_ms INTEGER,
    last_event_ms INTEGER,
    last_ingestion_ms INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    UNIQUE (group_id, name)
);
CREATE TABLE IF NOT EXISTS log_events (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    stream_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    ingested_ms INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (stream_id, ts);
CREATE INDEX IF NOT EXISTS log_events_by_group ON log_events (group_id, ts);
"""


class SqliteLogStore:
    """Groups, streams and events in their own database; implements `LogStore`."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._db = self._connect()
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        # Rows per INSERT: a power of two within SQLite's bound variables (999 before 3.32).
        variables = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._max_rows = 1 << (min(_MAX_ROWS, variables // 5).bit_length() - 1)
        # The WAL is checkpointed well before it could rival the bound it sits beside.
        pages = max(16, min(1000, max_bytes // self._page_size // 8))
        self._db.execute(f"PRAGMA wal_autocheckpoint={pages}")
        self._db.execute(f"PRAGMA journal_size_limit={pages * self._page_size}")
        # (group, stream) -> (group_id, stream_id), for the writer's appends.
        self._ids: dict[tuple[str, str], tuple[int, int]] = {}
        # Bytes appended since the bound was last checked; checking costs two pragmas, so it
        # happens once per twentieth of the bound.
        self._unchecked = 0

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # auto_vacuum only takes effect before the first table exists.
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.executescript(_SCHEMA)
        return db

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection: readers never wait for the writer (WAL)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                # SQLite rolls back by itself on some errors (SQLITE_FULL); a second
                # ROLLBACK would fail and hide the first error.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                # Ids resolved in the transaction may name rows it never created.
                self._ids.clear()
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ groups, streams

    def create_group(self, name: str) -> None:
        with self._writing() as db:
            try:
                db.execute(
                    "INSERT INTO log_groups (name, created_ms) VALUES (?, ?)", (name, _now())
                )
            except sqlite3.IntegrityError:
                raise ResourceAlreadyExists("The specified log group already exists") from None

    def delete_group(self, name: str) -> None:
        with self._writing() as db:
            group_id = _group_id(db, name)
            db.execute("DELETE FROM log_events WHERE group_id = ?", (group_id,))
            db.execute("DELETE FROM log_streams WHERE group_id = ?", (group_id,))
            db.execute("DELETE FROM log_groups WHERE id = ?", (group_id,))
            self._ids = {key: ids for key, ids in self._ids.items() if ids[0] != group_id}
        self.release_space()

    def create_stream(self, group: str, stream: str) -> None:
        with self._writing() as db:
            group_id = _group_id(db, group)
            try:
                db.execute(
                    "INSERT INTO log_streams (group_id, name, created_ms) VALUES (?, ?, ?)",
                    (group_id, stream, _now()),
                )
            except sqlite3.IntegrityError:
                raise ResourceAlreadyExists("The specified log stream already exists") from None

    def delete_stream(self, group: str, stream: str) -> None:
        with self._writing() as db:
            group_id = _group_id(db, group)
            stream_id = _stream_id(db, group_id, stream)
            (size,) = db.execute(
                "SELECT stored_bytes FROM log_streams WHERE id = ?", (stream_id,)
            ).fetchone()
            db.execute("DELETE FROM log_events WHERE stream_id = ?", (stream_id,))
            db.execute("DELETE FROM log_streams WHERE id = ?", (stream_id,))
            db.execute(
                "UPDATE log_groups SET stored_bytes = stored_bytes - ? WHERE id = ?",
                (size, group_id),
            )
            self._ids.pop((group, stream), None)

    def set_retention(self, group: str, days: int | None) -> None:
        with self._writing() as db:
            group_id = _group_id(db, group)
            db.execute("UPDATE log_groups SET retention_days = ? WHERE id = ?", (days, group_id))
        if days is not None:
            self.apply_retention()

    def group(self, name: str) -> LogGroup:
        row = (
            self._reader()
            .execute(
                "SELECT id, name, created_ms, retention_days, stored_bytes FROM log_groups "
                "WHERE name = ?",
                (name,),
            )
            .fetchone()
        )
        if row is None:
            raise ResourceNotFound(GROUP_MISSING)
        return LogGroup(*row)

    def groups(self, after: str | None, limit: int, prefix: str | None = None) -> list[LogGroup]:
        """Groups in name order after `after`; `prefix` narrows the range through the index."""
        sql = "SELECT id, name, created_ms, retention_days, stored_bytes FROM log_groups"
        clauses, params = ["name > ?"], [after or ""]
        if prefix:
            # Group names cannot hold GLOB's special characters, and a GLOB prefix is
            # answered from the name index.
            clauses.append("name GLOB ?")
            params.append(prefix + "*")
        rows = self._reader().execute(
            f"{sql} WHERE {' AND '.join(clauses)} ORDER BY name LIMIT ?", (*params, limit)
        )
        return [LogGroup(*row) for row in rows]

    def streams(self, group_id: int) -> list[LogStream]:
        rows = self._reader().execute(
            "SELECT id, name, created_ms, first_event_ms, last_event_ms, last_ingestion_ms "
            "FROM log_streams WHERE group_id = ? ORDER BY name",
            (group_id,),
        )
        return [LogStream(*row) for row in rows]

    def stream(self, group_id: int, name: str) -> LogStream:
        row = (
            self._reader()
            .execute(
                "SELECT id, name, created_ms, first_event_ms, last_event_ms, last_ingestion_ms "
                "FROM log_streams WHERE group_id = ? AND name = ?",
                (group_id, name),
            )
            .fetchone()
        )
        if row is None:
            raise ResourceNotFound(STREAM_MISSING)
        return LogStream(*row)

    # ------------------------------------------------------------------------ reading

    def read_stream(
        self,
        stream_id: int,
        start: int | None,
        end: int | None,
        position: Position | None,
        forward: bool,
        limit: int,
    ) -> list[LogEvent]:
        clauses, params = ["stream_id = ?"], [stream_id]
        if start is not None:
            clauses.append("ts >= ?")
            params.append(start)
        if end is not None:
            clauses.append("ts < ?")
            params.append(end)
        if position is not None:
            clauses.append("(ts, id) > (?, ?)" if forward else "(ts, id) < (?, ?)")
            params += list(position)
        order = "ts, id" if forward else "ts DESC, id DESC"
        with closing(
            self._reader().execute(
                f"SELECT {_EVENT_COLUMNS} FROM log_events WHERE {' AND '.join(clauses)} "
                f"ORDER BY {order}",
                params,
            )
        ) as rows:
            page, _ = _page(_events(rows), limit)
        if not forward:
            page.reverse()
        return page

    def filter_events(
        self,
        group_id: int,
        stream_ids: Sequence[int] | None,
        start: int | None,
        end: int | None,
        pattern: MessageFilter,
        after: Position | None,
        limit: int,
    ) -> tuple[list[LogEvent], bool]:
        clauses: list[str] = ["group_id = ?"]
        params: list[Any] = [group_id]
        if stream_ids is not None:
            clauses.append(f"stream_id IN ({', '.join('?' for _ in stream_ids)})")
            params += stream_ids
        if start is not None:
            clauses.append("ts >= ?")
            params.append(start)
        if end is not None:
            clauses.append("ts <= ?")
            params.append(end)
        if after is not None:
            clauses.append("(ts, id) > (?, ?)")
            params += list(after)
        # Term patterns are tested entirely here, so a search over a million lines runs
        # inside SQLite; for the others this is a cheap necessary condition.
        for term in pattern.all_of:
            clauses.append("instr(message, ?) > 0")
            params.append(term)
        for term in pattern.none_of:
            clauses.append("instr(message, ?) = 0")
            params.append(term)
        if pattern.any_of:
            clauses.append("(" + " OR ".join("instr(message, ?) > 0" for _ in pattern.any_of) + ")")
            params += pattern.any_of
        # Closed at once: a half-read statement would hold a read snapshot, which keeps the
        # WAL from being checkpointed.
        with closing(
            self._reader().execute(
                f"SELECT {_EVENT_COLUMNS} FROM log_events WHERE {' AND '.join(clauses)} "
                "ORDER BY ts, id",
                params,
            )
        ) as rows:
            events = _events(rows)
            if not pattern.exact:
                events = (event for event in events if pattern.matches(event.message))
            return _page(events, limit)

    # ------------------------------------------------------------------------ writing

    def append(self, batches: Iterable[Batch], create: bool = True) -> int:
        """Store lines, one `(group, stream, [(timestamp_ms, message), ...])` batch per
        stream, in one transaction; returns the bytes stored.

        With `create`, missing groups and streams are created, as Lambda does for a
        function's first output; PutLogEvents passes False and checks first. Every write
        path comes through here, so here is where the disk bound is kept.
        """
        try:
            return self._append(batches, create)
        except sqlite3.OperationalError as error:
            # SQLITE_FULL above all: the sink keeps serving and reports the loss later.
            raise StorageError(str(error)) from error

    def _append(self, batches: Iterable[Batch], create: bool) -> int:
        now = _now()
        rows: list[int | str] = []
        streams: list[int] = []
        groups: dict[int, int] = {}
        with self._writing() as db:
            for group, stream, lines in batches:
                if not lines:
                    continue
                ids = self._ids.get((group, stream))
                if ids is None:
                    ids = self._resolve(db, group, stream, create)
                    self._ids[(group, stream)] = ids
                group_id, stream_id = ids
                for stamp, message in lines:
                    rows += (group_id, stream_id, stamp, now, message)
                size = message_bytes("".join([message for _, message in lines]))
                stamps = [stamp for stamp, _ in lines]
                streams += (stream_id, size, min(stamps), max(stamps))
                groups[group_id] = groups.get(group_id, 0) + size
            if rows:
                _insert(db, rows, self._max_rows)
                self._count(db, now, streams, groups)
            added = sum(groups.values())
            self._unchecked += added
            due = self._unchecked * 20 >= self.max_bytes
            if due:
                self._unchecked = 0
        if due:
            self.enforce_bound()
        return added

    @staticmethod
    def _count(
        db: sqlite3.Connection, now: int, streams: list[int], groups: dict[int, int]
    ) -> None:
        """Add a batch to its streams' and groups' counters, one statement per table.

        Every statement costs the writer a GIL round trip, so a batch of many streams does
        not pay per stream. (A CTE with subqueries rather than UPDATE ... FROM, which needs
        a newer SQLite than some Pythons link.)
        """
        db.execute(
            "WITH v(id, size, first, last) AS (VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * (len(streams) // 4))
            + ") UPDATE log_streams SET "
            "stored_bytes = stored_bytes + (SELECT size FROM v WHERE v.id = log_streams.id), "
            "first_event_ms = min(coalesce(first_event_ms, 1 << 62), "
            "(SELECT first FROM v WHERE v.id = log_streams.id)), "
            "last_event_ms = max(coalesce(last_event_ms, 0), "
            "(SELECT last FROM v WHERE v.id = log_streams.id)), "
            f"last_ingestion_ms = {now} WHERE id IN (SELECT id FROM v)",
            streams,
        )
        db.execute(
            "WITH v(id, size) AS (VALUES "
            + ", ".join(["(?, ?)"] * len(groups))
            + ") UPDATE log_groups SET stored_bytes = stored_bytes + "
            "(SELECT size FROM v WHERE v.id = log_groups.id) WHERE id IN (SELECT id FROM v)",
            [value for pair in groups.items() for value in pair],
        )

    def _resolve(
        self, db: sqlite3.Connection, group: str, stream: str, create: bool
    ) -> tuple[int, int]:
        if create:
            db.execute(
                "INSERT OR IGNORE INTO log_groups (name, created_ms) VALUES (?, ?)",
                (group, _now()),
            )
        group_id = _group_id(db, group)
        if create:
            db.execute(
                "INSERT OR IGNORE INTO log_streams (group_id, name, created_ms) VALUES (?, ?, ?)",
                (group_id, stream, _now()),
            )
        return group_id, _stream_id(db, group_id, stream)

    # ------------------------------------------------------------------- bounding

    def used_bytes(self) -> int:
        """Bytes of the database file in use (free pages excluded)."""
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages - free) * self._page_size

    def enforce_bound(self) -> int:
        """Delete the oldest events while the store is over its bound; returns rows deleted."""
        if self.used_bytes() <= self.max_bytes:
            return 0
        target = int(self.max_bytes * _PRUNE_TARGET)
        deleted = 0
        while (used := self.used_bytes()) > target:
            removed = self._delete_oldest(used - target)
            if not removed:
                break
            deleted += removed
        self.release_space()
        return deleted

    def _delete_oldest(self, excess: int) -> int:
        with self._writing() as db:
            rows = db.execute(
                "SELECT id, length(CAST(message AS BLOB)) FROM log_events ORDER BY id LIMIT ?",
                (_PRUNE_CHUNK,),
            ).fetchall()
            if not rows:
                return 0
            # Rows cost more than their text (indexes, page slack), so count text twice.
            freed, count = 0, 0
            for _, size in rows:
                freed += 2 * size + 48
                count += 1
                if freed >= excess:
                    break
            self._forget(db, "id <= ?", (rows[count - 1][0],))
            return count

    def apply_retention(self, now_ms: int | None = None) -> None:
        """Delete events older than their group's retention period."""
        now_ms = _now() if now_ms is None else now_ms
        with self._writing() as db:
            for group_id, days in db.execute(
                "SELECT id, retention_days FROM log_groups WHERE retention_days IS NOT NULL"
            ).fetchall():
                self._forget(db, "group_id = ? AND ts < ?", (group_id, now_ms - days * DAY_MS))

    def _forget(self, db: sqlite3.Connection, where: str, params: tuple[int, ...]) -> None:
        """Delete the events matching `where`, keeping the stored-byte counters true."""
        sums = db.execute(
            "SELECT group_id, stream_id, sum(length(CAST(message AS BLOB))) FROM log_events "
            f"WHERE {where} GROUP BY group_id, stream_id",
            params,
        ).fetchall()
        if not sums:
            return
        db.execute(f"DELETE FROM log_events WHERE {where}", params)
        for group_id, stream_id, size in sums:
            db.execute(
                "UPDATE log_streams SET stored_bytes = stored_bytes - ?, first_event_ms = "
                "(SELECT min(ts) FROM log_events WHERE stream_id = ?) WHERE id = ?",
                (size, stream_id, stream_id),
            )
            db.execute(
                "UPDATE log_groups SET stored_bytes = stored_bytes - ? WHERE id = ?",
                (size, group_id),
            )

    def release_space(self) -> None:
        """Give free pages back to the file system and truncate the WAL."""
        with self._lock:
            # Each step of this pragma frees one page and execute() steps only once;
            # executescript() runs it to the end.
            self._db.executescript("PRAGMA incremental_vacuum;")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def disk_bytes(self) -> int:
        """What the store occupies on disk: the database and its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            path = self.path.with_name(self.path.name + suffix)
            if path.exists():
                total += path.stat().st_size
        return total


def _now() -> int:
    return int(time.time() * 1000)


_EVENT_COLUMNS = "id, stream_id, ts, ingested_ms, message"


def _events(rows: Iterable[Any]) -> Iterator[LogEvent]:
    for row in rows:
        yield LogEvent(*row)


def _page(events: Iterator[LogEvent], limit: int) -> tuple[list[LogEvent], bool]:
    """Up to `limit` events and about `MAX_PAGE_BYTES`; True if events were left over."""
    page: list[LogEvent] = []
    size = 0
    for event in events:
        size += message_bytes(event.message) + EVENT_OVERHEAD
        if len(page) >= limit or (page and size > MAX_PAGE_BYTES):
            return page, True
        page.append(event)
    return page, False


def _insert(db: sqlite3.Connection, rows: list[int | str], max_rows: int) -> None:
    """Insert flattened rows of five values with multi-row statements of power-of-two sizes.

    executemany() steps once per row, and the sqlite3 module releases and retakes the GIL
    around every step, which taxes the event loop thread; a few statements of many rows do
    not. Power-of-two sizes keep the set of distinct statements (and the cache) small.
    """
    count, at = len(rows) // 5, 0
    while at < count:
        size = min(max_rows, 1 << ((count - at).bit_length() - 1))
        db.execute(_INSERT_ROWS[size.bit_length() - 1], rows[at * 5 : (at + size) * 5])
        at += size


_MAX_ROWS = 512
_INSERT_ROWS = [
    "INSERT INTO log_events (group_id, stream_id, ts, ingested_ms, message) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?)"] * (1 << power))
    for power in range(_MAX_ROWS.bit_length())
]


def _group_id(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT id FROM log_groups WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise ResourceNotFound(GROUP_MISSING)
    return int(row[0])


def _stream_id(db: sqlite3.Connection, group_id: int, name: str) -> int:
    row = db.execute(
        "SELECT id FROM log_streams WHERE group_id = ? AND name = ?", (group_id, name)
    ).fetchone()
    if row is None:
        raise ResourceNotFound(STREAM_MISSING)
    return int(row[0])
