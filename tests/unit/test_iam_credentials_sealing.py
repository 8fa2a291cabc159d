"""IAM credentials at rest: access keys' secrets and sessions' secrets and tokens are sealed
under the master key, so the database file alone reveals none of them."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from lamina.model.iam import ACTIVE, AccessKey, Session
from lamina.store.errors import StorageError
from lamina.store.sealing import MasterKey
from lamina.store.sqlite.database import Database
from lamina.store.sqlite.iam import SqliteIamStore

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN"


def _session() -> Session:
    return Session(
        access_key_id="ASIAEXAMPLE000000001",
        secret=SECRET + "s",
        token=TOKEN,
        expires=2_000_000_000.0,
        account="123456789012",
        principal_arn="arn:aws:sts::123456789012:assumed-role/r/s",
        role_arn="arn:aws:iam::123456789012:role/r",
        enforced=True,
    )


def _key() -> AccessKey:
    return AccessKey(
        access_key_id="AKIAEXAMPLE000000001",
        user_name="alice",
        secret=SECRET,
        status=ACTIVE,
        created=1_700_000_000.0,
    )


def test_the_database_file_holds_no_secret_and_the_store_gives_them_back(tmp_path: Path) -> None:
    master = MasterKey(secrets.token_bytes(32))
    database = Database(tmp_path / "lamina.db")
    store = SqliteIamStore(database, master)
    store.put_access_key(_key())
    store.put_session(_session())
    assert store.get_access_key("AKIAEXAMPLE000000001") == _key()
    assert store.get_session("ASIAEXAMPLE000000001") == _session()
    on_disk = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    for secret in (SECRET, TOKEN):
        assert secret.encode() not in on_disk


def test_another_master_key_cannot_open_them(tmp_path: Path) -> None:
    store = SqliteIamStore(Database(tmp_path / "lamina.db"), MasterKey(secrets.token_bytes(32)))
    store.put_access_key(_key())
    other = SqliteIamStore(Database(tmp_path / "lamina.db"), MasterKey(secrets.token_bytes(32)))
    with pytest.raises(StorageError, match="AKIAEXAMPLE000000001"):
        other.get_access_key("AKIAEXAMPLE000000001")
