"""AsyncQueue.redrive: failed events go back to the queue as new (due now, aged from now, no
attempts used, nothing owed), keeping their request id and payload; only failed events move;
and of many redrives racing from several nodes, exactly one moves each event."""

from __future__ import annotations

import threading

import pytest

from lamina.store.protocols import AsyncEvent, AsyncQueue
from tests.support.backends import Backend

NOW = 1_000_000.0
LATER = NOW + 3600


@pytest.fixture
def queue(store_backend: Backend) -> AsyncQueue:
    return store_backend.stores().queue


def failed(queue: AsyncQueue, *event_ids: str, function: str = "f") -> None:
    """Events that went through retries and a pending send, then failed for good."""
    queue.enqueue(
        [
            AsyncEvent(event_id, function, "prod", b'{"n": 1}', NOW, NOW, hops=2)
            for event_id in event_ids
        ]
    )
    for claimed in queue.claim("worker", NOW, len(event_ids), 30):
        queue.retry(claimed.event_id, "worker", NOW, 2, 3, "ValueError: boom", b"[]")
    for claimed in queue.claim("worker", NOW, len(event_ids), 30):
        queue.fail(claimed.event_id, "worker", "RetriesExhausted: ValueError: boom")


def test_a_failed_event_comes_back_as_new_with_its_request_id(queue: AsyncQueue) -> None:
    failed(queue, "req-1", "req-2")
    assert queue.redrive("f", "req-1", LATER) == ["req-1"]
    (claimed,) = queue.claim("worker", LATER, 10, 30)
    assert (claimed.event_id, claimed.function, claimed.qualifier, claimed.payload) == (
        "req-1",
        "f",
        "prod",
        b'{"n": 1}',
    )
    assert (claimed.enqueued_at, claimed.next_attempt_at) == (LATER, LATER)
    assert (claimed.attempts, claimed.requeues, claimed.deliveries, claimed.last_error) == (
        0,
        0,
        None,
        None,
    )
    assert claimed.hops == 2  # the recursion guard still counts the chain it came from
    assert queue.counts("f")["f"]["failed"] == 1


def test_all_of_a_functions_failed_events_and_only_them(queue: AsyncQueue) -> None:
    failed(queue, "a", "b")
    failed(queue, "other", function="g")
    queue.enqueue([AsyncEvent("waiting", "f", None, b"{}", NOW, NOW + 60)])
    assert queue.redrive("f", None, LATER) == ["a", "b"]
    counts = queue.counts()
    assert counts["f"]["queued"] == 3 and counts["f"]["failed"] == 0
    assert counts["g"]["failed"] == 1
    assert queue.redrive("f", None, LATER) == []


def test_events_that_are_not_failed_stay_where_they_are(queue: AsyncQueue) -> None:
    queue.enqueue([AsyncEvent("queued", "f", None, b"{}", NOW, NOW + 60)])
    queue.enqueue([AsyncEvent("running", "f", None, b"{}", NOW, NOW)])
    queue.claim("worker", NOW, 1, 30)
    assert queue.redrive("f", "queued", LATER) == []
    assert queue.redrive("f", "running", LATER) == []
    assert queue.redrive("f", "missing", LATER) == []
    failed(queue, "mine")
    assert queue.redrive("g", "mine", LATER) == []  # another function's id


def test_racing_redrives_move_each_event_once(store_backend: Backend) -> None:
    failed(store_backend.stores().queue, *[f"e{number}" for number in range(20)])
    # Each racer is a node of its own: its own connection pool (or SQLite connection).
    racers = [store_backend.stores().queue for _ in range(4)]
    start = threading.Barrier(len(racers))
    moved: list[list[str]] = [[] for _ in racers]

    def redrive(index: int) -> None:
        start.wait()
        for number in range(20):
            moved[index] += racers[index].redrive("f", f"e{number}", LATER)
        moved[index] += racers[index].redrive("f", None, LATER)

    threads = [threading.Thread(target=redrive, args=(index,)) for index in range(len(racers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = sorted(event_id for ids in moved for event_id in ids)
    assert every == sorted(f"e{number}" for number in range(20))
    assert len(racers[0].claim("worker", LATER, 100, 30)) == 20
