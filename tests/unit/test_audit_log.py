"""The audit log's files: private, in bounded segments, tolerant of a crash, never written
by a reader; and the query as it travels to the server."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from lamina.commands.audit import parse_since
from lamina.store.files.audit import SEGMENTS, FileAuditStore, segments
from lamina.store.protocols.audit import AuditQuery, timestamp


def entry(number: int, **fields: Any) -> dict[str, Any]:
    base = {
        "Time": timestamp(1_700_000_000 + number),
        "RequestId": f"r{number}",
        "Operation": "GetFunction",
        "Resource": "fn",
        "Status": 200,
    }
    return {**base, **fields}


def test_entries_survive_reopening(tmp_path: Path) -> None:
    log = FileAuditStore(tmp_path, max_bytes=1 << 20)
    log.append([entry(1), entry(2)])
    log.close()
    log = FileAuditStore(tmp_path, max_bytes=1 << 20)
    log.append([entry(3)])
    log.close()
    found = FileAuditStore(tmp_path, 1).query(AuditQuery(limit=10))
    assert [item["RequestId"] for item in found] == ["r1", "r2", "r3"]
    assert os.stat(segments(tmp_path)[0]).st_mode & 0o777 == 0o600


def test_the_log_is_bounded_and_keeps_the_newest(tmp_path: Path) -> None:
    log = FileAuditStore(tmp_path, max_bytes=8 * 1024)
    for number in range(500):
        log.append([entry(number)])
    log.close()
    files = segments(tmp_path)
    assert len(files) == SEGMENTS
    assert sum(path.stat().st_size for path in files) <= 8 * 1024 + 1024
    found = FileAuditStore(tmp_path, 1).query(AuditQuery(limit=1000))
    assert found[-1]["RequestId"] == "r499"
    numbers = [int(item["RequestId"][1:]) for item in found]
    assert numbers == sorted(numbers) and numbers[0] > 0


def test_half_a_line_from_a_crash_costs_nothing_else(tmp_path: Path) -> None:
    log = FileAuditStore(tmp_path, max_bytes=1 << 20)
    log.append([entry(1)])
    log.close()
    with segments(tmp_path)[0].open("ab") as segment:
        segment.write(b'{"Time": "2023-')  # the process died mid-write
    log = FileAuditStore(tmp_path, max_bytes=1 << 20)
    log.append([entry(2)])
    log.close()
    found = FileAuditStore(tmp_path, 1).query(AuditQuery(limit=10))
    assert [item["RequestId"] for item in found] == ["r1", "r2"]


def test_a_reader_writes_nothing(tmp_path: Path) -> None:
    reader = FileAuditStore(tmp_path / "audit", max_bytes=1 << 20)
    assert reader.query(AuditQuery()) == []
    reader.close()
    assert not (tmp_path / "audit").exists()
    writer = FileAuditStore(tmp_path / "audit", max_bytes=1 << 20, writer=True)
    assert segments(tmp_path / "audit") != []  # made and opened at once
    writer.append([entry(1)])
    with segments(tmp_path / "audit")[0].open("ab") as segment:
        segment.write(b'{"Time": "2023-')  # a line being written right now
    before = segments(tmp_path / "audit")[0].read_bytes()
    assert [item["RequestId"] for item in reader.query(AuditQuery())] == ["r1"]
    assert segments(tmp_path / "audit")[0].read_bytes() == before
    writer.close()


def test_query_travels_as_parameters() -> None:
    query = AuditQuery(since=timestamp(5), function="f", operation="Op", failed=True, limit=7)
    assert AuditQuery.from_params(query.to_params()) == query
    assert AuditQuery.from_params({}) == AuditQuery()
    with pytest.raises(ValueError, match="limit"):
        AuditQuery.from_params({"limit": "0"})


def test_since() -> None:
    now = time.time()
    assert parse_since("1h", now) == timestamp(now - 3600)
    assert parse_since("90s", now) == timestamp(now - 90)
    assert parse_since("2024-05-01T10:00:00", now) == "2024-05-01T10:00:00.000Z"
    assert parse_since("2024-05-01T12:00:00+02:00", now) == "2024-05-01T10:00:00.000Z"
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday", now)
