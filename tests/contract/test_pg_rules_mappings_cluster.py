"""Rules and event source mappings in PostgreSQL shared by several nodes: a rule change moves
every node's stamp at once, a schedule tick is claimed once among nodes, and a poller's
checkpoint racing its mapping's delete never outlives the mapping."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.model.mappings import ENABLED, KINESIS, USER_ACTION, EventSourceMapping, ShardCheckpoint
from lamina.model.rules import Rule
from tests.support.backends import Postgres

UUID = "00000001-0000-4000-8000-000000000000"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Postgres]:
    instance = Postgres(tmp_path)
    yield instance
    instance.close()


def mapping() -> EventSourceMapping:
    return EventSourceMapping(
        uuid=UUID,
        kind=KINESIS,
        function_name="f",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        event_source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
        state=ENABLED,
        state_transition_reason=USER_ACTION,
        enabled=True,
        last_modified=1.0,
        batch_size=100,
        maximum_batching_window=0,
    )


def test_a_rule_change_on_one_node_moves_the_stamp_on_another_at_once(
    backend: Postgres,
) -> None:
    a, b = backend.stores().rules, backend.stores().rules
    stamp = b.change_stamp()
    a.put(Rule("r", event_pattern="{}"))
    assert b.change_stamp() != stamp
    ((listed, _targets),) = b.pattern_rules()
    assert listed.name == "r"


def test_nodes_racing_for_schedule_ticks_fire_each_once(backend: Postgres) -> None:
    backend.stores().rules.put(Rule("r", schedule_expression="rate(1 minute)", next_fire_at=60))
    nodes = [backend.stores() for _ in range(3)]
    won: list[int] = []
    start = threading.Barrier(len(nodes))

    def scheduler(index: int) -> None:
        stores = nodes[index]
        start.wait()
        for tick in range(60, 60 * 31, 60):
            fired = [tick] if stores.rules.claim("r", tick, tick, tick + 60) else []
            won.extend(fired)

    threads = [threading.Thread(target=scheduler, args=(n,)) for n in range(len(nodes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(won) == list(range(60, 60 * 31, 60))


def test_a_checkpoint_written_while_its_mapping_is_deleted_goes_with_it(
    backend: Postgres,
) -> None:
    api, poller = backend.stores().mappings, backend.stores().mappings
    api.put(mapping())
    deleted = threading.Event()

    def delete() -> None:
        api.delete(UUID)
        deleted.set()

    with poller.transaction():
        poller.put_checkpoint(UUID, ShardCheckpoint("shardId-0", "1"))
        deleter = threading.Thread(target=delete)
        deleter.start()
        time.sleep(0.2)
        assert not deleted.is_set()  # the delete waits for the poller's write
    deleter.join(10)
    assert deleted.is_set()
    assert poller.checkpoints(UUID) == [] and api.get(UUID) is None


def test_a_checkpoint_written_after_a_racing_delete_is_not_kept(backend: Postgres) -> None:
    api, poller = backend.stores().mappings, backend.stores().mappings
    api.put(mapping())
    written = threading.Event()

    def checkpoint() -> None:
        poller.put_checkpoint(UUID, ShardCheckpoint("shardId-0", "1"))
        written.set()

    with api.transaction():
        api.delete(UUID)
        writer = threading.Thread(target=checkpoint)
        writer.start()
        time.sleep(0.2)
        assert not written.is_set()  # the write waits for the delete...
    writer.join(10)
    assert written.is_set()  # ...then finds no mapping and writes nothing
    assert poller.checkpoints(UUID) == []
