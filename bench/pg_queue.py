"""Async queue benchmark: the PostgreSQL queue against the SQLite queue, store to store.

Accepts/s: events made durable per second, (a) one event per commit from one client, (b)
through `QueueWriter`'s group commit with many events in the air (the server's path), and
(c) one event per commit from 4 clients at once (4 nodes accepting). Claims/s: events leased
and then settled (complete: deleted) per second, claiming 10 at a time and settling the
batch in one commit, by 1 and by 4 claimers (each its own store, as separate nodes are).

Run with `.venv/bin/python -m bench.pg_queue` (LAMINA_BENCH_PG sets the server, default
postgresql://postgres@127.0.0.1/test; BENCH_QUEUE_EVENTS the events per run, default
10,000; BENCH_REPEATS the runs per backend, default 3, whose median (min-max) it prints).
Each backend starts from an empty store every run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lamina.invoke.asynchronous.writer import QueueWriter
from lamina.store.protocols import AsyncEvent, AsyncQueue

URL = os.environ.get("LAMINA_BENCH_PG", "postgresql://postgres@127.0.0.1/test")
EVENTS = int(os.environ.get("BENCH_QUEUE_EVENTS", "10000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
PAYLOAD = b'{"order": 12345, "items": ["a", "b", "c"], "note": "' + b"x" * 200 + b'"}'
BATCH = 10
CLIENTS = 4

Opener = Callable[[], AsyncQueue]


@contextmanager
def sqlite_backend() -> Iterator[Opener]:
    from lamina.store.sqlite import open_stores

    with tempfile.TemporaryDirectory() as root:
        yield lambda: open_stores(Path(root) / "data").queue


@contextmanager
def postgres_backend() -> Iterator[Opener]:
    from lamina.store.postgres import pg_stores
    from lamina.store.postgres.database import PgDatabase

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    databases: list[PgDatabase] = []

    with tempfile.TemporaryDirectory() as root:

        def open_queue() -> AsyncQueue:
            # Each opener call is a node of its own: its own connection pool.
            database = PgDatabase(URL, schema=schema)
            databases.append(database)
            return pg_stores(database, Path(root) / f"node{len(databases)}").queue

        try:
            yield open_queue
        finally:
            databases[0].execute(f"DROP SCHEMA {schema} CASCADE", stamp=None)
            for database in databases:
                database.close()


def events(prefix: str, count: int) -> list[AsyncEvent]:
    now = time.time()
    return [
        AsyncEvent(f"{prefix}-{n}", "bench", None, PAYLOAD, now, now - count + n)
        for n in range(count)
    ]


def in_threads(count: int, work: Callable[[int], None]) -> float:
    """Seconds for `count` threads running `work(index)` from a common start."""
    start = threading.Barrier(count + 1)

    def run(index: int) -> None:
        start.wait()
        work(index)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def accept_one_by_one(open_queue: Opener, count: int) -> float:
    queue = open_queue()
    batch = events("single", count)
    began = time.perf_counter()
    for item in batch:
        queue.enqueue([item])
    return count / (time.perf_counter() - began)


def accept_group_commit(open_queue: Opener, count: int) -> float:
    queue = open_queue()
    batch = events("group", count)

    async def scenario() -> float:
        writer = QueueWriter(queue)
        try:
            began = time.perf_counter()
            await asyncio.gather(*(writer.submit(partial(queue.enqueue, [e])) for e in batch))
            return time.perf_counter() - began
        finally:
            writer.close()

    return count / asyncio.run(scenario())


def accept_concurrently(open_queue: Opener, count: int) -> float:
    queues = [open_queue() for _ in range(CLIENTS)]
    share = count // CLIENTS
    batches = [events(f"client{n}", share) for n in range(CLIENTS)]

    def work(index: int) -> None:
        for item in batches[index]:
            queues[index].enqueue([item])

    return share * CLIENTS / in_threads(CLIENTS, work)


def drain(open_queue: Opener, claimers: int) -> float:
    """Claims/s (each claim settled by a delete) until the queue is empty."""
    queues = [open_queue() for _ in range(claimers)]
    done = [0] * claimers

    def work(index: int) -> None:
        queue, owner = queues[index], f"claimer-{index}"
        while batch := queue.claim(owner, time.time(), BATCH, 300):
            with queue.transaction():
                for item in batch:
                    queue.complete(item.event_id, owner)
            done[index] += len(batch)

    seconds = in_threads(claimers, work)
    return sum(done) / seconds


def fill(open_queue: Opener, prefix: str, count: int) -> None:
    queue = open_queue()
    batch = events(prefix, count)
    for start in range(0, count, 1000):
        queue.enqueue(batch[start : start + 1000])


def measure(backend: Callable[[], AbstractContextManager[Opener]]) -> dict[str, float]:
    figures: dict[str, float] = {}
    with backend() as open_queue:
        single = max(2000, EVENTS // 10)
        figures["accept, 1 client, 1 event/commit"] = accept_one_by_one(open_queue, single)
        figures["accept, group commit (QueueWriter)"] = accept_group_commit(open_queue, EVENTS)
        figures[f"accept, {CLIENTS} clients, 1 event/commit"] = accept_concurrently(
            open_queue, single
        )
        drain(open_queue, 1)  # empty it before the claim runs
        fill(open_queue, "claim1", EVENTS)
        figures[f"claim+complete, 1 claimer ({BATCH}/claim)"] = drain(open_queue, 1)
        fill(open_queue, "claim4", EVENTS)
        figures[f"claim+complete, {CLIENTS} claimers ({BATCH}/claim)"] = drain(open_queue, CLIENTS)
    return figures


def main() -> None:
    runs: dict[str, list[dict[str, float]]] = {"SQLite": [], "PostgreSQL": []}
    for _ in range(REPEATS):  # interleaved, so that a busy moment of the machine hits both
        runs["SQLite"].append(measure(sqlite_backend))
        runs["PostgreSQL"].append(measure(postgres_backend))
    print(
        f"Async queue, store to store: {EVENTS:,} events per run, payload {len(PAYLOAD)} B, "
        f"median (min-max) of {REPEATS}"
    )
    rows = list(runs["SQLite"][0])
    width = max(len(row) for row in rows)
    print(f"{'events/s':<{width}}  {'SQLite':>22}  {'PostgreSQL':>22}")
    for row in rows:
        cells = [summary([run[row] for run in runs[name]]) for name in ("SQLite", "PostgreSQL")]
        print(f"{row:<{width}}  {cells[0]:>22}  {cells[1]:>22}")


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


if __name__ == "__main__":
    main()
