"""The concurrency governor: account pool, reserved concurrency, and provisioned concurrency
carved out of a reservation."""

from __future__ import annotations

import pytest

from lamina.control.concurrency import unreserved_concurrency
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
    assert error.message == "Rate Exceeded."
    # AWS sends no Retry-After (botocore's retryAfterSeconds) for a concurrency throttle.
    assert "Retry-After" not in error.headers
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


# ------------------------------------------------- provisioned inside a reservation


def test_provisioned_concurrency_is_carved_out_of_the_reservation() -> None:
    governor = ConcurrencyGovernor(1000)
    # Reserved 3, of which 1 is held by a provisioned environment: 2 are left on demand.
    on_demand = [
        governor.acquire("f", reserved=3, committed=3, provisioned_held=1) for _ in range(2)
    ]
    assert {lease.slot for lease in on_demand} == {Slot.RESERVED}
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=3, committed=3, provisioned_held=1)
    assert reason(excinfo) == RESERVED_EXCEEDED
    # The provisioned environment still serves its own call.
    provisioned = governor.acquire(
        "f", reserved=3, committed=3, provisioned=True, provisioned_held=1
    )
    assert provisioned.slot is Slot.PROVISIONED
    assert governor.in_flight("f") == 3
    # An idle provisioned environment does not lend its share to on-demand calls.
    governor.release(provisioned)
    with pytest.raises(TooManyRequests):
        governor.acquire("f", reserved=3, committed=3, provisioned_held=1)
    governor.release(on_demand[0])
    assert governor.acquire("f", reserved=3, committed=3, provisioned_held=1).slot is Slot.RESERVED


def test_reserved_equal_to_provisioned_leaves_nothing_on_demand() -> None:
    governor = ConcurrencyGovernor(1000)
    # What $LATEST meets when the whole reservation is provisioned.
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=2, committed=2, provisioned_held=2)
    assert reason(excinfo) == RESERVED_EXCEEDED
    leases = [
        governor.acquire("f", reserved=2, committed=2, provisioned=True, provisioned_held=2)
        for _ in range(2)
    ]
    assert {lease.slot for lease in leases} == {Slot.PROVISIONED}
    # Spillover above the provisioned environments finds nothing left in the reservation.
    with pytest.raises(TooManyRequests):
        governor.acquire("f", reserved=2, committed=2, provisioned_held=2)
    assert governor.unreserved_in_flight == 0


def test_while_provisioning_on_demand_calls_get_what_is_not_yet_held() -> None:
    governor = ConcurrencyGovernor(1000)
    # Reserved 2, provisioned 2 requested but none held yet: both slots are on demand.
    leases = [governor.acquire("f", reserved=2, committed=2, provisioned_held=0) for _ in range(2)]
    with pytest.raises(TooManyRequests):
        governor.acquire("f", reserved=2, committed=2, provisioned_held=0)
    # The environments come up while those run: the total still stays within the reservation.
    with pytest.raises(TooManyRequests):
        governor.acquire("f", reserved=2, committed=2, provisioned=True, provisioned_held=2)
    for lease in leases:
        governor.release(lease)
    assert governor.in_flight() == 0


def test_provisioned_without_a_reservation_spills_into_the_unreserved_pool() -> None:
    governor = ConcurrencyGovernor(12)
    # 10 committed (its own provisioned concurrency among them): 2 unreserved slots.
    provisioned = governor.acquire("p", reserved=None, committed=10, provisioned=True)
    spill = [governor.acquire("p", reserved=None, committed=10) for _ in range(2)]
    assert {lease.slot for lease in spill} == {Slot.UNRESERVED}
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("p", reserved=None, committed=10)
    assert reason(excinfo) == ACCOUNT_EXCEEDED
    assert governor.unreserved_in_flight == 2
    for lease in (provisioned, *spill):
        governor.release(lease)
    assert (governor.in_flight(), governor.unreserved_in_flight) == (0, 0)


def test_the_unreserved_pool_is_the_one_get_account_settings_reports() -> None:
    governor = ConcurrencyGovernor(400)
    for committed in (0, 150, 400, 500):
        assert governor.unreserved_limit(committed) == unreserved_concurrency(400, committed)
