"""Functions' environment variables sealed in the stored documents.

The function stores call `seal_*` on what they write and `open_*` on what they read, so the
domain and the `FunctionStore` protocol see plaintext while the database holds only
ciphertext: under the KMS key the configuration's `kms_key_arn` names (KMS's blob, with
Lambda's encryption context `LambdaFunctionName`, as AWS encrypts them), else under the
master key. The function's name is bound in either way: a sealed environment pasted into
another function's row does not open.

Documents written before sealing existed keep `environment` in plaintext and read as they
are; the next write of the function seals them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from lamina.model.kms import KmsKey
from lamina.store.errors import StorageError
from lamina.store.sealing import MasterKey, SealBroken, blob_key_id, decrypt_blob, encrypt_blob

SEALED = "sealed_environment"

Doc = dict[str, Any]
# A KMS key's material by key id (None: no such key).
MaterialLookup = Callable[[str], bytes | None]


def key_id_of(kms_key_arn: str | None) -> str | None:
    """The key id in a KMS key ARN (`arn:aws:kms:<region>:<account>:key/<id>`)."""
    if not kms_key_arn:
        return None
    _, marker, key_id = kms_key_arn.partition(":key/")
    return key_id if marker and key_id else None


class EnvironmentSealer:
    def __init__(self, master: MasterKey, material: MaterialLookup) -> None:
        self._master = master
        self._material = material

    # Function configurations (`$LATEST` or a version).

    def seal_config(self, doc: Doc) -> Doc:
        variables = doc.get("environment")
        if variables is None:
            return doc
        name: str = doc["function_name"]
        plaintext = orjson.dumps(variables)
        key_id = key_id_of(doc.get("kms_key_arn"))
        material = self._material(key_id) if key_id else None
        if key_id is not None and material is not None:
            blob = encrypt_blob(key_id, material, plaintext, {"LambdaFunctionName": name})
            sealed = {"kms": base64.b64encode(blob).decode()}
        else:
            blob = self._master.seal(plaintext, _master_context(name))
            sealed = {"master": base64.b64encode(blob).decode()}
        return {**doc, "environment": None, SEALED: sealed}

    def open_config(self, doc: Doc) -> Doc:
        sealed: dict[str, str] | None = doc.get(SEALED)
        if sealed is None:
            return doc
        name: str = doc["function_name"]
        try:
            if "kms" in sealed:
                plaintext = self._open_kms(base64.b64decode(sealed["kms"]), name)
            else:
                plaintext = self._master.unseal(
                    base64.b64decode(sealed["master"]), _master_context(name)
                )
        except SealBroken as error:
            raise StorageError(f"the environment of function {name}: {error}") from error
        opened = {key: value for key, value in doc.items() if key != SEALED}
        opened["environment"] = orjson.loads(plaintext)
        return opened

    def _open_kms(self, blob: bytes, name: str) -> bytes:
        key_id = blob_key_id(blob)
        material = self._material(key_id)
        if material is None:
            raise SealBroken(f"sealed under KMS key {key_id}, which is not in the store")
        return decrypt_blob(material, blob, {"LambdaFunctionName": name})

    # Function records: `$LATEST`, and `$LATEST` as it was before an unsettled update.

    def seal_record(self, doc: Doc) -> Doc:
        return self._each_config(doc, self.seal_config)

    def open_record(self, doc: Doc) -> Doc:
        return self._each_config(doc, self.open_config)

    @staticmethod
    def _each_config(doc: Doc, change: Callable[[Doc], Doc]) -> Doc:
        out = {**doc, "latest": change(doc["latest"])}
        pending = doc.get("change")
        if pending is not None and pending.get("previous") is not None:
            out["change"] = {**pending, "previous": change(pending["previous"])}
        return out


def _master_context(function_name: str) -> bytes:
    return b"environment\0" + function_name.encode()


class _KeyMaterial(Protocol):
    def get_key(self, key_id: str) -> KmsKey | None: ...


def sealer_for(master: MasterKey, keys: _KeyMaterial) -> EnvironmentSealer:
    """The sealer of the function store beside the KMS key store `keys`."""
    # A key's material never changes (KMS's subset neither rotates nor deletes keys), so
    # listing many functions sealed under one key reads it once.
    known: dict[str, bytes] = {}

    def material(key_id: str) -> bytes | None:
        found = known.get(key_id)
        if found is None:
            key = keys.get_key(key_id)
            if key is None:
                return None
            found = known[key_id] = key.material
        return found

    return EnvironmentSealer(master, material)
