"""Concurrency leases that every node of a cluster shares: soft state that lapses by itself.

A lease is one in-flight invocation, entered in several named pools at once (the account's
unreserved pool, the function's in-flight count, its on-demand share of a reservation). It
expires on its own, so the leases of a node that died stop counting; releasing removes it
sooner. What the pools mean is the governor's business (`lamina.invoke.cluster_governor`);
the store only counts, checks and adds atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from lamina.store.errors import StorageError


class LeaseRefused(Exception):
    """A pool with a limit was full: `pool` names the first one found full."""

    def __init__(self, pool: str) -> None:
        super().__init__(pool)
        self.pool = pool


class LeasesUnavailable(StorageError):
    """The lease store did not answer: nothing was taken, and nothing may be assumed free."""


class ConcurrencyLeases(Protocol):
    """Counted, expiring leases in named pools, shared by every node."""

    def take(self, pools: Sequence[tuple[str, int | None]], ttl_s: float) -> str:
        """Enter one new lease in every pool, each `(name, limit)`, and return its token;
        all or nothing, atomically across nodes. A pool with a limit must hold fewer than
        `limit` live leases, else raise LeaseRefused naming the first full one (in order).
        The lease lapses `ttl_s` seconds from now. Raises LeasesUnavailable."""
        ...

    def give_back(self, pools: Sequence[str], token: str) -> None:
        """Remove lease `token` from `pools`. Never raises: a lease that cannot be removed
        now is removed later or lapses."""
        ...

    def count(self, pool: str) -> int:
        """The live leases in `pool`. Raises LeasesUnavailable."""
        ...
