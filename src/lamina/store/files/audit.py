"""The audit trail on disk: JSON Lines in numbered segments, appended, fsynced, bounded.

A segment is closed once it reaches its share of the size budget and the oldest segment is
deleted when there are more than `SEGMENTS`, so the log never holds much more than its budget
and always holds the newest records. Files rather than a database because they are part of
the interface: `tail -f`, `jq` and log shippers read `<data dir>/audit/` directly, and
`lamina audit --data-dir` reads it while the server runs or with no server at all.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from lamina.store.errors import StorageError
from lamina.store.protocols.audit import AuditQuery, timestamp

SEGMENTS = 8
_SEGMENT = re.compile(r"^audit-(\d{8})\.jsonl$")


def audit_directory(data_dir: Path) -> Path:
    return data_dir / "audit"


def segments(directory: Path) -> list[Path]:
    """The log's segment files, oldest first."""
    try:
        names = [name for name in os.listdir(directory) if _SEGMENT.match(name)]
    except FileNotFoundError:
        return []
    return [directory / name for name in sorted(names)]


def _number_of(path: Path) -> int:
    match = _SEGMENT.match(path.name)
    return int(match[1]) if match else 0


class FileAuditStore:
    """Implements `AuditStore`: one writer per directory, appending from one thread; any
    number of readers, in this process or another."""

    def __init__(self, directory: Path, max_bytes: int, writer: bool = False) -> None:
        self.directory = directory
        self._segment_bytes = max(1, max_bytes // SEGMENTS)
        self._number = 1
        self._size = 0
        # Opened by the first append unless this is the writer: a reader never writes.
        self._fd: int | None = self._open_writer() if writer else None

    def _open_writer(self) -> int:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        existing = segments(self.directory)
        self._number = _number_of(existing[-1]) if existing else 1
        fd = self._open()
        # A crash can leave half a line behind; end it so the next record starts clean.
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
        self._size = os.fstat(fd).st_size
        return fd

    def _open(self) -> int:
        path = self.directory / f"audit-{self._number:08d}.jsonl"
        # Read-write only so that the writer can look at the last byte; writes always append.
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        try:
            self._append(records)
        except OSError as error:
            raise StorageError(f"could not write the audit log: {error}") from error

    def _append(self, records: Sequence[Mapping[str, Any]]) -> None:
        if self._fd is None:
            self._fd = self._open_writer()
        data = b"".join(orjson.dumps(record) + b"\n" for record in records)
        if self._size and self._size + len(data) > self._segment_bytes:
            self._rotate()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self._size += len(data)

    def _rotate(self) -> None:
        assert self._fd is not None
        fd, self._fd = self._fd, None  # should the next open fail, the next append retries
        os.close(fd)
        self._number += 1
        self._fd = self._open()
        self._size = 0
        for old in segments(self.directory)[:-SEGMENTS]:
            old.unlink(missing_ok=True)

    def query(self, query: AuditQuery) -> list[dict[str, Any]]:
        found: collections.deque[dict[str, Any]] = collections.deque(maxlen=query.limit)
        for record in _records(self.directory, query.since):
            if query.matches(record):
                found.append(record)
        return list(found)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _records(directory: Path, since: str | None) -> Iterator[dict[str, Any]]:
    for path in segments(directory):
        try:
            with path.open("rb") as segment:
                # A segment last written before `since` holds nothing newer: skip reading it.
                if since is not None and _mtime_stamp(segment.fileno()) < since:
                    continue
                for line in segment:
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # half a line a crash left, or one being written right now
                    if isinstance(record, dict):
                        yield record
        except FileNotFoundError:
            continue  # rotated away while we read


def _mtime_stamp(fd: int) -> str:
    return timestamp(os.fstat(fd).st_mtime)
