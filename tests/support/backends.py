"""Store backends for the contract suites (tests/contract): every family, one location.

A backend opens any store family over one location; opening again reaches the same data, as
a restarted server (or a second node) would. The cluster issue adds PostgreSQL by adding one
class and one entry to `BACKENDS`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import psycopg

from lamina.store.files import open_audit
from lamina.store.postgres import open_pg_audit, open_pg_log_store, open_pg_metrics, pg_stores
from lamina.store.postgres.database import PgDatabase
from lamina.store.protocols import AuditStore, LogStore, MetricsStore, Stores
from lamina.store.sealing import open_master_key
from lamina.store.sqlite import open_log_store, open_metrics, open_stores

MB = 1024 * 1024

# The machine's PostgreSQL (.ci/run starts it); LAMINA_TEST_POSTGRES points elsewhere.
POSTGRES_URL = os.environ.get("LAMINA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


class Backend(Protocol):
    def stores(self) -> Stores: ...
    def logs(self, max_bytes: int = 64 * MB) -> LogStore: ...
    def metrics(self) -> MetricsStore: ...
    def audit(self, max_bytes: int = MB) -> AuditStore: ...
    def close(self) -> None:
        """Close every store it opened."""
        ...


class Embedded:
    """The single-process default: SQLite databases and files under a data directory."""

    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self._closers: list[Callable[[], None]] = []

    def stores(self) -> Stores:
        return open_stores(self.data_dir)

    def logs(self, max_bytes: int = 64 * MB) -> LogStore:
        store = open_log_store(self.data_dir, max_bytes)
        self._closers.append(store.close)
        return store

    def metrics(self) -> MetricsStore:
        store = open_metrics(self.data_dir)
        self._closers.append(store.close)
        return store

    def audit(self, max_bytes: int = MB) -> AuditStore:
        store = open_audit(self.data_dir, max_bytes, writer=True)
        self._closers.append(store.close)
        return store

    def close(self) -> None:
        for close in reversed(self._closers):
            close()


class Postgres:
    """Cluster mode: every family in a PostgreSQL schema of its own, dropped on close.

    Each `stores()` is a new node: its own `PgDatabase` (pool, change listener) and its own
    blob cache directory, so what it reads back comes from PostgreSQL.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = POSTGRES_URL
        self.schema = f"contract_{uuid.uuid4().hex[:16]}"
        self._databases: list[PgDatabase] = []
        self._closers: list[Callable[[], None]] = []

    def database(self) -> PgDatabase:
        """A new connection pool on this backend's schema (another node, as far as it knows)."""
        database = PgDatabase(self.url, schema=self.schema, max_connections=8)
        self._databases.append(database)
        return database

    def stores(self) -> Stores:
        node = self.root / f"node{len(self._databases)}"
        # One key for every node of the store, as an operator would give them.
        return pg_stores(self.database(), node / "blobs", open_master_key(self.root / "master-key"))

    def logs(self, max_bytes: int = 64 * MB) -> LogStore:
        store = open_pg_log_store(self.url, max_bytes, schema=self.schema)
        self._closers.append(store.close)
        return store

    def metrics(self) -> MetricsStore:
        store = open_pg_metrics(self.url, schema=self.schema)
        self._closers.append(store.close)
        return store

    def audit(self, max_bytes: int = MB) -> AuditStore:
        store = open_pg_audit(self.url, max_bytes, schema=self.schema)
        self._closers.append(store.close)
        return store

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        for database in self._databases:
            database.close()
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


BACKENDS: dict[str, Callable[[Path], Backend]] = {"sqlite": Embedded, "postgresql": Postgres}
