"""PostgreSQL connections, transactions, change stamps and migrations shared by the stores.

The API the PostgreSQL stores build on (`PgDatabase`):

- `PgDatabase(url, *, schema=None, max_connections=16)`: a `psycopg_pool.ConnectionPool`
  (connections in autocommit). `schema` puts every table in that PostgreSQL schema (created
  if missing, set as the connections' search_path): the contract tests use a fresh one per
  test. Thread-safe. `close()` closes the pool and the change listener.
- SQL uses psycopg's placeholders: `%s` (a literal `%` is `%%`). Rows are tuples.
- `transaction(exclusive=True)`: binds one connection to the calling thread until it ends;
  nested calls join the outer one (an exclusive one inside a non-exclusive one takes the
  lock then), so several stores opened on one PgDatabase share it.
  `exclusive` takes this schema's write lock (a transaction-scoped advisory lock) at BEGIN, so
  a read-modify-write is serialised against every other exclusive transaction on any node,
  as SQLite's `BEGIN IMMEDIATE` does. High-rate tables with their own row locking (the
  queue: `FOR UPDATE SKIP LOCKED`) pass `exclusive=False`. Yields the psycopg connection.
  Unlike SQLite, a failed statement aborts the whole transaction (PostgreSQL's rule): catch
  a conflict in SQL (`ON CONFLICT`), not in Python, inside a transaction.
- `connect(application_name)`: a connection of its own, outside the pool (listeners).
- `query(sql, *params) -> list[tuple]`, `query_one(sql, *params) -> Any` (first column of the
  first row, or None), `execute(sql, *params, stamp=CONTROL) -> int` (rowcount). Inside a
  transaction they use its connection; outside, a pooled one. `execute` with a stamp name
  (the default) moves that change stamp; outside a transaction it runs in one of its own
  (exclusive, so a lone write is serialised like the rest). `stamp=None` is a plain
  statement: autocommit outside a transaction, no stamp moved.
- Change stamps: `change_stamp(name=CONTROL) -> int` is a number that moves whenever a write
  tagged with `name` commits, on this node (at once) or on any other (within about a
  second: LISTEN/NOTIFY, with a poll of the `lamina_stamps` table every half second as a
  fallback). Reading it is a dictionary lookup, never a round trip. The values are per
  process; only "it moved" means anything. `touch(name)` tags the current transaction by
  hand (for writes issued on the connection directly). Stamps are bumped, and NOTIFY sent,
  in the writing transaction, so they commit or roll back with it.
- Migrations: `migrate(component, steps)` applies `steps` ({version: SQL}, versions counted
  per component, e.g. "functions") that `schema_migrations(component, version, applied_at)`
  lacks, in order, each in its own transaction under an advisory lock, so concurrent
  migrators (several nodes starting at once) apply each step once. Steps must be additive
  and idempotent (`CREATE TABLE IF NOT EXISTS`, `ADD COLUMN IF NOT EXISTS ... DEFAULT`), so
  a newer node migrates while older ones run. Each store module keeps its steps in a
  `MIGRATIONS` constant and its store calls `database.migrate(...)` in `__init__`; a
  component already applied in this process costs nothing.

Documents are stored as `bytea` holding orjson's bytes (`dumps`/`loads`), exactly as the
SQLite stores keep them: no JSON parsing on the server, any string survives (JSONB refuses
U+0000), and what SQL needs to filter or sum on gets a column of its own. Text keys that are
ordered or paged on are declared `COLLATE "C"`: bytewise order, as in SQLite, whatever the
database's locale.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]

CONTROL = "control"
"""The change stamp of functions, layers and code-signing configs (FunctionStore's)."""

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,40}")
_POLL_S = 0.5

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
);
CREATE TABLE IF NOT EXISTS lamina_stamps (
    name TEXT PRIMARY KEY,
    stamp BIGINT NOT NULL
);
"""

# One round trip: bump the stamps and queue the NOTIFY (sent at commit; the same payload
# twice in one transaction is delivered once).
_BUMP = """
WITH bumped AS (
    INSERT INTO lamina_stamps AS s (name, stamp) SELECT unnest(%s::text[]), 1
    ON CONFLICT (name) DO UPDATE SET stamp = s.stamp + 1
    RETURNING name, stamp
)
SELECT name, stamp, pg_notify(%s, %s) FROM bumped
"""


def dumps(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def loads(raw: bytes) -> dict[str, Any]:
    value = orjson.loads(raw)
    assert isinstance(value, dict)
    return value


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for `parts` (stable across processes)."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgDatabase:
    """One PostgreSQL database (and optional schema) shared by the stores of one node."""

    def __init__(self, url: str, *, schema: str | None = None, max_connections: int = 16) -> None:
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema {schema!r}: lower-case letters, digits and _ only")
        self.url = url
        self.schema = schema
        scope = schema or ""
        self._write_lock = _lock_key("lamina-write", scope)
        self._migrate_lock = _lock_key("lamina-migrate", scope)
        self._channel = f"lamina_stamps_{schema}" if schema else "lamina_stamps"
        self._kwargs: dict[str, Any] = {"autocommit": True, "application_name": "lamina"}
        if schema is not None:
            self._kwargs["options"] = f"-c search_path={schema}"
        self._local = threading.local()
        self._applied: set[str] = set()
        self._migrating = threading.Lock()
        self._stamps: dict[str, int] = {}
        # The shared stamps as this node's last commits left them, and the token its
        # NOTIFY payloads carry: the listener skips this node's own writes.
        self._own: dict[str, int] = {}
        self._token = uuid.uuid4().hex
        self._stamps_lock = threading.Lock()
        self._listener: _Listener | None = None
        self._listener_lock = threading.Lock()
        self._bootstrap()
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs=self._kwargs,
            open=True,
            name=f"lamina-{scope or 'default'}",
        )

    def connect(self, application_name: str = "lamina") -> Connection:
        """A connection of its own (autocommit, on this schema) that the caller closes."""
        kwargs = {**self._kwargs, "application_name": application_name}
        return psycopg.Connection.connect(self.url, **kwargs)

    def _bootstrap(self) -> None:
        with self.connect() as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._migrate_lock,))
            # Only if missing: CREATE SCHEMA needs a privilege on the database that a node
            # whose operator created the schema for it need not have.
            exists = connection.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
            ).fetchone()
            if self.schema is not None and not exists:
                connection.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
            connection.execute(_BOOTSTRAP)

    def close(self) -> None:
        with self._listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._pool.close()

    # Transactions and statements.

    @contextmanager
    def transaction(self, *, exclusive: bool = True) -> Iterator[Connection]:
        local = self._local
        bound: Connection | None = getattr(local, "connection", None)
        if bound is not None:
            if exclusive and not local.exclusive:
                # A non-exclusive transaction turns exclusive from here on.
                bound.execute("SELECT pg_advisory_xact_lock(%s)", (self._write_lock,))
                local.exclusive = True
            yield bound
            return
        touched: set[str] = set()
        with self._pool.connection() as connection:
            local.connection, local.touched, local.exclusive = connection, touched, exclusive
            try:
                with connection.transaction():
                    if exclusive:
                        connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._write_lock,))
                    yield connection
                    if touched:
                        self._bump_shared(connection, touched)
            except BaseException:
                self._forget_own(touched)
                raise
            finally:
                local.connection = local.touched = None
                # Again after the end: a reader that saw the stamp of a statement inside
                # this transaction may have read the state before it and cached it.
                self._bump_local(touched)

    def _bump_shared(self, connection: Connection, names: set[str]) -> None:
        ordered = sorted(names)
        payload = f"{self._token}:{','.join(ordered)}"
        rows = connection.execute(_BUMP, (ordered, self._channel, payload)).fetchall()
        # Noted before the commit, so that the listener's poll, which may read the new values
        # the moment they commit, takes them for this node's own and moves nothing again.
        with self._stamps_lock:
            for name, stamp, _ in rows:
                self._own[name] = stamp

    def _forget_own(self, names: set[str]) -> None:
        with self._stamps_lock:
            for name in names:
                self._own.pop(name, None)

    def touch(self, name: str = CONTROL) -> None:
        """Move change stamp `name` when the current transaction commits."""
        touched: set[str] | None = getattr(self._local, "touched", None)
        if touched is None:
            raise RuntimeError("touch() outside a transaction")
        touched.add(name)
        self._bump_local((name,))

    def query(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        bound: Connection | None = getattr(self._local, "connection", None)
        if bound is not None:
            return bound.execute(statement, params).fetchall()
        with self._pool.connection() as connection:
            return connection.execute(statement, params).fetchall()

    def query_one(self, statement: str, *params: Any) -> Any:
        bound: Connection | None = getattr(self._local, "connection", None)
        if bound is not None:
            row = bound.execute(statement, params).fetchone()
        else:
            with self._pool.connection() as connection:
                row = connection.execute(statement, params).fetchone()
        return row[0] if row else None

    def execute(self, statement: str, *params: Any, stamp: str | None = CONTROL) -> int:
        bound: Connection | None = getattr(self._local, "connection", None)
        if bound is not None:
            if stamp is not None:
                self.touch(stamp)
            return bound.execute(statement, params).rowcount
        if stamp is None:
            with self._pool.connection() as connection:
                return connection.execute(statement, params).rowcount
        with self.transaction() as connection:
            self.touch(stamp)
            return connection.execute(statement, params).rowcount

    # Change stamps.

    def change_stamp(self, name: str = CONTROL) -> int:
        if self._listener is None:
            self._start_listener()
        return self._stamps.get(name, 0)

    def shared_stamp(self, name: str = CONTROL) -> int:
        """The cluster-wide count of `name`'s changes (the `lamina_stamps` row) as far as this
        node knows it: from its own commits, and the listener's reads of the table."""
        if self._listener is None:
            self._start_listener()
        assert self._listener is not None
        with self._stamps_lock:
            return max(self._listener.seen(name), self._own.get(name, 0))

    def catch_up(self, stamp: int, name: str = CONTROL) -> None:
        """Move `name`'s local stamp if another node's write up to `stamp` was not yet heard
        of here, so caches re-read it now rather than at the next notification or poll."""
        if stamp <= self.shared_stamp(name):
            return
        current = self.query_one("SELECT stamp FROM lamina_stamps WHERE name = %s", name)
        assert self._listener is not None
        if current is not None:
            self._listener.saw(name, int(current))
        self._bump_local((name,))

    def _bump_local(self, names: Iterable[str]) -> None:
        with self._stamps_lock:
            for name in names:
                self._stamps[name] = self._stamps.get(name, 0) + 1

    def _start_listener(self) -> None:
        with self._listener_lock:
            if self._listener is None:
                # Started synchronously: LISTEN and the first read of the stamps happen before
                # any caller has read a stamp, so no remote write can fall in between.
                self._listener = _Listener(self)

    # Migrations.

    def migrate(self, component: str, steps: Mapping[int, str]) -> None:
        """Apply `component`'s missing `steps` ({version: SQL}) in version order."""
        if component in self._applied:
            return
        with self._migrating:
            if component in self._applied:
                return
            for version in sorted(steps):
                with self.transaction(exclusive=False) as connection:
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._migrate_lock,))
                    done = connection.execute(
                        "SELECT 1 FROM schema_migrations WHERE component = %s AND version = %s",
                        (component, version),
                    ).fetchone()
                    if done:
                        continue
                    connection.execute(steps[version])
                    connection.execute(
                        "INSERT INTO schema_migrations (component, version) VALUES (%s, %s)",
                        (component, version),
                    )
                    log.info("applied migration %s/%d", component, version)
            self._applied.add(component)


class _Listener:
    """A thread that moves local change stamps when another node's write commits."""

    def __init__(self, database: PgDatabase) -> None:
        self._db = database
        self._stop = threading.Event()
        self._seen: dict[str, int] = {}
        self._connection: Connection | None = None
        self._connect()
        self._thread = threading.Thread(target=self._run, name="lamina-pg-stamps", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # Wakes the thread from its wait for notifications (other nodes ignore the empty list).
        with suppress(psycopg.Error), self._db.connect() as connection:
            connection.execute(
                "SELECT pg_notify(%s, %s)", (self._db._channel, self._db._token + ":")
            )
        self._thread.join(5)

    def _connect(self) -> None:
        connection = self._db.connect(f"lamina-stamps {self._db.schema or ''}".strip())
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._db._channel)))
        self._connection = connection
        self._poll()

    def seen(self, name: str) -> int:
        return self._seen.get(name, 0)

    def saw(self, name: str, stamp: int) -> None:
        """A read of the table outside the poll (`catch_up`): the poll must not move the
        stamp again for it."""
        self._seen = {**self._seen, name: max(stamp, self._seen.get(name, 0))}

    def _poll(self) -> None:
        assert self._connection is not None
        rows = self._connection.execute("SELECT name, stamp FROM lamina_stamps").fetchall()
        own = self._db._own
        moved = {name for name, stamp in rows if stamp not in (self._seen.get(name), own.get(name))}
        self._seen = dict(rows)
        if moved:
            self._db._bump_local(moved)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._connection is None:
                    self._connect()
                    # Whatever happened while disconnected went unseen: move every stamp.
                    self._db._bump_local(set(self._db._stamps))
                assert self._connection is not None
                for notify in self._connection.notifies(timeout=_POLL_S):
                    token, _, names = notify.payload.partition(":")
                    if token != self._db._token and names:
                        self._db._bump_local(names.split(","))
                    if self._stop.is_set():
                        break
                self._poll()
            except psycopg.Error as error:
                log.warning("change listener lost its connection: %s", error)
                self._close_connection()
                self._stop.wait(_POLL_S)
        self._close_connection()

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with suppress(psycopg.Error):
                connection.close()
