"""Several nodes on one Redis: `ClusterGovernor`s that each have their own client share one
set of limits, never admit past them, and get a dead node's slots back when its leases lapse.

Nothing here stops the machine's Redis: an unreachable one is a port where nothing listens.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from lamina.errors import TooManyRequests
from lamina.invoke.cluster_governor import ClusterGovernor
from lamina.invoke.governor import ACCOUNT_EXCEEDED, RESERVED_EXCEEDED, Lease
from lamina.store.redis import RedisLeases, open_redis_leases
from tests.support.redis import REDIS_URL, dead_url, delete_prefix, nodes, unique_prefix
from tests.support.waiting import wait_until


def test_two_nodes_racing_for_one_reservation_admit_exactly_its_size() -> None:
    threads = 16
    with nodes(2) as (a, b):
        governors = [ClusterGovernor(a, 1000), ClusterGovernor(b, 1000)]
        barrier = threading.Barrier(threads)

        def attempt(i: int) -> str:
            barrier.wait()
            try:
                governors[i % 2].acquire("f", reserved=3, committed=3)
            except TooManyRequests as error:
                return str(error.fields["Reason"])
            return "admitted"

        with ThreadPoolExecutor(threads) as pool:
            outcomes = list(pool.map(attempt, range(threads)))
        assert outcomes.count("admitted") == 3
        assert outcomes.count(RESERVED_EXCEEDED) == threads - 3
        assert governors[0].in_flight("f") == 3


def test_two_nodes_sharing_the_unreserved_pool_never_over_admit() -> None:
    limit, threads, rounds = 4, 12, 150
    with nodes(2) as (a, b):
        governors = [ClusterGovernor(a, limit), ClusterGovernor(b, limit)]
        lock = threading.Lock()
        running = peak = admitted = refused = 0

        def work(i: int) -> None:
            nonlocal running, peak, admitted, refused
            governor = governors[i % 2]
            for n in range(rounds):
                try:
                    lease = governor.acquire(f"fn{n % 3}", reserved=None, committed=0)
                except TooManyRequests as error:
                    assert error.fields["Reason"] == ACCOUNT_EXCEEDED
                    with lock:
                        refused += 1
                    continue
                # Counted between acquire and release, so `running` never exceeds what
                # the leases allow at that moment.
                with lock:
                    running += 1
                    admitted += 1
                    peak = max(peak, running)
                time.sleep(0.0005)  # hold the lease, so that admissions overlap
                with lock:
                    running -= 1
                governor.release(lease)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
        assert peak <= limit
        assert admitted + refused == threads * rounds
        assert admitted > 0 and refused > 0  # the pool was contended
        assert (governors[0].in_flight(), governors[1].unreserved_in_flight) == (0, 0)


def test_a_dead_nodes_leases_lapse() -> None:
    ttl_s = 1.0
    with nodes(2) as (a, b):
        dead = ClusterGovernor(a, 1000, grace_s=0)
        alive = ClusterGovernor(b, 1000, grace_s=0)
        dead.acquire("f", reserved=1, committed=1, timeout_s=ttl_s)
        taken_at = time.monotonic()
        a.close()  # the node is gone and never releases

        def admitted() -> Lease | None:
            try:
                return alive.acquire("f", reserved=1, committed=1, timeout_s=60)
            except TooManyRequests as error:
                assert error.fields["Reason"] == RESERVED_EXCEEDED
                return None

        wait_until(admitted, timeout=30, message="the dead node's lease never lapsed")
        # Not before the lease's expiry: the slot was the dead node's until then.
        assert time.monotonic() - taken_at >= ttl_s * 0.9
        assert alive.in_flight("f") == 1


def test_keys_expire_with_their_longest_lease() -> None:
    prefix = unique_prefix()
    with redis.Redis.from_url(REDIS_URL) as client, nodes(1, prefix) as (leases,):
        governor = ClusterGovernor(leases, 1000, grace_s=0)
        governor.acquire("f", reserved=None, committed=0, timeout_s=0.3)
        generation = f"{prefix}generation".encode()
        assert set(client.keys(f"{prefix}*")) - {generation}
        wait_until(lambda: set(client.keys(f"{prefix}*")) == {generation}, timeout=30)
        # What tells a restarted Redis from a live one lapses too, long after the leases.
        assert 0 < client.pttl(generation) <= 7 * 24 * 3600 * 1000


def test_an_unreachable_redis_throttles_rather_than_over_admit() -> None:
    leases = open_redis_leases(dead_url(), prefix=unique_prefix())
    governor = ClusterGovernor(leases, 1000)
    for reserved in (None, 5):
        with pytest.raises(TooManyRequests) as excinfo:
            governor.acquire("f", reserved=reserved, committed=5)
        error = excinfo.value
        assert (error.status, error.code) == (429, "TooManyRequestsException")
        assert error.fields["Reason"] == ACCOUNT_EXCEEDED
        assert "Retry-After" not in error.headers
    leases.close()


def test_a_release_that_failed_is_retried_before_the_next_admission() -> None:
    prefix = unique_prefix()
    client = redis.Redis.from_url(REDIS_URL, single_connection_client=True)
    leases = RedisLeases(client, prefix)
    governor = ClusterGovernor(leases, 1000)
    try:
        lease = governor.acquire("f", reserved=1, committed=1)
        with redis.Redis.from_url(REDIS_URL) as admin:
            admin.client_kill_filter(_id=client.client_id())
        governor.release(lease)  # fails on the killed connection; kept for later
        assert governor.in_flight("f") == 1
        governor.acquire("g", reserved=None, committed=1)  # retries the release first
        assert governor.in_flight("f") == 0
        governor.acquire("f", reserved=1, committed=1)
    finally:
        client.close()
        delete_prefix(prefix)


# Keeps Redis busy (one script at a time) for `ARGV[1]` milliseconds.
_STALL = """
local function now()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local finish = now() + tonumber(ARGV[1])
while now() < finish do end
return 0
"""


def test_a_take_redis_answered_too_late_leaves_no_slot_taken() -> None:
    """Redis stalls; a take's answer comes after the node stopped waiting, but Redis ran
    it: the call was refused, and the lease it entered must not hold a slot of the
    reservation until its ttl (the function's timeout plus a minute)."""
    prefix = unique_prefix()
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.1)
    leases = RedisLeases(client, prefix)
    governor = ClusterGovernor(leases, 1000)
    try:
        # The node's connection is open and Redis knows its scripts, as in a running node:
        # the take is sent at once and waits in Redis behind the stall.
        governor.release(governor.acquire("g", reserved=None, committed=1))
        with redis.Redis.from_url(REDIS_URL) as admin:
            stall = threading.Thread(target=admin.eval, args=(_STALL, 0, 600))
            stall.start()
            time.sleep(0.05)  # the stall runs: the take below waits behind it
            with pytest.raises(TooManyRequests):
                governor.acquire("f", reserved=1, committed=1)
            stall.join()
        # Redis ran the late take once the stall ended.
        assert wait_until(lambda: governor.in_flight("f") == 1, timeout=5)
        # The next admission, once the node tries Redis again, gives it back first.
        time.sleep(0.6)
        lease = governor.acquire("f", reserved=1, committed=1)
        assert governor.in_flight("f") == 1
        governor.release(lease)
        assert governor.in_flight("f") == 0
    finally:
        client.close()
        delete_prefix(prefix)


def test_leases_lost_with_redis_are_entered_again_before_anyone_admits() -> None:
    """A Redis restarted empty forgets the calls still running. Nothing is admitted until
    every node has entered again the leases it holds, so a reservation still holds."""
    prefix = unique_prefix()
    with nodes(2, prefix) as (first, second):
        running, other = ClusterGovernor(first, 1000), ClusterGovernor(second, 1000)
        # The second node has seen Redis's keys before: it can tell a restart.
        other.release(other.acquire("g", reserved=None, committed=1, timeout_s=30))
        held = running.acquire("f", reserved=1, committed=1, timeout_s=30)
        delete_prefix(prefix)  # what a restart of a Redis that keeps nothing on disk does
        with pytest.raises(TooManyRequests) as during_the_hold:
            other.acquire("f", reserved=1, committed=1, timeout_s=30)
        assert during_the_hold.value.fields["Reason"] == ACCOUNT_EXCEEDED

        def refused_for_the_reservation() -> bool:
            try:
                other.release(other.acquire("f", reserved=1, committed=1, timeout_s=30))
            except TooManyRequests as error:
                return error.fields["Reason"] == RESERVED_EXCEEDED
            raise AssertionError("admitted a second copy of a function reserved for one")

        # Once the hold is over the running call counts again.
        wait_until(refused_for_the_reservation, timeout=10, interval=0.1)
        running.release(held)
        other.release(other.acquire("f", reserved=1, committed=1, timeout_s=30))
