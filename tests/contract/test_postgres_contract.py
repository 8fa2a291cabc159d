"""What only the PostgreSQL store has to promise: several nodes on one database see each
other's writes and change stamps, read-modify-writes are serialised across nodes, and schema
migrations are safe to run twice or from several nodes at once."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import psycopg
import pytest

from lamina.model.functions import FunctionConfig, FunctionRecord
from lamina.store.postgres import functions as functions_schema
from lamina.store.postgres import pg_stores
from lamina.store.postgres.database import PgDatabase
from lamina.store.protocols import Stores
from tests.support.backends import Postgres

VISIBLE_WITHIN_S = 1.5


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Postgres]:
    instance = Postgres(tmp_path)
    yield instance
    instance.close()


def node(backend: Postgres) -> Stores:
    return backend.stores()


def record(name: str, code_size: int = 1) -> FunctionRecord:
    return FunctionRecord(
        latest=FunctionConfig(
            function_name=name,
            role="arn:aws:iam::123456789012:role/contract",
            runtime="python3.12",
            handler="app.handler",
            code_sha256="c0de",
            code_size=code_size,
            code_blob="b" * 64,
            unzipped_size=2,
        )
    )


def eventually(check: Callable[[], bool], within: float = VISIBLE_WITHIN_S) -> float:
    """Seconds until `check()` held; fails if it did not within `within`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, "not within the deadline"
        time.sleep(0.005)
    return time.monotonic() - start


def test_a_write_on_one_node_is_read_on_another_and_moves_its_stamp(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    before = b.functions.change_stamp()
    a.functions.put(record("f", code_size=5))
    eventually(lambda: b.functions.change_stamp() != before)
    stored = b.functions.get("f")
    assert stored is not None and stored.latest.code_size == 5
    # And back: b's delete reaches a.
    seen = a.functions.change_stamp()
    b.functions.delete("f")
    eventually(lambda: a.functions.change_stamp() != seen)
    assert a.functions.get("f") is None


def test_a_node_that_only_reads_keeps_its_stamp(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    a.functions.put(record("f"))
    stamp = b.functions.change_stamp()
    for _ in range(20):
        b.functions.get("f")
        b.functions.page(None, 10)
    time.sleep(0.6)  # a poll of the listener
    assert b.functions.change_stamp() == stamp


def test_a_rolled_back_write_moves_no_other_node(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    stamp = b.functions.change_stamp()
    with pytest.raises(RuntimeError), a.functions.transaction():
        a.functions.put(record("f"))
        raise RuntimeError("abort")
    time.sleep(0.6)
    assert b.functions.change_stamp() == stamp
    assert b.functions.get("f") is None


def test_named_stamps_move_apart(backend: Postgres) -> None:
    a, b = backend.database(), backend.database()
    control, other = b.change_stamp(), b.change_stamp("other")
    with a.transaction():
        a.touch("other")
    eventually(lambda: b.change_stamp("other") != other)
    assert b.change_stamp() == control


def test_the_stamp_survives_a_lost_listener_connection(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    stamp = b.functions.change_stamp()
    with psycopg.connect(backend.url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"lamina-stamps {backend.schema}",),
        ).fetchall()
    assert ended
    a.functions.put(record("after"))
    eventually(lambda: b.functions.change_stamp() != stamp, within=3.0)
    assert b.functions.get("after") is not None


def test_read_modify_writes_are_serialised_across_nodes(backend: Postgres) -> None:
    nodes = [node(backend) for _ in range(2)]
    rounds, threads_per_node = 15, 3

    def bump(stores: Stores) -> None:
        for _ in range(rounds):
            with stores.layers.transaction():
                number = stores.layers.last_version("deps") + 1
                stores.layers.set_last_version("deps", number)

    threads = [
        threading.Thread(target=bump, args=(stores,))
        for stores in nodes
        for _ in range(threads_per_node)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert nodes[0].layers.last_version("deps") == rounds * threads_per_node * len(nodes)


def test_a_blob_is_fetched_by_another_node_into_its_own_cache(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    data = b"PK\x03\x04" + bytes(range(256)) * 1000
    key = a.blobs.put(data)
    assert b.blobs.exists(key)
    path = b.blobs.path(key)
    assert path.read_bytes() == data
    assert path != a.blobs.path(key)


def test_a_blob_put_in_a_rolled_back_transaction_is_not_kept(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    data = b"rolled back"
    with pytest.raises(RuntimeError), a.functions.transaction():
        a.blobs.put(data)
        raise RuntimeError("abort")
    key = hashlib.sha256(data).hexdigest()
    assert not a.blobs.exists(key)
    with pytest.raises(FileNotFoundError):
        b.blobs.get(key)


STEPS = {
    1: "CREATE TABLE IF NOT EXISTS migrated (id SERIAL PRIMARY KEY, note TEXT NOT NULL)",
    # Not idempotent on purpose: a second run would add a second row.
    2: "INSERT INTO migrated (note) VALUES ('step 2')",
}


def applied(database: PgDatabase) -> list[tuple[int, int]]:
    rows = database.query(
        "SELECT version, count(*) FROM schema_migrations WHERE component = 'contract' "
        "GROUP BY version ORDER BY version"
    )
    return [(int(version), int(count)) for version, count in rows]


def test_migrations_run_twice_apply_each_step_once(backend: Postgres) -> None:
    first = backend.database()
    first.migrate("contract", STEPS)
    first.migrate("contract", STEPS)
    backend.database().migrate("contract", STEPS)
    assert applied(first) == [(1, 1), (2, 1)]
    assert first.query_one("SELECT count(*) FROM migrated") == 1


def test_concurrent_migrators_apply_each_step_once(backend: Postgres) -> None:
    databases = [backend.database() for _ in range(4)]
    start = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def migrate(database: PgDatabase) -> None:
        start.wait()
        try:
            database.migrate("contract", STEPS)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert applied(databases[0]) == [(1, 1), (2, 1)]
    assert databases[0].query_one("SELECT count(*) FROM migrated") == 1


def test_a_newer_node_migrates_while_an_older_one_keeps_writing(backend: Postgres) -> None:
    older = backend.database()
    older.migrate("contract", {1: STEPS[1]})
    newer = backend.database()
    newer.migrate(
        "contract",
        {1: STEPS[1], 2: "ALTER TABLE migrated ADD COLUMN IF NOT EXISTS size INTEGER DEFAULT 0"},
    )
    # The older node's statements, written before the column existed, still work.
    older.execute("INSERT INTO migrated (note) VALUES (%s)", "old")
    assert older.query("SELECT note FROM migrated") == [("old",)]
    assert newer.query("SELECT note, size FROM migrated") == [("old", 0)]


def test_every_table_lives_in_the_backends_schema(backend: Postgres) -> None:
    pg_stores(backend.database(), backend.root / "cache")
    with psycopg.connect(backend.url, autocommit=True) as admin:
        schemas = {
            row[0]
            for row in admin.execute(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name IN ('functions', 'layers', 'blobs', 'schema_migrations') "
                "AND table_schema = %s",
                (backend.schema,),
            )
        }
    assert schemas == {backend.schema}


def test_reservations_stored_before_their_column_existed_are_read(backend: Postgres) -> None:
    """Migration 2 of the function store fills the reserved column from the documents."""
    database = backend.database()
    database.migrate("functions", {1: functions_schema.MIGRATIONS[1]})
    for name, reserved, note in (("kept", 5, "a\x00b"), ("open", None, "plain")):
        stored = replace(record(name), reserved_concurrency=reserved, tags={"note": note})
        database.execute(
            "INSERT INTO functions (name, doc, code_size) VALUES (%s, %s, 1)",
            name,
            orjson.dumps(stored.to_doc()),
        )
    assert node(backend).functions.reservations() == {"kept": 5}
