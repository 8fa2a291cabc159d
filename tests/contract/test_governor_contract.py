"""One suite for every `Governor`: the local `ConcurrencyGovernor` and `ClusterGovernor` on
Redis leases (a key prefix of its own per test). Both must admit and refuse the same calls
with the same AWS throttle reasons."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import pytest

from lamina.errors import TooManyRequests
from lamina.invoke.cluster_governor import ClusterGovernor
from lamina.invoke.governor import (
    ACCOUNT_EXCEEDED,
    RESERVED_EXCEEDED,
    ConcurrencyGovernor,
    Lease,
    Slot,
)
from tests.support.redis import nodes


class Counting(Protocol):
    """A governor with the counts this suite reads."""

    def acquire(
        self,
        function: str,
        reserved: int | None,
        committed: int,
        provisioned: bool = False,
        provisioned_held: int = 0,
        timeout_s: float | None = None,
    ) -> Lease: ...
    def release(self, lease: Lease) -> None: ...
    def unreserved_limit(self, committed: int) -> int: ...
    def in_flight(self, function: str | None = None) -> int: ...
    @property
    def unreserved_in_flight(self) -> int: ...


Make = Callable[[int], Counting]


@pytest.fixture(params=["local", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Make]:
    """Build a governor for an account limit."""
    if request.param == "local":
        yield ConcurrencyGovernor
        return
    with nodes(1) as (leases,):
        yield lambda limit: ClusterGovernor(leases, limit)


def reason(excinfo: pytest.ExceptionInfo[TooManyRequests]) -> str:
    error = excinfo.value
    assert (error.status, error.code, error.message) == (
        429,
        "TooManyRequestsException",
        "Rate Exceeded.",
    )
    assert "Retry-After" not in error.headers
    return error.fields["Reason"]


def test_reserved_zero_throttles_every_call(make: Make) -> None:
    governor = make(1000)
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=0, committed=0)
    assert reason(excinfo) == RESERVED_EXCEEDED
    assert governor.in_flight() == 0


def test_reserved_caps_the_function_and_frees_on_release(make: Make) -> None:
    governor = make(1000)
    leases = [governor.acquire("f", reserved=2, committed=2, timeout_s=3) for _ in range(2)]
    assert {lease.slot for lease in leases} == {Slot.RESERVED}
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=2, committed=2)
    assert reason(excinfo) == RESERVED_EXCEEDED
    governor.acquire("g", reserved=None, committed=2)
    assert governor.unreserved_in_flight == 1
    governor.release(leases[0])
    governor.acquire("f", reserved=2, committed=2)
    assert (governor.in_flight("f"), governor.in_flight("g"), governor.in_flight()) == (2, 1, 3)


def test_the_unreserved_pool_is_the_account_minus_what_is_committed(make: Make) -> None:
    governor = make(3)
    governor.acquire("a", reserved=None, committed=1)
    governor.acquire("b", reserved=None, committed=1)
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("c", reserved=None, committed=1)
    assert reason(excinfo) == ACCOUNT_EXCEEDED
    governor.acquire("r", reserved=1, committed=1)
    assert governor.in_flight() == 3


def test_provisioned_slots_do_not_draw_on_the_unreserved_pool(make: Make) -> None:
    governor = make(1)
    spill = governor.acquire("p", reserved=None, committed=0)
    provisioned = governor.acquire("p", reserved=None, committed=0, provisioned=True)
    assert provisioned.slot is Slot.PROVISIONED
    with pytest.raises(TooManyRequests):
        governor.acquire("p", reserved=None, committed=0)
    governor.release(provisioned)
    assert governor.unreserved_in_flight == 1
    governor.release(spill)
    assert (governor.in_flight(), governor.unreserved_in_flight) == (0, 0)


def test_provisioned_calls_still_count_against_a_reservation(make: Make) -> None:
    governor = make(1000)
    governor.acquire("f", reserved=1, committed=1, provisioned=True)
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=1, committed=1, provisioned=True)
    assert reason(excinfo) == RESERVED_EXCEEDED


def test_an_account_smaller_than_its_commitments_throttles_everything_unreserved(
    make: Make,
) -> None:
    governor = make(2)
    assert governor.unreserved_limit(5) == 0
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=None, committed=5)
    assert reason(excinfo) == ACCOUNT_EXCEEDED


def test_provisioned_concurrency_is_carved_out_of_the_reservation(make: Make) -> None:
    governor = make(1000)
    on_demand = [
        governor.acquire("f", reserved=3, committed=3, provisioned_held=1) for _ in range(2)
    ]
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=3, committed=3, provisioned_held=1)
    assert reason(excinfo) == RESERVED_EXCEEDED
    provisioned = governor.acquire(
        "f", reserved=3, committed=3, provisioned=True, provisioned_held=1
    )
    assert governor.in_flight("f") == 3
    governor.release(provisioned)
    with pytest.raises(TooManyRequests):
        governor.acquire("f", reserved=3, committed=3, provisioned_held=1)
    governor.release(on_demand[0])
    assert governor.acquire("f", reserved=3, committed=3, provisioned_held=1).slot is Slot.RESERVED


def test_reserved_equal_to_provisioned_leaves_nothing_on_demand(make: Make) -> None:
    governor = make(1000)
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("f", reserved=2, committed=2, provisioned_held=2)
    assert reason(excinfo) == RESERVED_EXCEEDED
    for _ in range(2):
        governor.acquire("f", reserved=2, committed=2, provisioned=True, provisioned_held=2)
    with pytest.raises(TooManyRequests):
        governor.acquire("f", reserved=2, committed=2, provisioned_held=2)
    assert governor.unreserved_in_flight == 0


def test_while_provisioning_the_total_stays_within_the_reservation(make: Make) -> None:
    governor = make(1000)
    leases = [governor.acquire("f", reserved=2, committed=2, provisioned_held=0) for _ in range(2)]
    with pytest.raises(TooManyRequests):
        governor.acquire("f", reserved=2, committed=2, provisioned=True, provisioned_held=2)
    for lease in leases:
        governor.release(lease)
    assert governor.in_flight() == 0


def test_provisioned_without_a_reservation_spills_into_the_unreserved_pool(make: Make) -> None:
    governor = make(12)
    provisioned = governor.acquire("p", reserved=None, committed=10, provisioned=True)
    spill = [governor.acquire("p", reserved=None, committed=10) for _ in range(2)]
    assert {lease.slot for lease in spill} == {Slot.UNRESERVED}
    with pytest.raises(TooManyRequests) as excinfo:
        governor.acquire("p", reserved=None, committed=10)
    assert reason(excinfo) == ACCOUNT_EXCEEDED
    for lease in (provisioned, *spill):
        governor.release(lease)
    assert (governor.in_flight(), governor.unreserved_in_flight) == (0, 0)


def test_a_refusal_takes_nothing(make: Make) -> None:
    governor = make(1)
    held = governor.acquire("a", reserved=None, committed=0)
    for _ in range(3):
        with pytest.raises(TooManyRequests):
            governor.acquire("b", reserved=None, committed=0)
        with pytest.raises(TooManyRequests):
            governor.acquire("r", reserved=1, committed=0, provisioned_held=1)
    assert (governor.in_flight(), governor.in_flight("b"), governor.in_flight("r")) == (1, 0, 0)
    governor.release(held)
    governor.acquire("b", reserved=None, committed=0)
