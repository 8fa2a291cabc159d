"""Store backends for the contract suites (tests/contract): every family, one location.

A backend opens any store family over one location; opening again reaches the same data, as
a restarted server (or a second node) would. The cluster issue adds PostgreSQL by adding one
class and one entry to `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from lamina.store.files import open_audit
from lamina.store.protocols import AuditStore, LogStore, MetricsStore, Stores
from lamina.store.sqlite import open_log_store, open_metrics, open_stores

MB = 1024 * 1024


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


BACKENDS: dict[str, Callable[[Path], Backend]] = {"sqlite": Embedded}
