"""Ownership leases: which node does a piece of work that one node at a time may do.

The event source mapping pollers take one per mapping (named by its UUID) before they poll,
so that on several nodes sharing one store each mapping is polled by one node. A lease is
held by an owner (a node) until it expires; the owner renews it by claiming it again, so a
node that dies (even by kill -9) lets its leases lapse and another node takes them over.
(Concurrency leases, which count rather than own, are `store.protocols.leases`.)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol


class OwnershipLeases(Protocol):
    """Time-limited, exclusive claims on names, held by one owner (this node)."""

    @property
    def hold_s(self) -> float:
        """How long after a `claim` call began the leases it returned are certainly held
        (even if no further claim succeeds): the owner must stop the work by then."""
        ...

    def claim(self, names: Collection[str]) -> set[str]:
        """Take the leases on `names` nobody holds, renew this owner's own; return the names
        this owner holds now (the others are held by other owners)."""
        ...

    def release(self, names: Collection[str]) -> None:
        """Give up this owner's leases on `names` at once (others may take them now)."""
        ...

    def close(self) -> None: ...


class LocalOwnership:
    """One node alone (the SQLite store): every lease is this node's, at once, for ever."""

    hold_s = float("inf")

    def claim(self, names: Collection[str]) -> set[str]:
        return set(names)

    def release(self, names: Collection[str]) -> None:
        pass

    def close(self) -> None:
        pass
