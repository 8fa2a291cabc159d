"""Shared secrets as files in one node's data directory (`<data dir>/<name>-secret`).

"link" is `link-secret`, the file Lamina has always kept its download-link key in, so links
signed before an upgrade stay valid after it. A new secret is written whole to a private
temporary file and then hard-linked into place: the link either appears with all its bytes
or fails because another process linked first, so racing creators never see a partial file
and all end up reading the one that won.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path

from lamina.store.errors import StorageError
from lamina.store.protocols.secrets import SECRET_BYTES, check_name


class FileSecrets:
    """Implements `SharedSecrets` for the nodes that share one data directory (one node)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._known: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        return self.data_dir / f"{check_name(name)}-secret"

    def secret(self, name: str) -> bytes:
        with self._lock:
            known = self._known.get(name)
            if known is None:
                known = self._known[name] = self._read_or_create(self.path(name))
            return known

    def _read_or_create(self, path: Path) -> bytes:
        try:
            with contextlib.suppress(FileNotFoundError):
                return _read(path)
            self._create(path)
            return _read(path)
        except OSError as error:
            raise StorageError(f"could not keep the secret in {path}: {error}") from error

    def _create(self, path: Path) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(secrets.token_bytes(SECRET_BYTES))
                file.flush()
                # On disk before it has its name: a crash must not leave an empty secret.
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: its secret stands
                os.link(draft, path)
            _sync_directory(self.data_dir)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(draft)


def _read(path: Path) -> bytes:
    value = path.read_bytes()
    if not value:
        # Only a crash of an old Lamina (which wrote the file in place) leaves one empty;
        # signing with an empty key would be no signing at all.
        raise StorageError(f"{path} is empty: remove it to have a new secret made")
    return value


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
