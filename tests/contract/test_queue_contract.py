"""The AsyncQueue contract: leases, settlement by the lease holder only, backoff, expired
leases, transactions and group commit."""

from __future__ import annotations

import asyncio
import threading
from functools import partial

import pytest

from lamina.invoke.asynchronous.writer import QueueWriter
from lamina.store.protocols import EVENT_STATES, AsyncEvent, AsyncQueue
from tests.support.backends import Backend

NOW = 1_000_000.0


@pytest.fixture
def queue(store_backend: Backend) -> AsyncQueue:
    return store_backend.stores().queue


def event(event_id: str, function: str = "f", due: float = NOW) -> AsyncEvent:
    return AsyncEvent(event_id, function, None, b'{"n": 1}', NOW, due)


def ids(events: list[AsyncEvent]) -> list[str]:
    return [item.event_id for item in events]


def test_enqueued_events_are_claimed_once_oldest_due_first(queue: AsyncQueue) -> None:
    queue.enqueue([event("b", due=NOW - 1), event("a", due=NOW - 2), event("later", due=NOW + 60)])
    claimed = queue.claim("owner-1", NOW, 10, 30)
    assert ids(claimed) == ["a", "b"]
    assert claimed[0].payload == b'{"n": 1}' and claimed[0].state == "in_flight"
    assert queue.claim("owner-2", NOW, 10, 30) == []
    assert ids(queue.claim("owner-2", NOW + 61, 10, 30)) == ["later"]


def test_every_field_survives_the_round_trip(queue: AsyncQueue) -> None:
    sent = AsyncEvent(
        "full",
        "f",
        "prod",
        b"\x00\xffbinary",
        NOW - 5,
        NOW - 1,
        hops=3,
    )
    queue.enqueue([sent])
    (got,) = queue.claim("o", NOW, 1, 30)
    assert (got.qualifier, got.payload, got.enqueued_at, got.next_attempt_at, got.hops) == (
        "prod",
        b"\x00\xffbinary",
        NOW - 5,
        NOW - 1,
        3,
    )
    assert (got.attempts, got.requeues, got.last_error, got.deliveries) == (0, 0, None, None)


def test_claim_respects_the_limit(queue: AsyncQueue) -> None:
    queue.enqueue([event(str(n), due=NOW - 10 + n) for n in range(5)])
    assert ids(queue.claim("o", NOW, 2, 30)) == ["0", "1"]
    assert ids(queue.claim("o", NOW, 10, 30)) == ["2", "3", "4"]


def test_complete_forgets_and_only_the_lease_holder_may_settle(queue: AsyncQueue) -> None:
    queue.enqueue([event("x")])
    queue.claim("holder", NOW, 1, 30)
    queue.complete("x", "someone-else")
    queue.retry("x", "someone-else", NOW, 1, 0, "not mine")
    queue.fail("x", "someone-else", "not mine either")
    assert queue.counts("f")["f"]["in_flight"] == 1
    queue.complete("x", "holder")
    assert queue.counts("f") == {}
    assert queue.events("f") == []


def test_retry_backs_off_until_its_run_at(queue: AsyncQueue) -> None:
    queue.enqueue([event("x")])
    queue.claim("o", NOW, 1, 30)
    queue.retry("x", "o", NOW + 60, attempts=1, requeues=0, last_error="ValueError: boom")
    assert queue.counts("f")["f"]["retrying"] == 1
    (shown,) = queue.events("f")
    assert (shown.state, shown.retrying, shown.next_attempt_at) == ("queued", True, NOW + 60)
    assert queue.claim("o", NOW + 59, 1, 30) == []
    (again,) = queue.claim("o", NOW + 60, 1, 30)
    assert (again.attempts, again.requeues, again.last_error) == (1, 0, "ValueError: boom")


def test_a_backed_off_event_waits_behind_events_due_earlier(queue: AsyncQueue) -> None:
    queue.enqueue([event("first", due=NOW - 5), event("second", due=NOW - 1)])
    queue.claim("o", NOW, 1, 30)
    queue.retry("first", "o", NOW + 10, 0, 1, "Throttled")
    assert ids(queue.claim("o", NOW + 20, 10, 30)) == ["second", "first"]


def test_deliveries_survive_a_retry(queue: AsyncQueue) -> None:
    queue.enqueue([event("x")])
    queue.claim("o", NOW, 1, 30)
    queue.retry("x", "o", NOW, 0, 1, "queue unreachable", deliveries=b"[1]")
    assert queue.counts("f")["f"]["retrying"] == 1
    (again,) = queue.claim("o", NOW, 1, 30)
    assert again.deliveries == b"[1]"


def test_failed_events_stay_visible_and_are_never_claimed(queue: AsyncQueue) -> None:
    queue.enqueue([event("x"), event("y", function="g")])
    queue.claim("o", NOW, 2, 30)
    queue.fail("x", "o", "RetriesExhausted: boom")
    assert queue.claim("o", NOW + 3600, 10, 30) == []
    assert queue.recover(NOW + 3600) == 1  # y's lease expired; x is failed, not leased
    counts = queue.counts()
    assert counts["f"] == {"queued": 0, "retrying": 0, "in_flight": 0, "failed": 1}
    assert counts["g"]["queued"] == 1
    assert set(counts["f"]) == set(EVENT_STATES)
    (failed,) = queue.events("f")
    assert (failed.state, failed.last_error) == ("failed", "RetriesExhausted: boom")


def test_counts_can_be_narrowed_to_one_function(queue: AsyncQueue) -> None:
    queue.enqueue([event("x"), event("y", function="g"), event("z", function="g")])
    assert queue.counts("g") == {"g": {"queued": 2, "retrying": 0, "in_flight": 0, "failed": 0}}
    assert queue.counts("nobody") == {}


def test_events_list_failed_first_then_by_due_time(queue: AsyncQueue) -> None:
    queue.enqueue([event("late", due=NOW + 5), event("soon", due=NOW - 5), event("bad")])
    queue.claim("o", NOW, 10, 30)  # soon and bad are due; late is not
    queue.fail("bad", "o", "boom")
    queue.release("o")
    assert ids(queue.events("f")) == ["bad", "soon", "late"]
    assert ids(queue.events("f", limit=2)) == ["bad", "soon"]


def test_expired_leases_come_back_and_renewed_ones_do_not(queue: AsyncQueue) -> None:
    queue.enqueue([event("crashed", due=NOW - 2), event("alive", due=NOW - 1)])
    queue.claim("dead", NOW, 1, 30)
    queue.claim("live", NOW, 1, 30)
    assert queue.recover(NOW + 29) == 0  # not expired yet
    assert queue.renew("live", NOW + 100) == 1
    assert queue.renew("nobody", NOW + 100) == 0
    assert queue.recover(NOW + 31) == 1
    (back,) = queue.claim("new", NOW + 31, 10, 30)
    assert back.event_id == "crashed"


def test_a_holder_whose_lease_expired_can_no_longer_settle(queue: AsyncQueue) -> None:
    queue.enqueue([event("x")])
    queue.claim("slow", NOW, 1, 30)
    assert queue.recover(NOW + 31) == 1
    queue.claim("new", NOW + 31, 1, 30)
    queue.complete("x", "slow")  # the old holder finishes late: the event is not its own
    assert queue.counts("f")["f"]["in_flight"] == 1
    assert queue.renew("slow", NOW + 100) == 0
    queue.complete("x", "new")
    assert queue.counts("f") == {}


def test_release_hands_back_everything_a_holder_has(queue: AsyncQueue) -> None:
    queue.enqueue([event("a"), event("b"), event("c")])
    queue.claim("stopping", NOW, 2, 30)
    queue.claim("other", NOW, 1, 30)
    assert queue.release("stopping") == 2
    assert len(queue.claim("next", NOW, 10, 30)) == 2
    assert queue.counts("f")["f"]["in_flight"] == 3


def test_enqueue_inside_a_transaction_rolls_back_with_it(queue: AsyncQueue) -> None:
    with pytest.raises(RuntimeError), queue.transaction():
        queue.enqueue([event("x")])
        raise RuntimeError("abort")
    assert queue.counts() == {}


def test_settling_and_enqueueing_in_one_transaction_is_atomic(queue: AsyncQueue) -> None:
    queue.enqueue([event("x")])
    queue.claim("o", NOW, 1, 30)
    with pytest.raises(RuntimeError), queue.transaction():
        queue.complete("x", "o")
        queue.enqueue([event("follow-up")])
        raise RuntimeError("abort")
    assert queue.counts("f")["f"] == {"queued": 0, "retrying": 0, "in_flight": 1, "failed": 0}
    with queue.transaction():
        queue.complete("x", "o")
        queue.enqueue([event("follow-up")])
    assert ids(queue.claim("o", NOW, 10, 30)) == ["follow-up"]


def test_a_duplicate_event_id_fails_its_whole_batch(queue: AsyncQueue) -> None:
    queue.enqueue([event("x")])
    try:
        queue.enqueue([event("new"), event("x")])
    except Exception:  # each backend has its own error for a duplicate key
        pass
    else:
        pytest.fail("an event id already queued was accepted again")
    assert ids(queue.events("f")) == ["x"]


def test_events_survive_reopening_the_store(store_backend: Backend) -> None:
    store_backend.stores().queue.enqueue([event("kept")])
    (kept,) = store_backend.stores().queue.claim("o", NOW, 5, 30)
    assert kept.event_id == "kept"


def test_concurrent_claimers_never_get_the_same_event(store_backend: Backend) -> None:
    store_backend.stores().queue.enqueue([event(f"e{n}", due=NOW - n) for n in range(200)])
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def claimer(owner: str) -> None:
        queue = store_backend.stores().queue  # its own handle, as another process would have
        start.wait()
        mine: list[str] = []
        while batch := queue.claim(owner, NOW, 7, 30):
            mine += ids(batch)
        claimed[owner] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [event_id for mine in claimed.values() for event_id in mine]
    assert len(claimed) == 4
    assert sorted(everything) == sorted(f"e{n}" for n in range(200))


def test_group_commit_writes_many_and_isolates_a_bad_write(queue: AsyncQueue) -> None:
    async def scenario() -> list[object]:
        writer = QueueWriter(queue)
        try:
            writes = [writer.submit(partial(queue.enqueue, [event(f"e{n}")])) for n in range(200)]
            duplicate = writer.submit(lambda: queue.enqueue([event("e7")]))
            return await asyncio.gather(*writes, duplicate, return_exceptions=True)
        finally:
            writer.close()

    results = asyncio.run(scenario())
    assert results[:200] == [None] * 200
    assert isinstance(results[200], Exception)
    assert queue.counts()["f"]["queued"] == 200


def test_queue_traffic_leaves_function_caches_alone(store_backend: Backend) -> None:
    # Function configuration caches re-read when the change stamp moves; events come and go
    # all the time and change no function.
    stores = store_backend.stores()
    before = stores.functions.change_stamp()
    stores.queue.enqueue([event("a")])
    (claimed,) = stores.queue.claim("o", NOW, 10, 30)
    stores.queue.retry(claimed.event_id, "o", NOW, 1, 0, "boom")
    (claimed,) = stores.queue.claim("o", NOW, 10, 30)
    with stores.queue.transaction():
        stores.queue.complete(claimed.event_id, "o")
    assert stores.functions.change_stamp() == before
