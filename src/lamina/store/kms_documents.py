"""How a KMS key is written in either database: its metadata as an orjson document, and its
material apart, sealed under the master key with the key's id as context (a sealed material
moved to another key's row does not open)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import orjson

from lamina.model.kms import KmsKey
from lamina.store.errors import StorageError
from lamina.store.sealing import MasterKey, SealBroken


def _context(key_id: str) -> bytes:
    return b"kms-key\0" + key_id.encode()


def encode_metadata(key: KmsKey) -> bytes:
    doc = asdict(key)
    del doc["material"]
    return orjson.dumps(doc)


def seal_material(master: MasterKey, key: KmsKey) -> bytes:
    return master.seal(key.material, _context(key.key_id))


def decode(master: MasterKey, metadata: bytes, sealed: bytes) -> KmsKey:
    doc: dict[str, Any] = orjson.loads(metadata)
    known = {f.name for f in fields(KmsKey)}
    doc = {name: value for name, value in doc.items() if name in known}
    doc["tags"] = tuple((str(k), str(v)) for k, v in doc.get("tags") or ())
    try:
        material = master.unseal(bytes(sealed), _context(doc["key_id"]))
    except SealBroken as error:
        raise StorageError(f"KMS key {doc['key_id']}: {error}") from error
    return KmsKey(material=material, **doc)
