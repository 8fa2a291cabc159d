"""IAM's entities as the documents both IAM stores keep (orjson bytes), and the keys they are
found by.

Shared by the SQLite and PostgreSQL stores so that the two keep the same bytes. Names are
found case-insensitively, as IAM finds them: `name_key` is what the unique columns hold,
while the entity keeps the spelling it was created with.
"""

from __future__ import annotations

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
