"""Concurrency limits: the account pool, reserved concurrency, and the unreserved minimum."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from lamina.errors import TooManyRequests

RESERVED_EXCEEDED = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_EXCEEDED = "ConcurrentInvocationLimitExceeded"


@dataclass(frozen=True)
class Lease:
    function: str
    reserved: bool


class ConcurrencyGovernor:
    """Counts in-flight invocations; refuses those over a limit with AWS's throttle reason."""

    def __init__(self, account_limit: int) -> None:
        self.account_limit = account_limit
        self._in_flight: Counter[str] = Counter()
        self._unreserved_in_flight = 0

    def acquire(self, function: str, reserved: int | None, total_reserved: int) -> Lease:
        if reserved is not None:
            if self._in_flight[function] >= reserved:
                raise _throttle(RESERVED_EXCEEDED)
        elif self._unreserved_in_flight >= self.account_limit - total_reserved:
            raise _throttle(ACCOUNT_EXCEEDED)
        self._in_flight[function] += 1
        if reserved is None:
            self._unreserved_in_flight += 1
        return Lease(function, reserved is not None)

    def release(self, lease: Lease) -> None:
        self._in_flight[lease.function] -= 1
        if self._in_flight[lease.function] <= 0:
            del self._in_flight[lease.function]
        if not lease.reserved:
            self._unreserved_in_flight -= 1

    def in_flight(self, function: str | None = None) -> int:
        if function is None:
            return sum(self._in_flight.values())
        return self._in_flight[function]


def _throttle(reason: str) -> TooManyRequests:
    error = TooManyRequests("Rate Exceeded.", Reason=reason)
    error.headers["Retry-After"] = "1"
    return error
