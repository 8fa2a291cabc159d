"""Shared secrets: keys that every node of one store must hold alike.

A download link signed by one node is checked by whichever node the client reaches next, and
a node-to-node call is signed by one node and checked by another, so their keys cannot be
made up per process: the first node to need a key creates it in the store, and every node
(and every later start) reads that same key back.
"""

from __future__ import annotations

import re
from typing import Protocol

SECRET_BYTES = 32
"""The length of a new secret: 256 random bits, the size of an HMAC-SHA256 key."""

_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


def check_name(name: str) -> str:
    """`name` if it can name a secret (it becomes part of a file name), else ValueError."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"secret name {name!r}: lower-case letters, digits and - only")
    return name


class SharedSecrets(Protocol):
    """Named secrets, each created once and the same for every node of one store."""

    def secret(self, name: str) -> bytes:
        """The secret called `name`: created (SECRET_BYTES random bytes) by the first call
        anywhere, then the same bytes forever. Calls racing to create it, from threads,
        processes or nodes, all get the one that was kept. Raises StorageError when the
        store cannot be read or written."""
        ...
