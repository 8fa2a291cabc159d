"""Code and layers unpacked once per content hash, read-only, shared by environments."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

from lamina.store.protocols import BlobStore


def _extract(archive_path: Path, target: Path) -> None:
    """Unpack keeping file modes (so `bootstrap` stays executable) and symlinks inside."""
    with zipfile.ZipFile(archive_path) as archive:
        for entry in archive.infolist():
            destination = target / entry.filename
            mode = entry.external_attr >> 16
            if entry.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            if entry.create_system == 3 and stat.S_ISLNK(mode):
                if destination.exists() or destination.is_symlink():
                    destination.unlink()
                os.symlink(archive.read(entry).decode(), destination)
                continue
            if destination.is_symlink():
                destination.unlink()
            with archive.open(entry) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            permissions = stat.S_IMODE(mode) if entry.create_system == 3 and mode else 0o644
            destination.chmod(permissions | 0o444)


def _make_read_only(root: Path) -> None:
    for directory, subdirectories, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
        for name in subdirectories:
            (Path(directory) / name).chmod(0o555)
    root.chmod(0o555)


class ArtifactCache:
    """`<root>/code/<blob>` and `<root>/opt/<hash of layer blobs>`, each unpacked once."""

    def __init__(self, root: Path, blobs: BlobStore) -> None:
        self._root = root
        self._blobs = blobs
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True, mode=0o711)

    def code_dir(self, blob_key: str) -> Path:
        return self._materialise(self._code_target(blob_key), [blob_key])

    def opt_dir(self, layer_blob_keys: Sequence[str]) -> Path | None:
        target = self._opt_target(layer_blob_keys)
        return None if target is None else self._materialise(target, layer_blob_keys)

    def unpacked(
        self, blob_key: str, layer_blob_keys: Sequence[str]
    ) -> tuple[Path, Path | None] | None:
        """`code_dir` and `opt_dir` of these where both are on disk already, else None (they
        have to be fetched or unpacked: work for a thread, not for the event loop)."""
        code, opt = self._code_target(blob_key), self._opt_target(layer_blob_keys)
        if code.exists() and (opt is None or opt.exists()):
            return code, opt
        return None

    def _code_target(self, blob_key: str) -> Path:
        return self._root / "code" / blob_key

    def _opt_target(self, layer_blob_keys: Sequence[str]) -> Path | None:
        if not layer_blob_keys:
            return None
        digest = hashlib.sha256("/".join(layer_blob_keys).encode()).hexdigest()[:32]
        return self._root / "opt" / digest

    def _materialise(self, target: Path, blob_keys: Sequence[str]) -> Path:
        if target.exists():
            return target
        with self._lock:
            if target.exists():
                return target
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
            try:
                # Later layers win where files collide, as on AWS.
                for key in blob_keys:
                    _extract(self._blobs.path(key), staging)
                _make_read_only(staging)
                staging.rename(target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return target
