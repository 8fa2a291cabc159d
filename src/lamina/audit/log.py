"""The audit log on disk: JSON Lines in numbered segments, appended, fsynced, bounded.

A segment is closed once it reaches its share of the size budget and the oldest segment is
deleted when there are more than `SEGMENTS`, so the log never holds much more than its budget
and always holds the newest entries. Plain JSON Lines so that `tail -f`, `jq` and log
shippers can read it too.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from lamina.audit.record import function_name, timestamp

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


class AuditLog:
    """The writing side; one per data directory, used from one thread."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self._segment_bytes = max(1, max_bytes // SEGMENTS)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        existing = segments(directory)
        self._number = _number_of(existing[-1]) if existing else 1
        self._fd = self._open()
        # A crash can leave half a line behind; end it so the next entry starts clean.
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        path = self.directory / f"audit-{self._number:08d}.jsonl"
        # Read-write only so that __init__ can look at the last byte; writes always append.
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def append(self, entries: list[dict[str, Any]]) -> None:
        """Write entries and fsync them: once this returns they survive a crash."""
        data = b"".join(orjson.dumps(entry) + b"\n" for entry in entries)
        if self._size and self._size + len(data) > self._segment_bytes:
            self._rotate()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._number += 1
        self._fd = self._open()
        self._size = 0
        for old in segments(self.directory)[:-SEGMENTS]:
            old.unlink(missing_ok=True)

    def close(self) -> None:
        os.close(self._fd)


@dataclass(frozen=True)
class AuditQuery:
    """Which entries to return: the newest `limit` of those that match every filter."""

    since: str | None = None  # a timestamp in the log's own format (see record.timestamp)
    function: str | None = None
    operation: str | None = None
    failed: bool = False
    limit: int = 100

    def matches(self, entry: Mapping[str, Any]) -> bool:
        if self.since is not None and entry.get("Time", "") < self.since:
            return False
        if self.failed and int(entry.get("Status") or 0) < 400:
            return False
        if self.operation is not None and (
            str(entry.get("Operation")).lower() != self.operation.lower()
        ):
            return False
        if self.function is not None:
            resource = entry.get("Resource")
            if not isinstance(resource, str):
                return False
            return function_name(resource) == function_name(self.function)
        return True

    def to_params(self) -> dict[str, str]:
        params = {"limit": str(self.limit)}
        if self.since is not None:
            params["since"] = self.since
        if self.function is not None:
            params["function"] = self.function
        if self.operation is not None:
            params["operation"] = self.operation
        if self.failed:
            params["failed"] = "true"
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> AuditQuery:
        limit = params.get("limit", "100")
        if not limit.isdigit() or int(limit) < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        return cls(
            since=params.get("since") or None,
            function=params.get("function") or None,
            operation=params.get("operation") or None,
            failed=params.get("failed", "").lower() in {"1", "true", "yes"},
            limit=int(limit),
        )


def read_entries(directory: Path, query: AuditQuery) -> list[dict[str, Any]]:
    """The newest matching entries, oldest first. Safe while a server appends and rotates."""
    found: collections.deque[dict[str, Any]] = collections.deque(maxlen=query.limit)
    for entry in _entries(directory, query.since):
        if query.matches(entry):
            found.append(entry)
    return list(found)


def _entries(directory: Path, since: str | None) -> Iterator[dict[str, Any]]:
    for path in segments(directory):
        try:
            with path.open("rb") as segment:
                # A segment last written before `since` holds nothing newer: skip reading it.
                if since is not None and _mtime_stamp(segment.fileno()) < since:
                    continue
                for line in segment:
                    try:
                        entry = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # half a line a crash left, or one being written right now
                    if isinstance(entry, dict):
                        yield entry
        except FileNotFoundError:
            continue  # rotated away while we read


def _mtime_stamp(fd: int) -> str:
    return timestamp(os.fstat(fd).st_mtime)
