"""IAM's entities as the documents both IAM stores keep (orjson bytes), and the keys they are
found by.

Shared by the SQLite and PostgreSQL stores so that the two keep the same bytes. Names are
found case-insensitively, as IAM finds them: `name_key` is what the unique columns hold,
while the entity keeps the spelling it was created with.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any, TypeVar

import orjson

from lamina.model.iam import (
    AccessKey,
    InlinePolicy,
    ManagedPolicy,
    PolicyVersion,
    Role,
    Session,
    User,
)
from lamina.store.errors import StorageError
from lamina.store.sealing import MasterKey, SealBroken

Entity = TypeVar(
    "Entity", Role, User, AccessKey, ManagedPolicy, PolicyVersion, InlinePolicy, Session
)


def name_key(name: str) -> str:
    """What a role's, user's, policy's (or a policy ARN's) uniqueness is decided on."""
    return name.lower()


def encode(
    entity: Role | User | AccessKey | ManagedPolicy | PolicyVersion | InlinePolicy | Session,
) -> bytes:
    return orjson.dumps(dataclasses.asdict(entity))


def decode(kind: type[Entity], raw: bytes) -> Entity:
    doc: dict[str, Any] = orjson.loads(raw)
    if "tags" in doc:
        # JSON has no tuples: the pairs come back as lists.
        doc["tags"] = tuple((key, value) for key, value in doc["tags"])
    return kind(**doc)


# Access keys' secrets and sessions' secrets and tokens are sealed under the master key, bound
# to their access key id: a database copied off the machine holds no usable credential.
_SEALED = "sealed_credentials"
_HIDDEN = ("secret", "token")
Credentials = TypeVar("Credentials", AccessKey, Session)


def seal_credentials(entity: AccessKey | Session, master: MasterKey | None) -> bytes:
    """`encode`, with the secret parts sealed (kept plain only for a store with no key)."""
    doc = dataclasses.asdict(entity)
    if master is None:
        return orjson.dumps(doc)
    hidden = {field: doc.pop(field) for field in _HIDDEN if field in doc}
    sealed = master.seal(orjson.dumps(hidden), _binding(entity.access_key_id))
    doc[_SEALED] = base64.b64encode(sealed).decode()
    return orjson.dumps(doc)


def open_credentials(kind: type[Credentials], raw: bytes, master: MasterKey | None) -> Credentials:
    """What `seal_credentials` wrote (or a document written before sealing, as it is)."""
    doc: dict[str, Any] = orjson.loads(raw)
    sealed = doc.pop(_SEALED, None)
    if sealed is not None:
        if master is None:
            raise StorageError("sealed IAM credentials, but this store was opened without a key")
        try:
            opened = master.unseal(base64.b64decode(sealed), _binding(doc["access_key_id"]))
        except SealBroken as error:
            raise StorageError(f"access key {doc['access_key_id']}: {error}") from None
        doc.update(orjson.loads(opened))
    return kind(**doc)


def _binding(access_key_id: str) -> bytes:
    return b"lamina iam credentials\0" + access_key_id.encode()
