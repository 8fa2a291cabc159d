"""The poller supervisor on a real SQLite store: one poller per Enabled mapping, stopped when
the mapping is disabled or deleted, replaced (never doubled) when it is updated, restarted
after a failure, and none for kinds without a poller."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from lamina.aws.clients import ClientCache
from lamina.metrics import MetricsRegistry
from lamina.model.mappings import DISABLED, ENABLED, KAFKA, SQS, EventSourceMapping
from lamina.pollers.context import PollerContext
from lamina.pollers.invoking import BatchInvoker
from lamina.pollers.protocol import PollerStatus
from lamina.pollers.supervisor import PollerSupervisor
from lamina.store.protocols.mappings import EventSourceMappingStore
from lamina.store.sqlite import open_stores
from tests.support.domain import ACCOUNT

QUEUE = "arn:aws:sqs:us-east-1:123456789012:orders"


class ScriptedPoller:
    """Records its life; `run` waits for `stop` (or fails when told to)."""

    def __init__(self, mapping: EventSourceMapping, log: list[tuple[str, str, float]]) -> None:
        self.mapping = mapping
        self._log = log
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        self._log.append(("run", self.mapping.uuid, self.mapping.last_modified))
        if self.mapping.extras.get("fail"):
            raise RuntimeError("the source is on fire")
        await self._stopped.wait()
        # A batch in flight finishes before run returns.
        await asyncio.sleep(0.01)
        self._log.append(("returned", self.mapping.uuid, self.mapping.last_modified))

    def stop(self) -> None:
        self._stopped.set()

    def status(self) -> PollerStatus:
        return PollerStatus(lag=3, errors=1)


def mapping(uuid: str, **changes: object) -> EventSourceMapping:
    base = EventSourceMapping(
        uuid=uuid,
        kind=SQS,
        function_name="consumer",
        function_arn=ACCOUNT.function_arn("consumer", None),
        event_source_arn=QUEUE,
        state=ENABLED,
        state_transition_reason="USER_INITIATED",
        enabled=True,
        last_modified=1.0,
        batch_size=10,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> EventSourceMappingStore:
    return open_stores(tmp_path).mappings


def supervisor(
    store: EventSourceMappingStore, log: list[tuple[str, str, float]]
) -> PollerSupervisor:
    context = PollerContext(
        invoker=BatchInvoker(engine=None),  # type: ignore[arg-type]  # never invoked here
        store=store,
        metrics=MetricsRegistry(),
        clients=ClientCache("us-east-1"),
        threads=ThreadPoolExecutor(2),
        account=ACCOUNT,
    )
    return PollerSupervisor(context, {SQS: lambda m, _: ScriptedPoller(m, log)}, interval_s=0.01)


async def settle(sup: PollerSupervisor, rounds: int = 5) -> None:
    for _ in range(rounds):
        await sup.reconcile()
        await asyncio.sleep(0.02)


def test_one_poller_per_enabled_mapping(store: EventSourceMappingStore) -> None:
    log: list[tuple[str, str, float]] = []

    async def scenario() -> None:
        store.put(mapping("a"))
        store.put(mapping("b", state=DISABLED, enabled=False))
        sup = supervisor(store, log)
        await settle(sup)
        assert [entry[:2] for entry in log] == [("run", "a")]
        assert set(sup.statuses()) == {"a"}
        assert sup.statuses()["a"].lag == 3
        await sup.close()
        assert ("returned", "a", 1.0) in log

    asyncio.run(scenario())


def test_disable_and_delete_stop_the_poller(store: EventSourceMappingStore) -> None:
    log: list[tuple[str, str, float]] = []

    async def scenario() -> None:
        store.put(mapping("a"))
        store.put(mapping("b"))
        sup = supervisor(store, log)
        await settle(sup)
        store.set_state("a", DISABLED, "USER_INITIATED")
        store.delete("b")
        await settle(sup)
        assert sup.statuses() == {}
        assert {entry[:2] for entry in log if entry[0] == "returned"} == {
            ("returned", "a"),
            ("returned", "b"),
        }
        # Enabled again: a new poller.
        store.set_state("a", ENABLED, "USER_INITIATED")
        await settle(sup)
        assert [entry[:2] for entry in log].count(("run", "a")) == 2
        await sup.close()

    asyncio.run(scenario())


def test_an_update_replaces_the_poller_after_the_old_one_returned(
    store: EventSourceMappingStore,
) -> None:
    log: list[tuple[str, str, float]] = []

    async def scenario() -> None:
        store.put(mapping("a"))
        sup = supervisor(store, log)
        await settle(sup)
        store.put(mapping("a", last_modified=2.0, batch_size=50))
        await settle(sup)
        assert log == [("run", "a", 1.0), ("returned", "a", 1.0), ("run", "a", 2.0)]
        await sup.close()

    asyncio.run(scenario())


def test_a_failed_poller_is_restarted_after_a_pause(store: EventSourceMappingStore) -> None:
    log: list[tuple[str, str, float]] = []

    async def scenario() -> None:
        store.put(mapping("a", extras={"fail": True}))
        sup = supervisor(store, log)
        await settle(sup, rounds=3)
        assert [entry[0] for entry in log] == ["run"]  # restarted only after the pause
        await asyncio.sleep(1.1)
        await settle(sup, rounds=2)
        assert [entry[0] for entry in log].count("run") == 2
        await sup.close()

    asyncio.run(scenario())


def test_kinds_without_a_poller_are_kept_unpolled(
    store: EventSourceMappingStore, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[tuple[str, str, float]] = []

    async def scenario() -> None:
        store.put(mapping("k", kind=KAFKA, event_source_arn=None, bootstrap_servers=("b:9092",)))
        sup = supervisor(store, log)
        await settle(sup)
        assert log == []
        assert sup.statuses() == {}
        await sup.close()

    asyncio.run(scenario())
    assert sum("no poller for kafka" in record.message for record in caplog.records) == 1
