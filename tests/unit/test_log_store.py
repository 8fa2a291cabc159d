"""What only the SQLite log store does: its file shrinks with the bound, and a full disk
surfaces as `StorageError`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.store.errors import StorageError
from lamina.store.sqlite.logs import SqliteLogStore

GROUP, STREAM = "/aws/lambda/fn", "2024/01/01/[$LATEST]" + "a" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLogStore]:
    instance = SqliteLogStore(tmp_path / "logs.db", 512 * 1024)
    yield instance
    instance.close()


def test_the_file_shrinks_with_the_bound(store: SqliteLogStore) -> None:
    line = "x" * 200
    for batch in range(40):  # about 1.6 MB of text, three times the bound
        lines = [(batch * 1000 + i, f"{batch} {i} {line}") for i in range(200)]
        store.append([(GROUP, STREAM, lines)])  # keeps the bound as it goes
    assert store.used_bytes() <= 512 * 1024
    # Incremental vacuum and a truncated WAL give the space back to the file system.
    assert store.disk_bytes() <= 512 * 1024 + 64 * 1024


def test_a_full_disk_is_a_storage_error_and_stores_nothing(store: SqliteLogStore) -> None:
    store.append([(GROUP, STREAM, [(1, "before")])])
    pages = store.used_bytes() // 4096 + 1
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # as if the disk were full
    with pytest.raises(StorageError, match="full"):
        store.append([(GROUP, STREAM, [(2, "x" * 100_000)])])
    # A stream's first lines create it; a failed append must not leave it half made.
    with pytest.raises(StorageError, match="full"):
        store.append([(GROUP, "new", [(2, "y" * 100_000)])])
    store._db.execute("PRAGMA max_page_count = 1000000")
    store.append([(GROUP, STREAM, [(3, "after")]), (GROUP, "new", [(3, "first")])])
    group = store.group(GROUP)
    assert group.stored_bytes == len("beforeafterfirst")
    for name, expected in ((STREAM, ["before", "after"]), ("new", ["first"])):
        events = store.read_stream(store.stream(group.id, name).id, None, None, None, True, 10)
        assert [event.message for event in events] == expected
