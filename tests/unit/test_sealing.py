"""Sealing at rest (`lamina.store.sealing`): what opens, what does not, and the key file."""

from __future__ import annotations

import secrets
import threading
import uuid
from pathlib import Path

import pytest

from lamina.store.sealing import (
    MasterKey,
    SealBroken,
    blob_key_id,
    decrypt_blob,
    encrypt_blob,
    open_master_key,
)


def test_a_master_key_seal_opens_only_with_its_key_and_context() -> None:
    master = MasterKey(secrets.token_bytes(32))
    sealed = master.seal(b"value", b"row-1")
    assert b"value" not in sealed
    assert master.unseal(sealed, b"row-1") == b"value"
    assert master.seal(b"value", b"row-1") != sealed  # a fresh nonce every time
    with pytest.raises(SealBroken, match="altered"):
        master.unseal(sealed, b"row-2")
    with pytest.raises(SealBroken, match="altered"):
        master.unseal(sealed[:-1] + bytes([sealed[-1] ^ 1]), b"row-1")
    with pytest.raises(SealBroken, match="same key file"):
        MasterKey(secrets.token_bytes(32)).unseal(sealed, b"row-1")
    with pytest.raises(SealBroken, match="not a value sealed"):
        master.unseal(b"plain", b"row-1")


def test_a_kms_blob_names_its_key_and_binds_its_context() -> None:
    key_id, material = str(uuid.uuid4()), secrets.token_bytes(32)
    blob = encrypt_blob(key_id, material, b"secret", {"b": "2", "a": "1"})
    assert blob_key_id(blob) == key_id
    # The context's order does not matter, its content does.
    assert decrypt_blob(material, blob, {"a": "1", "b": "2"}) == b"secret"
    with pytest.raises(SealBroken):
        decrypt_blob(material, blob, {"a": "1"})
    with pytest.raises(SealBroken):
        decrypt_blob(secrets.token_bytes(32), blob, {"a": "1", "b": "2"})
    with pytest.raises(SealBroken):
        blob_key_id(b"\x02short")


def test_racing_creators_of_the_master_key_all_get_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / "master-key"
    found: list[bytes] = []
    lock = threading.Lock()

    def open_it() -> None:
        key = open_master_key(path)
        with lock:
            found.append(key.fingerprint)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["master-key"]
    assert repr(open_master_key(path)) == f"MasterKey({found[0].hex()})"
