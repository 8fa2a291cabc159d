"""The PostgreSQL async queue shared by several nodes: leases exclusive across nodes, a claimer
that skips (never waits for) rows another node is taking, a lapsed lease re-claimed by
another node, backoff by `run_at`, delete on ack."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from lamina.store.protocols import AsyncEvent, AsyncQueue
from tests.support.backends import Postgres

NOW = 1_000_000.0
T = TypeVar("T")


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Postgres]:
    instance = Postgres(tmp_path)
    yield instance
    instance.close()


def node(backend: Postgres) -> AsyncQueue:
    """The queue as one node sees it: a connection pool of its own on the shared schema."""
    return backend.stores().queue


def event(event_id: str, due: float = NOW) -> AsyncEvent:
    return AsyncEvent(event_id, "f", None, b"{}", NOW, due)


def without_waiting(call: Callable[[], T], seconds: float = 5.0) -> T:
    """`call()` from another thread; fails (rather than hangs) if it waits on a lock."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, "it waited for another node's transaction"
    return result[0]


def rows(backend: Postgres) -> int:
    return int(backend.database().query_one("SELECT count(*) FROM async_events"))


def test_leases_are_exclusive_across_nodes(backend: Postgres) -> None:
    nodes = [node(backend) for _ in range(3)]
    nodes[0].enqueue([event(f"e{n}", due=NOW - n) for n in range(600)])
    claimed: list[list[str]] = []
    start = threading.Barrier(6)

    def claimer(queue: AsyncQueue, owner: str) -> None:
        start.wait()
        mine: list[str] = []
        while batch := queue.claim(owner, NOW, 9, 30):
            mine += [item.event_id for item in batch]
        claimed.append(mine)

    threads = [
        threading.Thread(target=claimer, args=(queue, f"n{i}-t{t}"))
        for i, queue in enumerate(nodes)
        for t in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [event_id for mine in claimed for event_id in mine]
    assert len(claimed) == 6
    assert sorted(everything) == sorted(f"e{n}" for n in range(600))
    assert sum(1 for mine in claimed if mine) > 1  # the work was shared, not serialised


def test_a_claimer_skips_rows_another_node_is_taking(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    a.enqueue([event("first", due=NOW - 2), event("second", due=NOW - 1)])
    with pytest.raises(RuntimeError), a.transaction():
        (taken,) = a.claim("a", NOW, 1, 30)
        assert taken.event_id == "first"
        # a's transaction is still open: b does not wait for it, it takes the next one.
        claimed = without_waiting(lambda: b.claim("b", NOW, 10, 30))
        assert [item.event_id for item in claimed] == ["second"]
        raise RuntimeError("a crashes before its claim commits")
    # a's claim rolled back: the event is due again, for anyone.
    assert [item.event_id for item in b.claim("b", NOW, 10, 30)] == ["first"]


def test_a_lapsed_lease_is_reclaimed_by_another_node(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    a.enqueue([event("x"), event("y")])
    assert len(a.claim("a", NOW, 2, 30)) == 2
    assert a.renew("a", NOW + 20) == 2  # a renews while it lives...
    assert b.recover(NOW + 19) == 0
    assert b.claim("b", NOW + 19, 10, 30) == []
    assert b.recover(NOW + 21) == 2  # ...then dies: its leases lapse
    assert sorted(item.event_id for item in b.claim("b", NOW + 21, 10, 30)) == ["x", "y"]
    # a comes back late: its settlements count for nothing, b's do.
    a.complete("x", "a")
    a.fail("y", "a", "too late")
    assert a.renew("a", NOW + 100) == 0
    assert b.counts("f")["f"]["in_flight"] == 2
    b.complete("x", "b")
    b.complete("y", "b")
    assert b.counts() == {}


def test_backoff_is_run_at_on_every_node(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    a.enqueue([event("x")])
    a.claim("a", NOW, 1, 30)
    a.retry("x", "a", NOW + 60, attempts=1, requeues=0, last_error="boom")
    assert b.claim("b", NOW + 59, 10, 30) == []
    (again,) = b.claim("b", NOW + 60, 10, 30)
    assert (again.event_id, again.attempts, again.last_error) == ("x", 1, "boom")
    assert backend.database().query_one("SELECT run_at FROM async_events") == NOW + 60


def test_an_acknowledged_event_is_deleted(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    a.enqueue([event("done"), event("failed")])
    a.claim("a", NOW, 2, 30)
    a.complete("done", "a")
    a.fail("failed", "a", "boom")
    assert rows(backend) == 1  # the failed one stays, to be seen
    assert [item.state for item in b.events("f")] == ["failed"]


def test_a_released_node_hands_its_events_to_the_others_at_once(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    a.enqueue([event("x"), event("y")])
    a.claim("stopping", NOW, 2, 300)
    assert b.claim("b", NOW, 10, 30) == []
    assert a.release("stopping") == 2
    assert len(b.claim("b", NOW, 10, 30)) == 2


def test_recovery_skips_an_event_its_holder_is_settling(backend: Postgres) -> None:
    a, b = node(backend), node(backend)
    a.enqueue([event("x"), event("y")])
    a.claim("a", NOW, 2, 30)
    with a.transaction():
        a.complete("x", "a")  # late, but a settles it: the row is a's until a commits
        assert without_waiting(lambda: b.recover(NOW + 31)) == 1  # y; x is skipped
    assert [item.event_id for item in b.claim("b", NOW + 31, 10, 30)] == ["y"]
    assert rows(backend) == 1
