"""The cluster store: PostgreSQL for everything durable (`lamina serve --store postgresql://…`).

One `open_pg_*` per store family, like `lamina.store.sqlite`. Every node opens the same
database; archives are cached on each node's disk (under its data directory).
"""

from __future__ import annotations

from pathlib import Path

from lamina.store.environment_sealing import sealer_for
from lamina.store.postgres.audit import PgAuditStore
from lamina.store.postgres.blobs import PgBlobStore
from lamina.store.postgres.code_signing import PgCodeSigningConfigStore
from lamina.store.postgres.database import PgDatabase
from lamina.store.postgres.functions import PgFunctionStore
from lamina.store.postgres.iam import PgIamStore
from lamina.store.postgres.kms import PgKmsKeyStore
from lamina.store.postgres.layers import PgLayerStore
from lamina.store.postgres.logs import PgLogStore
from lamina.store.postgres.mappings import PgEventSourceMappingStore
from lamina.store.postgres.metrics import PgMetricsStore
from lamina.store.postgres.queue import PgAsyncQueue
from lamina.store.postgres.rules import PgRuleStore
from lamina.store.postgres.test_events import PgSavedEventStore
from lamina.store.protocols import AuditStore, LogStore, MetricsStore, Stores
from lamina.store.sealing import MASTER_KEY_FILE, MasterKey, open_master_key


def pg_stores(
    database: PgDatabase, blob_cache: Path, master_key: MasterKey | None = None
) -> Stores:
    """The control plane's stores on `database` (migrated as they open).

    `master_key` seals what is kept encrypted at rest. It must be the same on every node
    (`LAMINA_MASTER_KEY_FILE`); by default the `master-key` file beside `blob_cache`, in the
    node's data directory, which suits one node.
    """
    master_key = master_key or open_master_key(blob_cache.parent / MASTER_KEY_FILE)
    kms = PgKmsKeyStore(database, master_key)
    return Stores(
        functions=PgFunctionStore(database, sealer_for(master_key, kms)),
        layers=PgLayerStore(database),
        code_signing=PgCodeSigningConfigStore(database),
        blobs=PgBlobStore(database, blob_cache),
        queue=PgAsyncQueue(database),
        rules=PgRuleStore(database),
        mappings=PgEventSourceMappingStore(database),
        iam=PgIamStore(database, master_key),
        kms=kms,
        test_events=PgSavedEventStore(database),
    )


def open_pg_stores(url: str, data_dir: Path, *, schema: str | None = None) -> Stores:
    """The stores on the database at `url`; archives cached under `data_dir/blobs`."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return pg_stores(PgDatabase(url, schema=schema), data_dir / "blobs")


# Logs, metrics and audit records get connection pools of their own, as they get SQLite files
# of their own: the log sink's and the metrics flusher's writes never queue behind the
# control plane's for a connection (nor take its write lock: they use row locks).


def open_pg_log_store(url: str, max_bytes: int, *, schema: str | None = None) -> LogStore:
    """Log groups, streams and events, kept under `max_bytes` across every node."""
    return PgLogStore(PgDatabase(url, schema=schema, max_connections=8), max_bytes, owned=True)


def open_pg_metrics(url: str, *, schema: str | None = None) -> MetricsStore:
    """Metric and usage minutes, merged from every node."""
    return PgMetricsStore(PgDatabase(url, schema=schema, max_connections=4), owned=True)


def open_pg_audit(url: str, max_bytes: int, *, schema: str | None = None) -> AuditStore:
    """The audit records of every node, kept under `max_bytes`."""
    return PgAuditStore(PgDatabase(url, schema=schema, max_connections=4), max_bytes, owned=True)
