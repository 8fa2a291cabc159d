"""PostgreSQL logs, metrics and audit records shared by several nodes: writes from each add
up, a node's cached ids survive another node deleting what they name, the log bound holds
across nodes, concurrent migrators and messages PostgreSQL's text cannot hold."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.errors import ResourceNotFound
from lamina.store.protocols.audit import AuditQuery
from lamina.store.protocols.logs import LogStore
from lamina.store.protocols.metrics import MetricDelta, UsageDelta
from tests.support.backends import Postgres

GROUP = "/aws/lambda/fn"
FN = '[["FunctionName","f"]]'


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Postgres]:
    instance = Postgres(tmp_path)
    yield instance
    instance.close()


class Everything:
    all_of: tuple[str, ...] = ()
    none_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    exact = True

    def matches(self, message: str) -> bool:
        return True


def every_message(logs: LogStore, group: str = GROUP) -> list[str]:
    found, more = logs.filter_events(
        logs.group(group).id, None, None, None, Everything(), None, 10_000
    )
    assert not more
    return [event.message for event in found]


def consistent(backend: Postgres) -> None:
    """Every event has its stream and group, and every counter is the sum it counts."""
    db = backend.database()
    assert (
        db.query_one(
            "SELECT count(*) FROM log_events e WHERE NOT EXISTS "
            "(SELECT 1 FROM log_streams s WHERE s.id = e.stream_id AND s.group_id = e.group_id)"
        )
        == 0
    )
    assert (
        db.query(
            "SELECT s.id FROM log_streams s LEFT JOIN (SELECT stream_id, "
            "sum(octet_length(message)) AS size, count(*) AS n FROM log_events "
            "GROUP BY stream_id) e ON e.stream_id = s.id "
            "WHERE s.stored_bytes <> coalesce(e.size, 0) OR s.stored_events <> coalesce(e.n, 0)"
        )
        == []
    )
    assert (
        db.query(
            "SELECT g.id FROM log_groups g LEFT JOIN (SELECT group_id, "
            "sum(octet_length(message)) AS size, count(*) AS n FROM log_events "
            "GROUP BY group_id) e ON e.group_id = g.id "
            "WHERE g.stored_bytes <> coalesce(e.size, 0) OR g.stored_events <> coalesce(e.n, 0)"
        )
        == []
    )


def run_together(*work: Callable[[], Any]) -> None:
    start = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(job: Callable[[], Any]) -> None:
        start.wait()
        try:
            job()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    assert errors == []


# ------------------------------------------------------------------------------ logs


def test_nodes_appending_to_one_stream_lose_nothing(backend: Postgres) -> None:
    nodes = [backend.logs() for _ in range(3)]

    def writer(node: int) -> Callable[[], None]:
        def write() -> None:
            for batch in range(30):
                lines = [(batch, f"n{node} b{batch} l{i}") for i in range(20)]
                # One stream shared by all, one of each node's own.
                nodes[node].append([(GROUP, "shared", lines), (GROUP, f"own-{node}", lines)])

        return write

    run_together(*(writer(node) for node in range(3)))
    for logs in nodes:
        assert len(every_message(logs)) == 2 * 3 * 30 * 20
    group = nodes[0].group(GROUP)
    assert group.stored_bytes == sum(len(message) for message in every_message(nodes[1]))
    assert [stream.name for stream in nodes[2].streams(group.id)] == [
        "own-0",
        "own-1",
        "own-2",
        "shared",
    ]
    consistent(backend)


def test_a_group_deleted_by_another_node_is_recreated_by_the_next_line(
    backend: Postgres,
) -> None:
    writer, other = backend.logs(), backend.logs()
    writer.append([(GROUP, "s", [(1, "before")])])  # the writer now caches the ids
    other.delete_group(GROUP)
    writer.append([(GROUP, "s", [(2, "after")])])
    assert every_message(other) == ["after"]
    assert other.group(GROUP).stored_bytes == len("after")
    other.delete_stream(GROUP, "s")
    writer.append([(GROUP, "s", [(3, "again")])])
    assert every_message(other) == ["again"]
    consistent(backend)


def test_appends_racing_deletions_on_other_nodes_leave_no_strays(backend: Postgres) -> None:
    writer, deleter = backend.logs(), backend.logs()

    def write() -> None:
        for batch in range(60):
            writer.append([(GROUP, f"s{batch % 3}", [(batch, f"line {batch}")] * 5)])

    def delete() -> None:
        for round_ in range(60):
            try:
                if round_ % 2:
                    deleter.delete_group(GROUP)
                else:
                    deleter.delete_stream(GROUP, f"s{round_ % 3}")
            except ResourceNotFound:
                pass  # nothing to delete yet

    run_together(write, delete)
    consistent(backend)


def test_the_bound_holds_with_writers_on_several_nodes(backend: Postgres) -> None:
    bound = 256 * 1024
    nodes = [backend.logs(max_bytes=bound) for _ in range(2)]
    line = "x" * 200

    def writer(node: int) -> Callable[[], None]:
        def write() -> None:
            for batch in range(30):
                nodes[node].append([(GROUP, f"s{node}", [(batch, f"{node} {batch} {line}")] * 50)])

        return write

    run_together(writer(0), writer(1))
    kept = every_message(nodes[0])
    assert sum(len(message) for message in kept) <= bound
    # Each node's newest lines are kept (the oldest overall went first), without holes.
    batches = {(int(message.split()[0]), int(message.split()[1])) for message in kept}
    assert (0, 29) in batches or (1, 29) in batches
    for node in range(2):
        mine = sorted(batch for writer, batch in batches if writer == node)
        assert mine == list(range(30 - len(mine), 30))
    assert (0, 0) not in batches and (1, 0) not in batches
    consistent(backend)


def test_messages_postgresql_text_cannot_hold_are_cleaned(backend: Postgres) -> None:
    logs = backend.logs()
    stored = logs.append([(GROUP, "s", [(1, "nul\x00here"), (2, "lone \udc80 surrogate")])])
    assert every_message(logs) == ["nul\ufffdhere", "lone ? surrogate"]
    assert (
        stored
        == logs.group(GROUP).stored_bytes
        == len("nul\ufffdhere".encode()) + len("lone ? surrogate")
    )


def test_stores_opened_at_once_migrate_once(backend: Postgres) -> None:
    opened: list[Any] = []
    run_together(
        *(lambda: opened.append(backend.logs()) for _ in range(3)),
        *(lambda: opened.append(backend.metrics()) for _ in range(3)),
        *(lambda: opened.append(backend.audit()) for _ in range(3)),
    )
    assert len(opened) == 9
    versions = backend.database().query(
        "SELECT component, count(*) FROM schema_migrations "
        "WHERE component IN ('logs', 'metrics', 'audit') GROUP BY 1 ORDER BY 1"
    )
    assert versions == [("audit", 1), ("logs", 1), ("metrics", 1)]


# --------------------------------------------------------------------------- metrics


def test_merges_from_several_nodes_add_up(backend: Postgres) -> None:
    nodes = [backend.metrics() for _ in range(3)]

    def flusher(node: int) -> Callable[[], None]:
        def flush() -> None:
            for _ in range(40):
                nodes[node].merge(
                    [
                        MetricDelta(
                            "Duration", FN, 100, "f", 1, float(node), node, node, {node: 1}
                        ),
                        MetricDelta("Invocations", FN, 100, "f", 1, 1.0, 1.0, 1.0, None),
                    ],
                    [UsageDelta(100, "f", "$LATEST", "x86_64", 128, 1, 100, 50.0, 0.0)],
                )

        return flush

    run_together(*(flusher(node) for node in range(3)))
    (row,) = nodes[0].series("Duration", FN, 100, 100)
    assert (row.samples, row.total, row.minimum, row.maximum) == (120, 120.0, 0.0, 2.0)
    assert row.buckets == {0: 40, 1: 40, 2: 40}
    assert nodes[1].series("Invocations", FN, 100, 100)[0].buckets is None
    (usage,) = nodes[2].usage(0)
    assert (usage.requests, usage.billed_ms, usage.duration_ms) == (120, 12_000, 6_000.0)


# ----------------------------------------------------------------------------- audit


def record(node: int, number: int) -> dict[str, Any]:
    return {
        "Time": f"2024-01-01T00:00:{number % 60:02d}.000Z",
        "RequestId": f"{node}-{number}",
        "Operation": "Invoke",
        "Resource": "fn",
        "Status": 200,
    }


def test_appenders_on_several_nodes_keep_one_order(backend: Postgres) -> None:
    nodes = [backend.audit() for _ in range(3)]
    seen: list[list[str]] = []
    done = threading.Event()

    def appender(node: int) -> Callable[[], None]:
        def append() -> None:
            for number in range(100):
                nodes[node].append([record(node, number)])

        return append

    def reader() -> None:
        while not done.is_set():
            seen.append([item["RequestId"] for item in nodes[0].query(AuditQuery(limit=50))])

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        run_together(*(appender(node) for node in range(3)))
    finally:
        done.set()
        watcher.join(60)
    everything = [item["RequestId"] for item in nodes[1].query(AuditQuery(limit=1000))]
    assert sorted(everything) == sorted(f"{n}-{i}" for n in range(3) for i in range(100))
    for node in range(3):
        own = [rid for rid in everything if rid.startswith(f"{node}-")]
        assert own == [f"{node}-{i}" for i in range(100)]
    # A reader's page is always the tail of the final order: no record appears late.
    for page in seen:
        if page:
            start = everything.index(page[0])
            assert everything[start : start + len(page)] == page


def test_the_audit_bound_holds_across_nodes(backend: Postgres) -> None:
    bound = 8 * 1024
    nodes = [backend.audit(max_bytes=bound) for _ in range(2)]
    for number in range(300):
        nodes[number % 2].append([record(number % 2, number)])
    kept = nodes[0].query(AuditQuery(limit=10_000))
    assert kept[-1]["RequestId"] == "1-299"
    assert 0 < len(kept) < 300
    assert sum(len(str(item)) for item in kept) <= 2 * bound
