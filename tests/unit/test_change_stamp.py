"""The change stamp readers cache by must move once a write is visible to them."""

from __future__ import annotations

import threading
from pathlib import Path

from lamina.store.sqlite.database import Database


def test_the_stamp_moves_after_the_commit_a_reader_could_have_missed(tmp_path: Path) -> None:
    database = Database(tmp_path / "lamina.db")
    database.execute("CREATE TABLE IF NOT EXISTS probe (value INTEGER)")
    seen: list[tuple[int, list[int]]] = []

    def read() -> None:
        # Another thread (the event loop's) between the write and its commit: it sees the
        # statement's stamp but, under WAL, the state from before the transaction.
        stamp = database.changes
        values = [row[0] for row in database.query("SELECT value FROM probe")]
        seen.append((stamp, values))

    with database.transaction():
        database.execute("INSERT INTO probe VALUES (1)")  # bumps the stamp
        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
    ((stamp_during, values_during),) = seen
    assert values_during == []  # the reader could not see the uncommitted rows
    # so a cache filled then must be invalid now that they are committed
    assert database.changes != stamp_during


def test_a_commit_without_a_stamped_write_leaves_the_stamp(tmp_path: Path) -> None:
    # The async queue and the rule store write past `execute`: their traffic must not make
    # every function-configuration cache re-read.
    database = Database(tmp_path / "lamina.db")
    database.execute("CREATE TABLE IF NOT EXISTS probe (value INTEGER)")
    before = database.changes
    with database.transaction() as connection:
        connection.execute("INSERT INTO probe VALUES (1)")
    assert database.changes == before
