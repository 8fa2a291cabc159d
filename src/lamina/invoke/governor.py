"""Concurrency limits: the account pool, reserved concurrency, and provisioned capacity.

The account's pool (`Settings.account_concurrency`) is split in two. Functions with reserved
concurrency own that many slots, and nobody else may use them; the provisioned concurrency of
functions without a reservation is committed the same way. What is left is the unreserved
pool, which every other invocation shares. The control plane keeps at least 100 unreserved
(`UNRESERVED_CONCURRENCY_MIN`); an account smaller than that cannot reserve anything, as new
AWS accounts cannot.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from lamina.errors import TooManyRequests

RESERVED_EXCEEDED = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_EXCEEDED = "ConcurrentInvocationLimitExceeded"
THROTTLE_MESSAGE = "Rate Exceeded."
RETRY_AFTER_S = "1"


class Slot(enum.Enum):
    """Which part of the account pool an invocation occupies."""

    RESERVED = "reserved"  # the function's own reservation
    PROVISIONED = "provisioned"  # a provisioned environment, committed ahead of time
    UNRESERVED = "unreserved"  # the shared pool


@dataclass(frozen=True)
class Lease:
    function: str
    slot: Slot


class ConcurrencyGovernor:
    """Counts in-flight invocations; refuses those over a limit with AWS's throttle reason."""

    def __init__(self, account_limit: int) -> None:
        self.account_limit = account_limit
        self._in_flight: Counter[str] = Counter()
        # Kept alongside the per-function counts: metrics read it on every invocation.
        self._total_in_flight = 0
        self._unreserved_in_flight = 0

    def acquire(
        self, function: str, reserved: int | None, committed: int, provisioned: bool = False
    ) -> Lease:
        """Admit one invocation of `function` or raise TooManyRequests.

        `reserved` is the function's reserved concurrency (None when it has none),
        `committed` what all functions have reserved or provisioned outside the unreserved
        pool, and `provisioned` whether a provisioned environment is ready for this call.
        """
        if reserved is not None:
            # Provisioned environments count against the reservation too.
            if self._in_flight[function] >= reserved:
                raise throttle(RESERVED_EXCEEDED)
            slot = Slot.RESERVED
        elif provisioned:
            slot = Slot.PROVISIONED
        elif self._unreserved_in_flight >= self.unreserved_limit(committed):
            raise throttle(ACCOUNT_EXCEEDED)
        else:
            slot = Slot.UNRESERVED
            self._unreserved_in_flight += 1
        self._in_flight[function] += 1
        self._total_in_flight += 1
        return Lease(function, slot)

    def release(self, lease: Lease) -> None:
        self._in_flight[lease.function] -= 1
        self._total_in_flight -= 1
        if self._in_flight[lease.function] <= 0:
            del self._in_flight[lease.function]
        if lease.slot is Slot.UNRESERVED:
            self._unreserved_in_flight -= 1

    def unreserved_limit(self, committed: int) -> int:
        return max(0, self.account_limit - committed)

    def in_flight(self, function: str | None = None) -> int:
        if function is None:
            return self._total_in_flight
        return self._in_flight[function]

    @property
    def unreserved_in_flight(self) -> int:
        return self._unreserved_in_flight

    def in_flight_by_function(self) -> dict[str, int]:
        """A copy of the in-flight count of every function that has one (for metrics)."""
        return dict(self._in_flight)


def throttle(reason: str) -> TooManyRequests:
    """AWS's 429: `Reason` in the body, `Retry-After` as a header (botocore reads both)."""
    error = TooManyRequests(THROTTLE_MESSAGE, Reason=reason)
    error.headers["Retry-After"] = RETRY_AFTER_S
    return error
