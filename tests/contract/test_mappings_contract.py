"""The EventSourceMappingStore contract: mappings round-trip by UUID, page in UUID order under
the three filters, survive a reopen, and take pollers' narrow writes (state compare-and-set,
last result, shard checkpoints) without losing the rest."""

from __future__ import annotations

import threading

import pytest

from lamina.model.mappings import (
    CREATING,
    DISABLED,
    ENABLED,
    KINESIS,
    NO_RECORDS_PROCESSED,
    PROCESSING_OK,
    SQS,
    UPDATING,
    USER_ACTION,
    USER_INITIATED,
    EventSourceMapping,
    ShardCheckpoint,
)
from lamina.store.protocols import EventSourceMappingStore
from tests.support.backends import Backend

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:f"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:q"
STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/s"


@pytest.fixture
def mappings(store_backend: Backend) -> EventSourceMappingStore:
    return store_backend.stores().mappings


def queue_mapping(uuid: str, **changes: object) -> EventSourceMapping:
    fields: dict[str, object] = {
        "uuid": uuid,
        "kind": SQS,
        "function_name": "f",
        "function_arn": FUNCTION,
        "event_source_arn": QUEUE,
        "state": ENABLED,
        "state_transition_reason": USER_INITIATED,
        "enabled": True,
        "last_modified": 1700000000.25,
        "batch_size": 10,
        "maximum_batching_window": 0,
        **changes,
    }
    return EventSourceMapping(**fields)  # type: ignore[arg-type]


def stream_mapping(uuid: str, **changes: object) -> EventSourceMapping:
    fields: dict[str, object] = {
        "kind": KINESIS,
        "event_source_arn": STREAM,
        "state_transition_reason": USER_ACTION,
        "batch_size": 100,
        "last_processing_result": NO_RECORDS_PROCESSED,
        "starting_position": "AT_TIMESTAMP",
        "starting_position_timestamp": 1690000000.5,
        "parallelization_factor": 2,
        "maximum_record_age": -1,
        "maximum_retry_attempts": 5,
        "bisect_batch_on_function_error": True,
        "tumbling_window": 30,
        "on_failure": "arn:aws:sqs:us-east-1:123456789012:dlq",
    }
    return queue_mapping(uuid, **{**fields, **changes})


def uuid(n: int) -> str:
    return f"{n:08d}-0000-4000-8000-000000000000"


def test_a_mapping_round_trips_every_field(mappings: EventSourceMappingStore) -> None:
    sent = stream_mapping(
        uuid(1),
        function_response_types=("ReportBatchItemFailures",),
        filters=('{"data": {"k": ["v"]}}',),
        maximum_concurrency=None,
        source_access=(("BASIC_AUTH", "arn:aws:secretsmanager:us-east-1:1:secret:s"),),
        queues=("q1",),
        extras={"KMSKeyArn": "arn:aws:kms:us-east-1:1:key/k", "MetricsConfig": {"Metrics": []}},
        tags={"team": "core"},
    )
    mappings.put(sent)
    assert mappings.get(uuid(1)) == sent
    assert mappings.get(uuid(2)) is None


def test_put_replaces_and_delete_removes(mappings: EventSourceMappingStore) -> None:
    mappings.put(queue_mapping(uuid(1)))
    mappings.put(queue_mapping(uuid(1), batch_size=5, state=UPDATING, enabled=False))
    stored = mappings.get(uuid(1))
    assert stored is not None
    assert (stored.batch_size, stored.state, stored.enabled) == (5, UPDATING, False)
    mappings.delete(uuid(1))
    assert mappings.get(uuid(1)) is None
    mappings.delete(uuid(1))  # deleting again is harmless


def test_mappings_page_in_uuid_order_under_filters(mappings: EventSourceMappingStore) -> None:
    other_function = "arn:aws:lambda:us-east-1:123456789012:function:g"
    mappings.put(queue_mapping(uuid(3)))
    mappings.put(queue_mapping(uuid(1), function_arn=f"{FUNCTION}:live"))
    mappings.put(stream_mapping(uuid(2)))
    mappings.put(queue_mapping(uuid(4), function_name="g", function_arn=other_function))
    assert [m.uuid for m in mappings.page(None, 10)] == [uuid(1), uuid(2), uuid(3), uuid(4)]
    assert [m.uuid for m in mappings.page(None, 2)] == [uuid(1), uuid(2)]
    assert [m.uuid for m in mappings.page(uuid(2), 10)] == [uuid(3), uuid(4)]
    assert [m.uuid for m in mappings.page(None, 10, function_name="f")] == [
        uuid(1),
        uuid(2),
        uuid(3),
    ]
    assert [m.uuid for m in mappings.page(None, 10, function_arn=FUNCTION)] == [uuid(2), uuid(3)]
    assert [m.uuid for m in mappings.page(None, 10, event_source_arn=QUEUE)] == [
        uuid(1),
        uuid(3),
        uuid(4),
    ]
    both = mappings.page(None, 10, event_source_arn=QUEUE, function_arn=FUNCTION)
    assert [m.uuid for m in both] == [uuid(3)]
    assert mappings.page(None, 10, function_name="nobody") == []


def test_mappings_survive_a_reopen(store_backend: Backend) -> None:
    store_backend.stores().mappings.put(stream_mapping(uuid(1)))
    reopened = store_backend.stores().mappings
    assert reopened.get(uuid(1)) == stream_mapping(uuid(1))


def test_in_states_finds_the_transitional_ones(mappings: EventSourceMappingStore) -> None:
    mappings.put(queue_mapping(uuid(1), state=CREATING))
    mappings.put(queue_mapping(uuid(2)))
    mappings.put(queue_mapping(uuid(3), state=UPDATING))
    assert [m.uuid for m in mappings.in_states({CREATING, UPDATING})] == [uuid(1), uuid(3)]
    assert mappings.in_states(()) == []


def test_set_state_is_a_compare_and_set(mappings: EventSourceMappingStore) -> None:
    mappings.put(queue_mapping(uuid(1), state=CREATING))
    assert not mappings.set_state(uuid(1), ENABLED, USER_INITIATED, expected={UPDATING})
    assert mappings.set_state(uuid(1), ENABLED, USER_INITIATED, expected={CREATING})
    assert not mappings.set_state(uuid(1), DISABLED, "PROBLEM", expected={CREATING})
    assert mappings.set_state(uuid(1), DISABLED, "PROBLEM: gone")
    stored = mappings.get(uuid(1))
    assert stored is not None
    assert (stored.state, stored.state_transition_reason) == (DISABLED, "PROBLEM: gone")
    assert stored.batch_size == 10  # the rest of the mapping is untouched
    assert not mappings.set_state(uuid(9), ENABLED, USER_INITIATED)


def test_only_one_of_two_racing_transitions_wins(mappings: EventSourceMappingStore) -> None:
    mappings.put(queue_mapping(uuid(1), state=CREATING))
    results: list[bool] = []
    barrier = threading.Barrier(2)

    def settle(state: str) -> None:
        barrier.wait()
        results.append(mappings.set_state(uuid(1), state, USER_INITIATED, expected={CREATING}))

    threads = [threading.Thread(target=settle, args=(s,)) for s in (ENABLED, DISABLED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]


def test_record_result_changes_only_the_result(mappings: EventSourceMappingStore) -> None:
    mappings.put(stream_mapping(uuid(1)))
    mappings.record_result(uuid(1), PROCESSING_OK)
    stored = mappings.get(uuid(1))
    assert stored == stream_mapping(uuid(1), last_processing_result=PROCESSING_OK)
    mappings.record_result(uuid(9), PROCESSING_OK)  # a mapping gone meanwhile: nothing
    assert mappings.get(uuid(9)) is None


def test_checkpoints_per_shard_go_with_their_mapping(mappings: EventSourceMappingStore) -> None:
    mappings.put(stream_mapping(uuid(1)))
    mappings.put(stream_mapping(uuid(2)))
    assert mappings.checkpoints(uuid(1)) == []
    mappings.put_checkpoint(uuid(1), ShardCheckpoint("shardId-000000000001", "49590"))
    mappings.put_checkpoint(uuid(1), ShardCheckpoint("shardId-000000000000", None))
    mappings.put_checkpoint(uuid(2), ShardCheckpoint("shardId-000000000000", "7"))
    window = ShardCheckpoint("shardId-000000000001", "49599", True, {"window": {"sum": 3}})
    mappings.put_checkpoint(uuid(1), window)
    assert mappings.checkpoints(uuid(1)) == [
        ShardCheckpoint("shardId-000000000000", None),
        window,
    ]
    mappings.delete(uuid(1))
    assert mappings.checkpoints(uuid(1)) == []
    assert mappings.checkpoints(uuid(2)) == [ShardCheckpoint("shardId-000000000000", "7")]
    # A poller that writes after its mapping was deleted leaves nothing behind.
    mappings.put_checkpoint(uuid(1), ShardCheckpoint("shardId-000000000000", "9"))
    assert mappings.checkpoints(uuid(1)) == []


def test_a_transaction_reads_and_writes_atomically(mappings: EventSourceMappingStore) -> None:
    mappings.put(queue_mapping(uuid(1), tags={}))
    with pytest.raises(RuntimeError), mappings.transaction():
        mappings.put(queue_mapping(uuid(1), tags={"a": "b"}))
        raise RuntimeError("rolled back")
    stored = mappings.get(uuid(1))
    assert stored is not None and stored.tags == {}
