"""Per-minute metric series and usage (billing) rows, in a SQLite file of their own.

A separate file (`metrics.db` beside `lamina.db`) because these rows are written every few
seconds from a background thread: in the main database each write would contend with the
control plane's writers and bump the change counter that invalidates its caches.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from lamina.store.protocols.metrics import MetricDelta, UsageDelta, UsageTotal, own_series

SCHEMA = """
CREATE TABLE IF NOT EXISTS metric_minutes (
    metric TEXT NOT NULL,
    dims TEXT NOT NULL,
    minute INTEGER NOT NULL,
    function TEXT NOT NULL,
    count INTEGER NOT NULL,
    total REAL NOT NULL,
    minimum REAL NOT NULL,
    maximum REAL NOT NULL,
    buckets BLOB,
    PRIMARY KEY (metric, dims, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metric_minutes_age ON metric_minutes (minute);
CREATE TABLE IF NOT EXISTS usage_minutes (
    minute INTEGER NOT NULL,
    function TEXT NOT NULL,
    version TEXT NOT NULL,
    architecture TEXT NOT NULL,
    memory_mb INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    billed_ms INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    init_ms REAL NOT NULL,
    PRIMARY KEY (minute, function, version, architecture, memory_mb)
) WITHOUT ROWID;
"""


class SqliteMetricsStore:
    """The metrics database, implementing `MetricsStore`; a connection per thread, one
    writer at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._connection().executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, isolation_level=None, timeout=30.0)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def merge(self, metrics: Iterable[MetricDelta], usage: Iterable[UsageDelta]) -> None:
        with self._transaction() as db:
            for row in metrics:
                buckets = row.buckets
                if buckets is not None:
                    # Histograms merge bucket by bucket, which SQL cannot do on a blob.
                    stored = db.execute(
                        "SELECT buckets FROM metric_minutes "
                        "WHERE metric = ? AND dims = ? AND minute = ?",
                        (row.metric, row.dims, row.minute),
                    ).fetchone()
                    if stored is not None and stored[0] is not None:
                        buckets = dict(buckets)
                        for bucket, count in _load_buckets(stored[0]).items():
                            buckets[bucket] = buckets.get(bucket, 0) + count
                db.execute(
                    "INSERT INTO metric_minutes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (metric, dims, minute) DO UPDATE SET "
                    "count = count + excluded.count, total = total + excluded.total, "
                    "minimum = min(minimum, excluded.minimum), "
                    "maximum = max(maximum, excluded.maximum), buckets = excluded.buckets",
                    (
                        row.metric,
                        row.dims,
                        row.minute,
                        row.function,
                        row.samples,
                        row.total,
                        row.minimum,
                        row.maximum,
                        _dump_buckets(buckets),
                    ),
                )
            db.executemany(
                "INSERT INTO usage_minutes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (minute, function, version, architecture, memory_mb) DO UPDATE SET "
                "requests = requests + excluded.requests, "
                "billed_ms = billed_ms + excluded.billed_ms, "
                "duration_ms = duration_ms + excluded.duration_ms, "
                "init_ms = init_ms + excluded.init_ms",
                list(usage),
            )

    def series(self, metric: str, dims: str, first: int, last: int) -> list[MetricDelta]:
        """The rows of one series for minutes `first` to `last` inclusive, oldest first."""
        rows = (
            self._connection()
            .execute(
                "SELECT metric, dims, minute, function, count, total, minimum, maximum, buckets "
                "FROM metric_minutes WHERE metric = ? AND dims = ? AND minute BETWEEN ? AND ? "
                "ORDER BY minute",
                (metric, dims, first, last),
            )
            .fetchall()
        )
        return [
            MetricDelta(
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                row[6],
                row[7],
                _load_buckets(row[8]) if row[8] is not None else None,
            )
            for row in rows
        ]

    def function_minutes(
        self,
        metrics: Sequence[str],
        first: int,
        last: int,
        functions: Sequence[str] | None = None,
    ) -> list[MetricDelta]:
        marks = ", ".join("?" * len(metrics))
        sql = (
            "SELECT metric, dims, minute, function, count, total, minimum, maximum, buckets "
            "FROM metric_minutes WHERE "
        )
        if functions is not None:
            # Straight to each series through the primary key (metric, dims, minute).
            series = [own_series(function) for function in functions]
            sql += (
                f"metric IN ({marks}) AND dims IN ({', '.join('?' * len(series))}) "
                "AND minute BETWEEN ? AND ?"
            )
            params: tuple[Any, ...] = (*metrics, *series, first, last)
        else:
            # The window's rows through the minute index (`+metric` keeps the planner off
            # the primary key, which would read every retained minute of the metric); a
            # function's own series is told from its alias and version series by its key.
            sql += (
                f"+metric IN ({marks}) AND minute BETWEEN ? AND ? AND function != '' "
                "AND dims = '[[\"FunctionName\",\"' || function || '\"]]'"
            )
            params = (*metrics, first, last)
        rows = self._connection().execute(sql, params).fetchall()
        return [
            MetricDelta(
                metric=row[0],
                dims=row[1],
                minute=row[2],
                function=row[3],
                samples=row[4],
                total=row[5],
                minimum=row[6],
                maximum=row[7],
                buckets=_load_buckets(row[8]) if row[8] is not None else None,
            )
            for row in rows
        ]

    def series_names(self, since_minute: int) -> list[tuple[str, str]]:
        """(metric, dims) of every series with data since a minute."""
        rows = (
            self._connection()
            .execute(
                "SELECT DISTINCT metric, dims FROM metric_minutes WHERE minute >= ? "
                "ORDER BY metric, dims",
                (since_minute,),
            )
            .fetchall()
        )
        return [(row[0], row[1]) for row in rows]

    def usage(self, since_minute: int, function: str | None = None) -> list[UsageTotal]:
        """Use since a minute, per function, architecture and memory size."""
        sql = (
            "SELECT function, architecture, memory_mb, sum(requests), sum(billed_ms), "
            "sum(duration_ms) FROM usage_minutes WHERE minute >= ?"
        )
        params: tuple[object, ...] = (since_minute,)
        if function is not None:
            sql += " AND function = ?"
            params += (function,)
        sql += " GROUP BY function, architecture, memory_mb ORDER BY function, memory_mb"
        return [UsageTotal(*row) for row in self._connection().execute(sql, params).fetchall()]

    def prune(self, before_minute: int) -> int:
        """Forget metric minutes older than a minute (usage rows are kept for billing)."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM metric_minutes WHERE minute < ?", (before_minute,))
            return cursor.rowcount

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def _dump_buckets(buckets: dict[int, int] | None) -> bytes | None:
    if buckets is None:
        return None
    return orjson.dumps(buckets, option=orjson.OPT_NON_STR_KEYS)


def _load_buckets(raw: bytes) -> dict[int, int]:
    return {int(bucket): count for bucket, count in orjson.loads(raw).items()}
