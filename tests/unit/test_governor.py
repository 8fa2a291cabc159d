"""The concurrency governor: account pool, reserved concurrency, provisioned slots."""

from __future__ import annotations

import pytest

from lamina.errors import TooManyRequests
from lamina.invoke.governor import (
    ACCOUNT_EXCEEDED,
    RESERVED_EXCEEDED,
    ConcurrencyGovernor,
    Slot,
)


def reason(excinfo: pytest.ExceptionInfo[TooManyRequests]) -> str:
    error = excinfo.value
    assert error.status == 429
    assert error.code == "TooManyRequestsException"
    assert error.headers["Retry-After"] == "1"
    return error.fields["Reason"]


def test_reserved_zero_throttles_every_call() -> None:
    governor = ConcurrencyGovernor(1000)
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=0, committed=0)
    assert reason(excinfo) == RESERVED_EXCEEDED
    assert governor.in_flight() == 0


def test_reserved_caps_the_function_and_frees_on_release() -> None:
    governor = ConcurrencyGovernor(1000)
    leases = [governor.acquire("f", reserved=2, committed=2) for _ in range(2)]
    assert {lease.slot for lease in leases} == {Slot.RESERVED}
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=2, committed=2)
    assert reason(excinfo) == RESERVED_EXCEEDED
    # Other functions are unaffected, and a reservation does not use the shared pool.
    governor.acquire("g", reserved=None, committed=2)
    assert governor.unreserved_in_flight == 1
    governor.release(leases[0])
    governor.acquire("f", reserved=2, committed=2)
    assert governor.in_flight("f") == 2


def test_the_unreserved_pool_is_the_account_minus_what_is_committed() -> None:
    governor = ConcurrencyGovernor(3)
    governor.acquire("a", reserved=None, committed=1)
    governor.acquire("b", reserved=None, committed=1)
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("c", reserved=None, committed=1)
    assert reason(excinfo) == ACCOUNT_EXCEEDED
    # The committed slot belongs to a function with a reservation, which may still run.
    governor.acquire("r", reserved=1, committed=1)
    assert governor.in_flight() == 3


def test_provisioned_slots_do_not_draw_on_the_unreserved_pool() -> None:
    governor = ConcurrencyGovernor(1)
    spill = governor.acquire("p", reserved=None, committed=0)
    provisioned = governor.acquire("p", reserved=None, committed=0, provisioned=True)
    assert provisioned.slot is Slot.PROVISIONED
    with pytest.raises(TooManyRequests):
        governor.acquire("p", reserved=None, committed=0)
    governor.release(provisioned)
    assert governor.unreserved_in_flight == 1
    governor.release(spill)
    assert governor.in_flight() == 0
    assert governor.unreserved_in_flight == 0


def test_provisioned_calls_still_count_against_a_reservation() -> None:
    governor = ConcurrencyGovernor(1000)
    governor.acquire("f", reserved=1, committed=1, provisioned=True)
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=1, committed=1, provisioned=True)
    assert reason(excinfo) == RESERVED_EXCEEDED


def test_an_account_smaller_than_its_commitments_throttles_everything_unreserved() -> None:
    governor = ConcurrencyGovernor(2)
    assert governor.unreserved_limit(5) == 0
    with pytest.raises(TooManyRequests):
        governor.acquire("f", reserved=None, committed=5)
