"""The embedded default store: SQLite in WAL mode plus blobs on disk.

One `open_*` per store family, each called once by the composition root. Logs and metrics
have database files of their own: their write rates would otherwise contend with the control
plane's writers.
"""

from __future__ import annotations

from pathlib import Path

from lamina.store.blobs import FileBlobStore
from lamina.store.environment_sealing import sealer_for
from lamina.store.protocols import LogStore, MetricsStore, Stores
from lamina.store.sealing import MASTER_KEY_FILE, MasterKey, open_master_key
from lamina.store.sqlite.code_signing import SqliteCodeSigningConfigStore
from lamina.store.sqlite.database import Database
from lamina.store.sqlite.functions import SqliteFunctionStore
from lamina.store.sqlite.iam import SqliteIamStore
from lamina.store.sqlite.kms import SqliteKmsKeyStore
from lamina.store.sqlite.layers import SqliteLayerStore
from lamina.store.sqlite.logs import SqliteLogStore
from lamina.store.sqlite.mappings import SqliteEventSourceMappingStore
from lamina.store.sqlite.metrics import SqliteMetricsStore
from lamina.store.sqlite.queue import SqliteAsyncQueue
from lamina.store.sqlite.rules import SqliteRuleStore
from lamina.store.sqlite.test_events import SqliteSavedEventStore


def open_stores(data_dir: Path, master_key: MasterKey | None = None) -> Stores:
    """`master_key` seals what is kept encrypted at rest; by default the data directory's
    `master-key` file, made on first use, beside (never inside) the database."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)
    database = Database(data_dir / "lamina.db")
    master_key = master_key or open_master_key(data_dir / MASTER_KEY_FILE)
    kms = SqliteKmsKeyStore(database, master_key)
    return Stores(
        functions=SqliteFunctionStore(database, sealer_for(master_key, kms)),
        layers=SqliteLayerStore(database),
        code_signing=SqliteCodeSigningConfigStore(database),
        blobs=FileBlobStore(data_dir / "blobs"),
        queue=SqliteAsyncQueue(database),
        rules=SqliteRuleStore(database),
        mappings=SqliteEventSourceMappingStore(database),
        iam=SqliteIamStore(database, master_key),
        kms=kms,
        test_events=SqliteSavedEventStore(database),
    )


def open_log_store(data_dir: Path, max_bytes: int) -> LogStore:
    """Log groups, streams and events in `logs.db`, kept under `max_bytes`."""
    return SqliteLogStore(data_dir / "logs.db", max_bytes)


def open_metrics(data_dir: Path) -> MetricsStore:
    """Metric and usage minutes in `metrics.db`."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SqliteMetricsStore(data_dir / "metrics.db")
