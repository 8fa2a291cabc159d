"""Concurrency limits: the account pool, reserved concurrency, and provisioned capacity.

The account's pool (`Settings.account_concurrency`) is split in two. Functions with reserved
concurrency own that many slots, and nobody else may use them; the provisioned concurrency of
functions without a reservation is committed the same way. What is left is the unreserved
pool, which every other invocation shares: `control.concurrency.unreserved_concurrency`, the
number GetAccountSettings reports. The control plane keeps at least 100 of it unreserved (all
of it in a smaller account, which can reserve nothing but 0, as new AWS accounts cannot).

Inside a reservation, provisioned concurrency is carved out. The function's provisioned
environments serve the calls that find one idle; every other call of the function runs on
demand (other qualifiers, and a provisioned qualifier's spillover while all its environments
are busy) within what is left: the reservation less the provisioned environments it holds.
A function whose provisioned concurrency equals its reservation therefore throttles `$LATEST`
with ReservedFunctionConcurrentInvocationLimitExceeded, as AWS does.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from lamina.control.concurrency import unreserved_concurrency
from lamina.errors import TooManyRequests

RESERVED_EXCEEDED = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_EXCEEDED = "ConcurrentInvocationLimitExceeded"
THROTTLE_MESSAGE = "Rate Exceeded."


class Slot(enum.Enum):
    """Which part of the account pool an invocation occupies."""

    RESERVED = "reserved"  # on demand, inside the function's own reservation
    PROVISIONED = "provisioned"  # a provisioned environment, committed ahead of time
    UNRESERVED = "unreserved"  # on demand, in the shared pool


@dataclass(frozen=True)
class Lease:
    function: str
    slot: Slot
    # What a shared governor knows the lease by (`ClusterGovernor`); unused locally.
    token: str = ""


class Governor(Protocol):
    """Admits invocations under the account's and the functions' concurrency limits.

    `ConcurrencyGovernor` counts this node's invocations; `ClusterGovernor`
    (`lamina.invoke.cluster_governor`) counts every node's, through shared leases. Both are
    synchronous: `InvokeService.admit` never awaits.
    """

    # Whether other nodes count in the same store: their admissions do not wait for this
    # node's next step, so a slot must be back before the caller has its answer.
    shared: bool

    def acquire(
        self,
        function: str,
        reserved: int | None,
        committed: int,
        provisioned: bool = False,
        provisioned_held: int = 0,
        timeout_s: float | None = None,
    ) -> Lease:
        """Admit one invocation or raise TooManyRequests (see `ConcurrencyGovernor.acquire`);
        `timeout_s` is the function's timeout, which bounds how long the slot may be held."""
        ...

    def release(self, lease: Lease) -> None:
        """Give the slot back; never raises."""
        ...


class ConcurrencyGovernor:
    """Counts in-flight invocations; refuses those over a limit with AWS's throttle reason."""

    shared = False

    def __init__(self, account_limit: int) -> None:
        self.account_limit = account_limit
        self._in_flight: Counter[str] = Counter()
        # On-demand invocations of functions with a reservation, per function.
        self._reserved_on_demand: Counter[str] = Counter()
        # Kept alongside the per-function counts, so the total is one read, not a sum.
        self._total_in_flight = 0
        self._unreserved_in_flight = 0

    def acquire(
        self,
        function: str,
        reserved: int | None,
        committed: int,
        provisioned: bool = False,
        provisioned_held: int = 0,
        timeout_s: float | None = None,
    ) -> Lease:
        """Admit one invocation of `function` or raise TooManyRequests.

        `reserved` is the function's reserved concurrency (None when it has none),
        `committed` what all functions have reserved or provisioned outside the unreserved
        pool, `provisioned` whether a provisioned environment is ready for this call, and
        `provisioned_held` how many provisioned environments the function holds in all (its
        allocated provisioned concurrency, carved out of its reservation). `timeout_s` is not
        needed here: a slot of this node cannot outlive the node.
        """
        if provisioned:
            # Provisioned environments count against the reservation too; the carve-out
            # keeps on-demand calls from taking their share, so this only guards the total.
            if reserved is not None and self._in_flight[function] >= reserved:
                raise throttle(RESERVED_EXCEEDED)
            slot = Slot.PROVISIONED
        elif reserved is not None:
            on_demand_limit = max(0, reserved - provisioned_held)
            if (
                self._reserved_on_demand[function] >= on_demand_limit
                or self._in_flight[function] >= reserved
            ):
                raise throttle(RESERVED_EXCEEDED)
            slot = Slot.RESERVED
            self._reserved_on_demand[function] += 1
        elif self._unreserved_in_flight >= self.unreserved_limit(committed):
            raise throttle(ACCOUNT_EXCEEDED)
        else:
            slot = Slot.UNRESERVED
            self._unreserved_in_flight += 1
        self._in_flight[function] += 1
        self._total_in_flight += 1
        return Lease(function, slot)

    def release(self, lease: Lease) -> None:
        function = lease.function
        self._in_flight[function] -= 1
        self._total_in_flight -= 1
        if self._in_flight[function] <= 0:
            del self._in_flight[function]
        if lease.slot is Slot.UNRESERVED:
            self._unreserved_in_flight -= 1
        elif lease.slot is Slot.RESERVED:
            self._reserved_on_demand[function] -= 1
            if self._reserved_on_demand[function] <= 0:
                del self._reserved_on_demand[function]

    def unreserved_limit(self, committed: int) -> int:
        return unreserved_concurrency(self.account_limit, committed)

    def in_flight(self, function: str | None = None) -> int:
        if function is None:
            return self._total_in_flight
        return self._in_flight[function]

    @property
    def unreserved_in_flight(self) -> int:
        return self._unreserved_in_flight


def throttle(reason: str) -> TooManyRequests:
    """AWS's 429 for a concurrency limit: `Reason` and the message in the body, and no
    `Retry-After` header (botocore's `retryAfterSeconds`), which AWS does not send for it."""
    return TooManyRequests(THROTTLE_MESSAGE, Reason=reason)
