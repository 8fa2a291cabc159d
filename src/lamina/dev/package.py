"""What belongs to a function's package, and the deterministic zip built from it.

One rule decides both what is zipped and which changes trigger a redeploy, so an editor's
swap file neither lands in the package nor causes a deploy. The zip has fixed timestamps and
sorted entries: the same files give the same bytes, so a save that changes nothing (a touch,
an undo) is recognised and not deployed.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# Tools' state and caches, never part of a function.
IGNORED_DIRECTORIES = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".venv",
        ".lamina",
        ".aws-sam",
        ".serverless",
        ".idea",
        ".vscode",
    }
)
IGNORED_SUBTREES = (("node_modules", ".cache"),)
# Editors' swap, backup and lock files: vim (.swp, and `4913`, its probe that a directory is
# writable), emacs (`~`, `#name#`, `.#name`), JetBrains' safe-write temporaries, and macOS.
_IGNORED_SUFFIXES = (
    ".swp",
    ".swo",
    ".swx",
    ".swpx",
    "~",
    ".pyc",
    ".pyo",
    "___jb_tmp___",
    "___jb_old___",
)
_IGNORED_NAMES = frozenset({"4913", ".DS_Store"})
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def is_ignored(relative: PurePosixPath) -> bool:
    parts = relative.parts
    if any(part in IGNORED_DIRECTORIES for part in parts[:-1]):
        return True
    for subtree in IGNORED_SUBTREES:
        for start in range(len(parts) - len(subtree) + 1):
            if parts[start : start + len(subtree)] == subtree:
                return True
    name = relative.name
    return (
        name in IGNORED_DIRECTORIES
        or name in _IGNORED_NAMES
        or name.endswith(_IGNORED_SUFFIXES)
        or name.startswith(".#")
        or (len(name) > 1 and name.startswith("#") and name.endswith("#"))
    )


@dataclass(frozen=True)
class Package:
    archive: bytes
    files: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()


def package_files(directory: Path, excluded: Path | None = None) -> list[tuple[str, Path]]:
    """(name in the zip, path) of every file that belongs to the function, sorted."""
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(directory):
        base = Path(root)
        relative_root = PurePosixPath(base.relative_to(directory).as_posix())
        # Prune in place so that os.walk never descends into ignored trees.
        dirs[:] = [
            name
            for name in dirs
            if not is_ignored(relative_root / name / "_")
            and (excluded is None or (base / name).resolve() != excluded)
        ]
        for name in files:
            relative = relative_root / name
            if not is_ignored(relative):
                found.append((relative.as_posix(), base / name))
    return sorted(found)


def build_package(directory: Path, excluded: Path | None = None) -> Package:
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in package_files(directory, excluded):
            try:
                mode = path.stat().st_mode  # follows a symbolic link to what it points at
                content = path.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                continue  # removed mid-save, or a link to a directory or to nothing
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            # Keep the permission bits: a `bootstrap` must stay executable.
            info.external_attr = (stat.S_IFREG | stat.S_IMODE(mode)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
            count += 1
    return Package(buffer.getvalue(), count)
