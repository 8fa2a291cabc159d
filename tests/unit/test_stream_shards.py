"""The stream poller's shard engine on a real SQLite store, over a scripted stream source:
children of a split shard start only after their parent is read to its end; a
ParallelizationFactor keeps order per key; records older than MaximumRecordAgeInSeconds are
given up on without an invocation; checkpoints end past everything processed.

moto's Kinesis cannot show a split (it keeps writing to the closed parent), hence the
scripted source here; the invocations are scripted too, since what is tested is what the
poller asks for, not what a function does.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from lamina.aws.clients import ClientCache
from lamina.metrics import DROPPED_EVENT_COUNT, MetricsRegistry
from lamina.model.mappings import ENABLED, KINESIS, EventSourceMapping
from lamina.pollers.context import PollerContext
from lamina.pollers.invoking import OK, BatchInvoker, BatchResult
from lamina.pollers.streams import (
    AFTER_SEQUENCE_NUMBER,
    Page,
    Position,
    ShardInfo,
    StreamPoller,
    StreamRecord,
)
from lamina.store.protocols.mappings import EventSourceMappingStore
from lamina.store.sqlite import open_stores
from tests.support.domain import ACCOUNT

STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"


@dataclass
class ScriptedShard:
    info: ShardInfo
    records: list[tuple[str, str]]  # (key, text), sequence numbers from `first`
    first: int


@dataclass
class ScriptedSource:
    """Shards held in memory; a closed shard's iterator ends after its last record."""

    shards_: list[ScriptedShard]
    batch_info_key: str = "KinesisBatchInfo"
    idle_s: float = 0.01
    page_limit: int = 100
    arrival_millis: bool = True
    arrival: float = field(default_factory=time.time)

    def shards(self) -> list[ShardInfo]:
        return [shard.info for shard in self.shards_]

    def _shard(self, shard_id: str) -> ScriptedShard:
        return next(shard for shard in self.shards_ if shard.info.shard_id == shard_id)

    def iterator(self, shard_id: str, position: Position) -> str:
        shard = self._shard(shard_id)
        if position.kind == AFTER_SEQUENCE_NUMBER:
            assert position.sequence is not None
            return f"{shard_id}|{int(position.sequence) - shard.first + 1}"
        return f"{shard_id}|0"

    def read(self, shard_id: str, iterator: str, limit: int, role: str | None) -> Page:
        _, offset_text = iterator.split("|")
        shard, offset = self._shard(shard_id), int(offset_text)
        chosen = shard.records[offset : offset + limit]
        records = [
            StreamRecord(
                str(shard.first + offset + i),
                self.arrival,
                key,
                {"text": text, "shard": shard_id},
                {"data": text},
            )
            for i, (key, text) in enumerate(chosen)
        ]
        end = offset + len(chosen)
        ended = shard.info.closed and end >= len(shard.records)
        return Page(records, None if ended else f"{shard_id}|{end}")


class ScriptedInvoker:
    """Records each batch's texts; every invocation succeeds."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def role(self, mapping: EventSourceMapping) -> str:
        return "arn:aws:iam::000000000000:role/r"

    async def invoke(self, mapping: EventSourceMapping, payload: bytes) -> BatchResult:
        event = orjson.loads(payload)
        self.batches.append([record["text"] for record in event["Records"]])
        await asyncio.sleep(0.001)
        return BatchResult(OK, "request", b"{}")


@pytest.fixture
def store(tmp_path: Path) -> EventSourceMappingStore:
    return open_stores(tmp_path).mappings


def stream_mapping(**changes: Any) -> EventSourceMapping:
    base = EventSourceMapping(
        uuid="5f0c1e2a-0000-4000-8000-000000000001",
        kind=KINESIS,
        function_name="consumer",
        function_arn=ACCOUNT.function_arn("consumer", None),
        event_source_arn=STREAM,
        state=ENABLED,
        state_transition_reason="User action",
        enabled=True,
        last_modified=1.0,
        batch_size=100,
        starting_position="TRIM_HORIZON",
        parallelization_factor=1,
        maximum_record_age=-1,
        maximum_retry_attempts=-1,
        bisect_batch_on_function_error=False,
        tumbling_window=0,
    )
    return replace(base, **changes)


def context_for(
    store: EventSourceMappingStore, invoker: ScriptedInvoker, metrics: MetricsRegistry
) -> PollerContext:
    return PollerContext(
        invoker=cast(BatchInvoker, invoker),
        store=store,
        metrics=metrics,
        clients=ClientCache("us-east-1"),
        threads=ThreadPoolExecutor(4),
        account=ACCOUNT,
        backoff_s=0.01,
    )


async def poll_until(poller: StreamPoller, done: Any, timeout: float = 10.0) -> None:
    task = asyncio.create_task(poller.run())
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the poller never got there"
        assert not task.done(), task.exception()
        await asyncio.sleep(0.01)
    poller.stop()
    await asyncio.wait_for(task, 5)


def test_children_of_a_split_shard_start_after_their_parent_ends(
    store: EventSourceMappingStore,
) -> None:
    mapping = stream_mapping(batch_size=2)
    store.put(mapping)
    parent = ScriptedShard(ShardInfo("shard-0", (), True), [("k", f"p{i}") for i in range(5)], 1)
    left = ScriptedShard(ShardInfo("shard-1", ("shard-0",), False), [("k", "l0"), ("k", "l1")], 1)
    right = ScriptedShard(ShardInfo("shard-2", ("shard-0",), False), [("k", "r0")], 1)
    source = ScriptedSource([right, left, parent])  # listed children first
    invoker = ScriptedInvoker()
    poller = StreamPoller(mapping, context_for(store, invoker, MetricsRegistry()), source)

    def seen() -> list[str]:
        return [text for batch in invoker.batches for text in batch]

    asyncio.run(poll_until(poller, lambda: len(seen()) == 8))
    texts = seen()
    assert texts[:5] == ["p0", "p1", "p2", "p3", "p4"]
    assert sorted(texts[5:]) == ["l0", "l1", "r0"]
    assert all(len(batch) <= 2 for batch in invoker.batches)
    checkpoints = {c.shard_id: c for c in store.checkpoints(mapping.uuid)}
    assert checkpoints["shard-0"].finished and checkpoints["shard-0"].sequence_number == "5"
    assert checkpoints["shard-1"].sequence_number == "2" and not checkpoints["shard-1"].finished
    assert checkpoints["shard-2"].sequence_number == "1"


def test_parallel_batches_keep_order_per_key_and_checkpoint_past_all(
    store: EventSourceMappingStore,
) -> None:
    mapping = stream_mapping(batch_size=3, parallelization_factor=4)
    store.put(mapping)
    records = [(key, f"{key}{i}") for i in range(10) for key in "abcdef"]
    source = ScriptedSource([ScriptedShard(ShardInfo("shard-0", (), False), records, 100)])
    invoker = ScriptedInvoker()
    poller = StreamPoller(mapping, context_for(store, invoker, MetricsRegistry()), source)
    asyncio.run(
        poll_until(
            poller,
            lambda: (
                sum(map(len, invoker.batches)) == 60
                and store.checkpoints(mapping.uuid)[0].sequence_number == "159"
            ),
        )
    )
    texts = [text for batch in invoker.batches for text in batch]
    assert sorted(texts) == sorted(text for _, text in records)
    for key in "abcdef":
        assert [t for t in texts if t[0] == key] == [f"{key}{i}" for i in range(10)]


def test_records_older_than_the_maximum_age_are_dropped_without_an_invocation(
    store: EventSourceMappingStore,
) -> None:
    mapping = stream_mapping(maximum_record_age=60)
    store.put(mapping)
    source = ScriptedSource(
        [ScriptedShard(ShardInfo("shard-0", (), False), [("k", "old")], 1)],
        arrival=time.time() - 120,
    )
    invoker, metrics = ScriptedInvoker(), MetricsRegistry()
    poller = StreamPoller(mapping, context_for(store, invoker, metrics), source)
    asyncio.run(poll_until(poller, lambda: metrics.counter(DROPPED_EVENT_COUNT, mapping.uuid) == 1))
    assert invoker.batches == []
    assert store.checkpoints(mapping.uuid)[0].sequence_number == "1"


def test_a_new_poller_resumes_after_the_checkpoint(store: EventSourceMappingStore) -> None:
    mapping = stream_mapping()
    store.put(mapping)
    shard = ScriptedShard(ShardInfo("shard-0", (), False), [("k", "a"), ("k", "b")], 1)
    source = ScriptedSource([shard])
    invoker = ScriptedInvoker()
    context = context_for(store, invoker, MetricsRegistry())
    asyncio.run(poll_until(StreamPoller(mapping, context, source), lambda: invoker.batches))
    shard.records.append(("k", "c"))
    asyncio.run(
        poll_until(StreamPoller(mapping, context, source), lambda: len(invoker.batches) == 2)
    )
    assert invoker.batches == [["a", "b"], ["c"]]


class HangingInvoker(ScriptedInvoker):
    """Takes each batch and never answers (a function stuck until its timeout)."""

    async def invoke(self, mapping: EventSourceMapping, payload: bytes) -> BatchResult:
        event = orjson.loads(payload)
        self.batches.append([record["text"] for record in event["Records"]])
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_cancelling_a_poller_abandons_its_stuck_batch_below_the_checkpoint(
    store: EventSourceMappingStore,
) -> None:
    mapping = stream_mapping(batch_size=2, parallelization_factor=2)
    store.put(mapping)
    source = ScriptedSource(
        [ScriptedShard(ShardInfo("shard-0", (), False), [("a", "a0"), ("d", "d0")], 1)]
    )
    invoker = HangingInvoker()
    poller = StreamPoller(mapping, context_for(store, invoker, MetricsRegistry()), source)

    async def scenario() -> None:
        task = asyncio.create_task(poller.run())
        deadline = time.monotonic() + 10
        while len(invoker.batches) < 2:  # "a" and "d" fall in different lanes
            assert time.monotonic() < deadline, "no batch was taken"
            await asyncio.sleep(0.01)
        poller.stop()
        _, pending = await asyncio.wait([task], timeout=0.2)
        assert pending, "stop() alone waits for the batches in flight"
        task.cancel()
        # The cancel reaches the shard's worker and its lanes: the poller ends at once.
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 2)

    asyncio.run(scenario())
    checkpoints = store.checkpoints(mapping.uuid)
    assert all(checkpoint.sequence_number is None for checkpoint in checkpoints)
