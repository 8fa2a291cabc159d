"""The BlobStore contract: content addressing, idempotent and concurrent puts, lookups."""

from __future__ import annotations

import hashlib
import threading

import pytest

from lamina.store.protocols import BlobStore
from tests.support.backends import Backend


@pytest.fixture
def blobs(store_backend: Backend) -> BlobStore:
    return store_backend.stores().blobs


def test_blobs_are_keyed_by_their_sha256(blobs: BlobStore) -> None:
    data = b"PK\x03\x04 some archive"
    key = blobs.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert blobs.exists(key)
    assert blobs.get(key) == data
    assert blobs.path(key).read_bytes() == data


def test_a_key_the_caller_computed_is_used_as_is(blobs: BlobStore) -> None:
    data = b"hashed while streaming"
    digest = hashlib.sha256(data).hexdigest()
    assert blobs.put(data, digest) == digest
    assert blobs.get(digest) == data


def test_putting_the_same_bytes_again_changes_nothing(blobs: BlobStore) -> None:
    key = blobs.put(b"same")
    assert blobs.put(b"same") == key
    assert blobs.get(key) == b"same"


def test_a_missing_blob_does_not_exist(blobs: BlobStore) -> None:
    key = hashlib.sha256(b"never stored").hexdigest()
    assert not blobs.exists(key)
    with pytest.raises(FileNotFoundError):
        blobs.get(key)


def test_concurrent_puts_of_the_same_and_of_different_bytes(blobs: BlobStore) -> None:
    payloads = [bytes([n]) * 200_000 for n in range(8)]
    keys: list[str] = []
    lock = threading.Lock()

    def writer(data: bytes) -> None:
        key = blobs.put(data)
        with lock:
            keys.append(key)

    threads = [threading.Thread(target=writer, args=(data,)) for data in payloads * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(set(keys)) == sorted(hashlib.sha256(data).hexdigest() for data in payloads)
    for data in payloads:
        assert blobs.get(hashlib.sha256(data).hexdigest()) == data


def test_blobs_survive_reopening_the_store(store_backend: Backend) -> None:
    key = store_backend.stores().blobs.put(b"kept")
    assert store_backend.stores().blobs.get(key) == b"kept"
