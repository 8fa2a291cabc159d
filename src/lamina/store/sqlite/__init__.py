"""The embedded default store: SQLite in WAL mode plus blobs on disk."""

from __future__ import annotations

from pathlib import Path

from lamina.store.blobs import FileBlobStore
from lamina.store.protocols import Stores
from lamina.store.sqlite.code_signing import SqliteCodeSigningConfigStore
from lamina.store.sqlite.database import Database
from lamina.store.sqlite.functions import SqliteFunctionStore
from lamina.store.sqlite.layers import SqliteLayerStore
from lamina.store.sqlite.queue import SqliteAsyncQueue
from lamina.store.sqlite.rules import SqliteRuleStore


def open_stores(data_dir: Path) -> Stores:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)
    database = Database(data_dir / "lamina.db")
    return Stores(
        functions=SqliteFunctionStore(database),
        layers=SqliteLayerStore(database),
        code_signing=SqliteCodeSigningConfigStore(database),
        blobs=FileBlobStore(data_dir / "blobs"),
        queue=SqliteAsyncQueue(database),
        rules=SqliteRuleStore(database),
    )
