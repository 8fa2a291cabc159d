"""The AsyncQueue contract: every queue implementation passes these (SQLite for now)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from lamina.invoke.queue_writer import QueueWriter
from lamina.store.protocols import AsyncEvent, AsyncQueue
from lamina.store.sqlite import open_stores

NOW = 1_000_000.0


@pytest.fixture(params=["sqlite"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AsyncQueue]:
    yield open_stores(tmp_path / "data").queue


def event(event_id: str, function: str = "f", due: float = NOW) -> AsyncEvent:
    return AsyncEvent(event_id, function, None, b'{"n": 1}', NOW, due)


def test_enqueued_events_are_claimed_once_oldest_due_first(queue: AsyncQueue) -> None:
    queue.enqueue([event("b", due=NOW - 1), event("a", due=NOW - 2), event("later", due=NOW + 60)])
    claimed = queue.claim("owner-1", NOW, 10, 30)
    assert [e.event_id for e in claimed] == ["a", "b"]
    assert claimed[0].payload == b'{"n": 1}' and claimed[0].state == "in_flight"
    assert queue.claim("owner-2", NOW, 10, 30) == []
    assert [e.event_id for e in queue.claim("owner-2", NOW + 61, 10, 30)] == ["later"]


def test_claim_respects_the_limit(queue: AsyncQueue) -> None:
    queue.enqueue([event(str(n)) for n in range(5)])
    assert len(queue.claim("o", NOW, 2, 30)) == 2
    assert len(queue.claim("o", NOW, 10, 30)) == 3


def test_complete_forgets_and_only_the_lease_holder_may_settle(queue: AsyncQueue) -> None:
    queue.enqueue([event("x")])
    queue.claim("holder", NOW, 1, 30)
    queue.complete("x", "someone-else")
    assert queue.counts("f")["f"]["in_flight"] == 1
    queue.complete("x", "holder")
    assert queue.counts("f") == {}


def test_retry_keeps_the_event_with_its_attempts_and_error(queue: AsyncQueue) -> None:
    queue.enqueue([event("x")])
    queue.claim("o", NOW, 1, 30)
    queue.retry("x", "o", NOW + 60, attempts=1, requeues=0, last_error="ValueError: boom")
    assert queue.counts("f")["f"]["retrying"] == 1
    assert queue.claim("o", NOW + 59, 1, 30) == []
    (again,) = queue.claim("o", NOW + 60, 1, 30)
    assert (again.attempts, again.requeues, again.last_error) == (1, 0, "ValueError: boom")


def test_deliveries_survive_a_retry(queue: AsyncQueue) -> None:
    queue.enqueue([event("x")])
    queue.claim("o", NOW, 1, 30)
    queue.retry("x", "o", NOW, 0, 1, "queue unreachable", deliveries=b"[1]")
    (again,) = queue.claim("o", NOW, 1, 30)
    assert again.deliveries == b"[1]"


def test_failed_events_stay_visible_and_are_never_claimed(queue: AsyncQueue) -> None:
    queue.enqueue([event("x"), event("y", function="g")])
    queue.claim("o", NOW, 2, 30)
    queue.fail("x", "o", "RetriesExhausted: boom")
    assert queue.claim("o", NOW + 3600, 10, 30) == []
    counts = queue.counts()
    assert counts["f"] == {"queued": 0, "retrying": 0, "in_flight": 0, "failed": 1}
    assert counts["g"]["in_flight"] == 1
    (failed,) = queue.events("f")
    assert (failed.state, failed.last_error) == ("failed", "RetriesExhausted: boom")


def test_expired_leases_come_back_and_renewed_ones_do_not(queue: AsyncQueue) -> None:
    queue.enqueue([event("crashed"), event("alive")])
    queue.claim("dead", NOW, 1, 30)
    queue.claim("live", NOW, 1, 30)
    assert queue.renew("live", NOW + 100) == 1
    assert queue.recover(NOW + 31) == 1
    (back,) = queue.claim("new", NOW + 31, 10, 30)
    assert back.event_id == "crashed"


def test_release_hands_back_everything_a_holder_has(queue: AsyncQueue) -> None:
    queue.enqueue([event("a"), event("b")])
    queue.claim("stopping", NOW, 2, 30)
    assert queue.release("stopping") == 2
    assert len(queue.claim("next", NOW, 10, 30)) == 2


def test_enqueue_inside_a_transaction_rolls_back_with_it(queue: AsyncQueue) -> None:
    with pytest.raises(RuntimeError), queue.transaction():
        queue.enqueue([event("x")])
        raise RuntimeError("abort")
    assert queue.counts() == {}


def test_events_survive_reopening_the_store(tmp_path: Path) -> None:
    open_stores(tmp_path / "data").queue.enqueue([event("kept")])
    (kept,) = open_stores(tmp_path / "data").queue.claim("o", NOW, 5, 30)
    assert kept.event_id == "kept"


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
    assert isinstance(results[200], sqlite3.IntegrityError)
    assert queue.counts()["f"]["queued"] == 200


def test_queue_traffic_leaves_function_caches_alone(tmp_path: Path) -> None:
    # Function configuration caches re-read when the change stamp moves; events come and go
    # all the time and change no function.
    stores = open_stores(tmp_path / "data")
    before = stores.functions.change_stamp()
    stores.queue.enqueue([event("a")])
    (claimed,) = stores.queue.claim("o", NOW, 10, 30)
    stores.queue.retry(claimed.event_id, "o", NOW, 1, 0, "boom")
    (claimed,) = stores.queue.claim("o", NOW, 10, 30)
    with stores.queue.transaction():
        stores.queue.complete(claimed.event_id, "o")
    assert stores.functions.change_stamp() == before
