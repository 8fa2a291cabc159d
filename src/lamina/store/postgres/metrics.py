"""Per-minute metric series and usage (billing) rows in PostgreSQL, merged from every node.

Each node flushes its own deltas; an upsert adds them to the minute's row under that row's
lock, so merges from several nodes add up without a read-modify-write in Python. Histograms
are JSONB objects (bucket -> count) merged bucket by bucket in the same statement. Rows are
written in key order, so two merges over the same rows lock them in one order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson
from psycopg import errors

from lamina.store.postgres.database import PgDatabase
from lamina.store.protocols.metrics import MetricDelta, UsageDelta, UsageTotal, own_series

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS metric_minutes (
    metric text COLLATE "C" NOT NULL,
    dims text COLLATE "C" NOT NULL,
    minute bigint NOT NULL,
    function text COLLATE "C" NOT NULL,
    count bigint NOT NULL,
    total double precision NOT NULL,
    minimum double precision NOT NULL,
    maximum double precision NOT NULL,
    buckets jsonb,
    PRIMARY KEY (metric, dims, minute)
);
CREATE INDEX IF NOT EXISTS metric_minutes_age ON metric_minutes (minute);
CREATE TABLE IF NOT EXISTS usage_minutes (
    minute bigint NOT NULL,
    function text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    architecture text COLLATE "C" NOT NULL,
    memory_mb integer NOT NULL,
    requests bigint NOT NULL,
    billed_ms bigint NOT NULL,
    duration_ms double precision NOT NULL,
    init_ms double precision NOT NULL,
    PRIMARY KEY (minute, function, version, architecture, memory_mb)
);
""",
}

_MERGE_METRIC = """
INSERT INTO metric_minutes AS m
    (metric, dims, minute, function, count, total, minimum, maximum, buckets)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (metric, dims, minute) DO UPDATE SET
    count = m.count + excluded.count,
    total = m.total + excluded.total,
    minimum = least(m.minimum, excluded.minimum),
    maximum = greatest(m.maximum, excluded.maximum),
    buckets = CASE
        WHEN m.buckets IS NULL THEN excluded.buckets
        WHEN excluded.buckets IS NULL THEN m.buckets
        ELSE (
            SELECT jsonb_object_agg(key, total) FROM (
                SELECT key, sum(value::bigint) AS total FROM (
                    SELECT * FROM jsonb_each_text(m.buckets)
                    UNION ALL SELECT * FROM jsonb_each_text(excluded.buckets)
                ) AS both_sides GROUP BY key
            ) AS merged
        )
    END
"""

_MERGE_USAGE = """
INSERT INTO usage_minutes AS u
    (minute, function, version, architecture, memory_mb, requests, billed_ms, duration_ms,
     init_ms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (minute, function, version, architecture, memory_mb) DO UPDATE SET
    requests = u.requests + excluded.requests,
    billed_ms = u.billed_ms + excluded.billed_ms,
    duration_ms = u.duration_ms + excluded.duration_ms,
    init_ms = u.init_ms + excluded.init_ms
"""

_RETRIES = 5


class PgMetricsStore:
    """Metric and usage minutes in PostgreSQL; implements `MetricsStore`."""

    def __init__(self, database: PgDatabase, *, owned: bool = False) -> None:
        self._db = database
        self._owned = owned
        database.migrate("metrics", MIGRATIONS)

    def merge(self, metrics: Iterable[MetricDelta], usage: Iterable[UsageDelta]) -> None:
        metric_rows = [
            (
                row.metric,
                row.dims,
                row.minute,
                row.function,
                row.samples,
                row.total,
                row.minimum,
                row.maximum,
                _dump_buckets(row.buckets),
            )
            for row in metrics
        ]
        metric_rows.sort(key=lambda row: row[:3])
        usage_rows = sorted(usage, key=lambda row: row[:5])
        if not metric_rows and not usage_rows:
            return
        for attempt in range(_RETRIES):
            try:
                with self._db.transaction(exclusive=False) as db, db.cursor() as cursor:
                    # As durable as the SQLite store's synchronous=NORMAL: the commit does not
                    # wait for the WAL flush; a crash loses at most the last moment's deltas.
                    cursor.execute("SET LOCAL synchronous_commit = off")
                    if metric_rows:
                        cursor.executemany(_MERGE_METRIC, metric_rows)
                    if usage_rows:
                        cursor.executemany(_MERGE_USAGE, usage_rows)
                return
            except errors.DeadlockDetected:
                if attempt == _RETRIES - 1:
                    raise

    def series(self, metric: str, dims: str, first: int, last: int) -> list[MetricDelta]:
        """The rows of one series for minutes `first` to `last` inclusive, oldest first."""
        rows = self._db.query(
            "SELECT metric, dims, minute, function, count, total, minimum, maximum, buckets "
            "FROM metric_minutes WHERE metric = %s AND dims = %s AND minute BETWEEN %s AND %s "
            "ORDER BY minute",
            metric,
            dims,
            first,
            last,
        )
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

    def function_minutes(
        self,
        metrics: Sequence[str],
        first: int,
        last: int,
        functions: Sequence[str] | None = None,
    ) -> list[MetricDelta]:
        sql = (
            "SELECT metric, dims, minute, function, count, total, minimum, maximum, buckets "
            "FROM metric_minutes WHERE metric = ANY(%s) AND minute BETWEEN %s AND %s AND "
        )
        if functions is not None:
            sql += "dims = ANY(%s)"  # index lookups on (metric, dims, minute)
            series: list[object] = [[own_series(function) for function in functions]]
        else:
            # A function's own series is told from its alias and version series by its key.
            sql += "function != '' AND dims = '[[\"FunctionName\",\"' || function || '\"]]'"
            series = []
        rows = self._db.query(sql, list(metrics), first, last, *series)
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
        """(metric, dims) of every series with data since a minute, in code point order."""
        rows = self._db.query(
            "SELECT DISTINCT metric, dims FROM metric_minutes WHERE minute >= %s "
            "ORDER BY metric, dims",
            since_minute,
        )
        return [(row[0], row[1]) for row in rows]

    def usage(self, since_minute: int, function: str | None = None) -> list[UsageTotal]:
        """Use since a minute, per function, architecture and memory size."""
        sql = (
            "SELECT function, architecture, memory_mb, sum(requests)::bigint, "
            "sum(billed_ms)::bigint, sum(duration_ms) FROM usage_minutes WHERE minute >= %s"
        )
        params: list[object] = [since_minute]
        if function is not None:
            sql += " AND function = %s"
            params.append(function)
        sql += " GROUP BY function, architecture, memory_mb ORDER BY function, memory_mb"
        return [UsageTotal(*row) for row in self._db.query(sql, *params)]

    def prune(self, before_minute: int) -> int:
        """Forget metric minutes older than a minute (usage rows are kept for billing)."""
        return self._db.execute(
            "DELETE FROM metric_minutes WHERE minute < %s", before_minute, stamp=None
        )

    def close(self) -> None:
        if self._owned:
            self._db.close()


def _dump_buckets(buckets: dict[int, int] | None) -> str | None:
    if buckets is None:
        return None
    return orjson.dumps(buckets, option=orjson.OPT_NON_STR_KEYS).decode()


def _load_buckets(raw: dict[str, int]) -> dict[int, int]:
    return {int(bucket): int(count) for bucket, count in raw.items()}
