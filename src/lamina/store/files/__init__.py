"""Stores kept as plain files, for data people read with ordinary tools too."""

from __future__ import annotations

from pathlib import Path

from lamina.store.files.audit import FileAuditStore, audit_directory
from lamina.store.protocols import AuditStore


def open_audit(data_dir: Path, max_bytes: int, writer: bool = False) -> AuditStore:
    """The audit records under `<data dir>/audit/`, kept under `max_bytes`.

    A `writer` (the server that records) makes its directory and opens its segment now, so a
    data directory it cannot write to fails at start-up, not at the first call.
    """
    return FileAuditStore(audit_directory(data_dir), max_bytes, writer)
