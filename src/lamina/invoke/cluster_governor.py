"""The concurrency limits across every node of a cluster, through shared leases.

`ClusterGovernor` keeps `ConcurrencyGovernor`'s accounting (see `lamina.invoke.governor`)
but counts in a `ConcurrencyLeases` store that every node shares (Redis, under
`lamina serve --redis`). One admission is one atomic `take` over the pools it occupies:

- every lease: `all` (in flight in the account) and `function:<name>`;
- on demand without a reservation: `unreserved`, limited to the unreserved pool;
- on demand inside a reservation: `reserved:<name>`, limited to what provisioning leaves of
  the reservation, and `function:<name>`, limited to the reservation;
- on a provisioned environment: `function:<name>`, limited to the reservation if any.

A lease lapses at the function's timeout plus LEASE_GRACE_S, so the slots of a node that
died come back by themselves. When the store does not answer, the call is refused with
AWS's throttle (429): admitting without counting could exceed every limit at once.
"""

from __future__ import annotations

import logging

from lamina.control.concurrency import unreserved_concurrency
from lamina.invoke.governor import (
    ACCOUNT_EXCEEDED,
    RESERVED_EXCEEDED,
    Lease,
    Slot,
    throttle,
)
from lamina.store.protocols.leases import ConcurrencyLeases, LeaseRefused, LeasesUnavailable

log = logging.getLogger(__name__)

ALL = "all"
UNRESERVED = "unreserved"
# Beyond the function's timeout: a cold start's init (INIT_TIMEOUT_S), the wait for an
# environment, and tearing it down. Only a dead node's leases ever live this long.
LEASE_GRACE_S = 60.0
# For a caller that does not say (the longest timeout AWS allows).
DEFAULT_TIMEOUT_S = 900.0


def function_pool(function: str) -> str:
    return f"function:{function}"


def reserved_pool(function: str) -> str:
    return f"reserved:{function}"


class ClusterGovernor:
    """Admits against leases every node shares; refuses with AWS's throttle reasons."""

    shared = True

    def __init__(
        self, leases: ConcurrencyLeases, account_limit: int, grace_s: float = LEASE_GRACE_S
    ) -> None:
        self.account_limit = account_limit
        self._leases = leases
        self._grace_s = grace_s
        self._reachable = True

    def acquire(
        self,
        function: str,
        reserved: int | None,
        committed: int,
        provisioned: bool = False,
        provisioned_held: int = 0,
        timeout_s: float | None = None,
    ) -> Lease:
        pool = function_pool(function)
        if provisioned:
            slot, reason = Slot.PROVISIONED, RESERVED_EXCEEDED
            pools: tuple[tuple[str, int | None], ...] = ((ALL, None), (pool, reserved))
        elif reserved is not None:
            slot, reason = Slot.RESERVED, RESERVED_EXCEEDED
            on_demand = max(0, reserved - provisioned_held)
            pools = ((ALL, None), (reserved_pool(function), on_demand), (pool, reserved))
        else:
            slot, reason = Slot.UNRESERVED, ACCOUNT_EXCEEDED
            pools = ((ALL, None), (UNRESERVED, self.unreserved_limit(committed)), (pool, None))
        ttl_s = (DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s) + self._grace_s
        try:
            token = self._leases.take(pools, ttl_s)
        except LeaseRefused:
            raise throttle(reason) from None
        except LeasesUnavailable as error:
            if self._reachable:
                log.error("concurrency leases unavailable, refusing invocations: %s", error)
                self._reachable = False
            raise throttle(ACCOUNT_EXCEEDED) from None
        if not self._reachable:
            log.warning("concurrency leases available again")
            self._reachable = True
        return Lease(function, slot, token)

    def release(self, lease: Lease) -> None:
        pools = [ALL, function_pool(lease.function)]
        if lease.slot is Slot.UNRESERVED:
            pools.append(UNRESERVED)
        elif lease.slot is Slot.RESERVED:
            pools.append(reserved_pool(lease.function))
        self._leases.give_back(pools, lease.token)

    def unreserved_limit(self, committed: int) -> int:
        return unreserved_concurrency(self.account_limit, committed)

    def in_flight(self, function: str | None = None) -> int:
        """Invocations in flight on every node (asks the store)."""
        return self._leases.count(ALL if function is None else function_pool(function))

    @property
    def unreserved_in_flight(self) -> int:
        return self._leases.count(UNRESERVED)
