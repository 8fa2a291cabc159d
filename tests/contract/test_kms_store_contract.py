"""The KmsKeyStore contract, and sealing at rest in every backend: KMS keys' material and
functions' environment variables are ciphertext in the database, open only with the master
key, and rows written before sealing still read."""

from __future__ import annotations

import secrets
import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import psycopg
import pytest

from lamina.model.functions import FunctionConfig, FunctionRecord, PendingChange
from lamina.model.kms import DISABLED, KmsKey
from lamina.store.errors import StorageError
from lamina.store.postgres import pg_stores
from lamina.store.protocols import Stores
from lamina.store.sealing import MASTER_KEY_FILE, MasterKey, open_master_key
from lamina.store.sqlite import open_stores
from tests.support.backends import Backend, Embedded, Postgres

SECRET = "s3cr3t-" + secrets.token_hex(8)


def reopen(backend: Backend, master: MasterKey | None = None) -> Stores:
    """The stores again, as a restarted server or another node opens them: with the master
    key of the first opening unless `master` says otherwise."""
    if isinstance(backend, Embedded):
        return open_stores(backend.data_dir, master)
    assert isinstance(backend, Postgres)
    first_key = backend.root / MASTER_KEY_FILE  # the one key `Postgres.stores()` gives every node
    node = backend.root / f"node{uuid.uuid4().hex[:6]}"
    return pg_stores(backend.database(), node / "blobs", master or open_master_key(first_key))


def raw_rows(backend: Backend, sql: str) -> list[bytes]:
    """Every value the query selects, as the database holds it."""
    if isinstance(backend, Embedded):
        with sqlite3.connect(backend.data_dir / "lamina.db") as connection:
            return [bytes(row[0]) for row in connection.execute(sql)]
    assert isinstance(backend, Postgres)
    with psycopg.connect(backend.url, options=f"-c search_path={backend.schema}") as connection:
        return [bytes(row[0]) for row in connection.execute(sql.replace("?", "%s"))]


def new_key(key_id: str | None = None, **fields: object) -> KmsKey:
    key_id = key_id or str(uuid.uuid4())
    key = KmsKey(
        key_id=key_id,
        arn=f"arn:aws:kms:us-east-1:123456789012:key/{key_id}",
        account="123456789012",
        created=1700000000.5,
        policy='{"Statement": []}',
        material=secrets.token_bytes(32),
        description="contract",
        tags=(("team", "a"),),
    )
    return replace(key, **fields)  # type: ignore[arg-type]


def config(name: str, **fields: object) -> FunctionConfig:
    base = FunctionConfig(
        function_name=name,
        role="arn:aws:iam::123456789012:role/contract",
        runtime="python3.12",
        handler="app.handler",
        code_sha256="c0de",
        code_size=1,
        code_blob="b" * 64,
        unzipped_size=2,
        environment={"TOKEN": SECRET, "EMPTY": ""},
    )
    return replace(base, **fields)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- KMS keys


def test_a_key_round_trips_with_its_material(store_backend: Backend) -> None:
    keys = store_backend.stores().kms
    key = new_key()
    keys.put_key(key)
    assert keys.get_key(key.key_id) == key
    assert keys.get_key(str(uuid.uuid4())) is None


def test_put_replaces_a_key(store_backend: Backend) -> None:
    keys = store_backend.stores().kms
    key = new_key()
    keys.put_key(key)
    keys.put_key(replace(key, state=DISABLED, policy="{}"))
    assert keys.get_key(key.key_id) == replace(key, state=DISABLED, policy="{}")


def test_keys_page_in_id_order(store_backend: Backend) -> None:
    keys = store_backend.stores().kms
    made = sorted((new_key() for _ in range(5)), key=lambda key: key.key_id)
    for key in reversed(made):
        keys.put_key(key)
    assert keys.keys(None, 3) == made[:3]
    assert keys.keys(made[2].key_id, 3) == made[3:]
    assert keys.keys(made[4].key_id, 3) == []


def test_a_failed_transaction_keeps_no_key(store_backend: Backend) -> None:
    keys = store_backend.stores().kms
    key = new_key()
    with pytest.raises(RuntimeError), keys.transaction():
        keys.put_key(key)
        raise RuntimeError("abandon")
    assert keys.get_key(key.key_id) is None


def test_keys_survive_reopening_with_the_same_master_key(store_backend: Backend) -> None:
    key = new_key()
    store_backend.stores().kms.put_key(key)
    assert reopen(store_backend).kms.get_key(key.key_id) == key


def test_key_material_is_sealed_and_opens_only_with_the_master_key(
    store_backend: Backend,
) -> None:
    key = new_key()
    store_backend.stores().kms.put_key(key)
    for value in raw_rows(store_backend, "SELECT material FROM kms_keys"):
        assert key.material not in value
    stranger = reopen(store_backend, MasterKey(secrets.token_bytes(32))).kms
    with pytest.raises(StorageError, match="master key"):
        stranger.get_key(key.key_id)


# ------------------------------------------------------ environment variables


def test_environments_are_sealed_in_records_versions_and_pending_changes(
    store_backend: Backend,
) -> None:
    functions = store_backend.stores().functions
    latest = config("sealed")
    record = FunctionRecord(
        latest=latest,
        change=PendingChange("r", previous=replace(latest, environment={"OLD": SECRET})),
    )
    functions.put(record)
    functions.put_version(config("sealed", version="1"))
    assert functions.get("sealed") == record
    assert functions.page(None, 10) == [record]
    version = functions.get_version("sealed", 1)
    assert version is not None and version.environment == {"TOKEN": SECRET, "EMPTY": ""}
    assert functions.list_versions("sealed", None, 10) == [version]
    stored = raw_rows(store_backend, "SELECT doc FROM functions") + raw_rows(
        store_backend, "SELECT doc FROM function_versions"
    )
    assert stored and all(SECRET.encode() not in doc for doc in stored)
    assert all(b"TOKEN" not in doc for doc in stored)  # names are sealed too


def test_an_environment_under_a_kms_key_opens_on_another_node(store_backend: Backend) -> None:
    stores = store_backend.stores()
    key = new_key()
    stores.kms.put_key(key)
    record = FunctionRecord(latest=config("under-key", kms_key_arn=key.arn))
    stores.functions.put(record)
    (doc,) = raw_rows(store_backend, "SELECT doc FROM functions")
    assert "kms" in orjson.loads(doc)["latest"]["sealed_environment"]
    assert reopen(store_backend).functions.get("under-key") == record


def test_a_sealed_environment_opens_only_for_its_own_function(store_backend: Backend) -> None:
    functions = store_backend.stores().functions
    functions.put(FunctionRecord(latest=config("one")))
    functions.put(FunctionRecord(latest=config("two", environment={"OTHER": "x"})))
    (one,) = raw_rows(store_backend, "SELECT doc FROM functions WHERE name = 'one'")
    sealed = orjson.loads(one)["latest"]["sealed_environment"]
    # Paste one's sealed environment into two's row: it must not open there.
    (two,) = raw_rows(store_backend, "SELECT doc FROM functions WHERE name = 'two'")
    forged = orjson.loads(two)
    forged["latest"]["sealed_environment"] = sealed
    write_raw(store_backend, "two", orjson.dumps(forged))
    with pytest.raises(StorageError, match="function two"):
        functions.get("two")


def test_a_plaintext_row_from_before_sealing_reads_and_is_sealed_when_written(
    store_backend: Backend,
) -> None:
    functions = store_backend.stores().functions
    functions.put(FunctionRecord(latest=config("legacy", environment=None)))
    old = FunctionRecord(latest=config("legacy"))
    write_raw(store_backend, "legacy", orjson.dumps(old.to_doc()))
    assert functions.get("legacy") == old
    functions.put(old)
    (doc,) = raw_rows(store_backend, "SELECT doc FROM functions WHERE name = 'legacy'")
    assert SECRET.encode() not in doc
    assert functions.get("legacy") == old


def write_raw(backend: Backend, name: str, doc: bytes) -> None:
    if isinstance(backend, Embedded):
        with sqlite3.connect(backend.data_dir / "lamina.db") as connection:
            connection.execute("UPDATE functions SET doc = ? WHERE name = ?", (doc, name))
        return
    assert isinstance(backend, Postgres)
    with psycopg.connect(backend.url, options=f"-c search_path={backend.schema}") as connection:
        connection.execute("UPDATE functions SET doc = %s WHERE name = %s", (doc, name))


def test_the_master_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / MASTER_KEY_FILE
    first = open_master_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert open_master_key(path).fingerprint == first.fingerprint
    path.write_bytes(b"short")
    with pytest.raises(StorageError, match="not a 32-byte master key"):
        open_master_key(path)
