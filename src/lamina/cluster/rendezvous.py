"""Rendezvous (highest random weight) hashing: every node ranks the workers for a key the same
way without talking to the others, and a worker that leaves moves only its own keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def score(node_id: str, key: str) -> int:
    digest = hashlib.blake2b(f"{node_id}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(key: str, ids: Iterable[str]) -> list[str]:
    """`ids` from the best home for `key` to the worst."""
    return sorted(ids, key=lambda node_id: score(node_id, key), reverse=True)
