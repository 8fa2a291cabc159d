"""The scheduler on a real SQLite store with a hand-driven clock.

Whatever the clock does (ticks on time, long downtime, a restart, two schedulers on one
store), each tick is claimed once, and a claim commits together with the events it queues.
"""

from __future__ import annotations

import calendar
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from lamina.arns import Account
from lamina.metrics import MetricsRegistry
from lamina.schedules.clock import ScheduleClock
from lamina.schedules.rules import RuleService
from lamina.schedules.scheduler import (
    FAILED_INVOCATIONS,
    INVOCATIONS,
    TRIGGERED_RULES,
    Scheduler,
)
from lamina.schedules.targets import Undeliverable
from lamina.store.protocols import AsyncEvent, Stores
from lamina.store.sqlite import open_stores

ACCOUNT = Account("000000000000", "us-east-1")
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
START = calendar.timegm((2024, 1, 1, 0, 0, 30))  # 2024-01-01T00:00:30Z
MINUTE = 60


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class AllowAll:
    def resolve(self, target_arn: str, rule_arn: str) -> tuple[str, str | None]:
        name, _, qualifier = target_arn.split(":function:")[1].partition(":")
        return name, qualifier or None


class DenyAll:
    def resolve(self, target_arn: str, rule_arn: str) -> tuple[str, str | None]:
        raise Undeliverable("no policy allows events.amazonaws.com")


class Harness:
    """Stores, a rule service and a scheduler on one data directory and one fake clock."""

    def __init__(
        self, data_dir: Path, time: FakeTime, resolver: Any = None, queue: Any = None
    ) -> None:
        self.time = time
        self.stores: Stores = open_stores(data_dir)
        self.metrics = MetricsRegistry()
        clock = ScheduleClock(wall=time)
        self.rules = RuleService(self.stores.rules, ACCOUNT, clock.now)
        self.scheduler = Scheduler(
            rules=self.stores.rules,
            queue=queue(self.stores.queue) if queue else self.stores.queue,
            targets=resolver or AllowAll(),
            account=ACCOUNT,
            metrics=self.metrics,
            clock=clock,
            wall=time,
        )

    def add(self, name: str, expression: str, *targets: dict[str, Any]) -> None:
        self.rules.put_rule(name, schedule_expression=expression)
        self.rules.put_targets(name, list(targets) or [{"Id": "t1", "Arn": FUNCTION_ARN + "fn"}])

    def fire_at(self, moment: float) -> list[int]:
        self.time.now = moment
        return [firing.tick for firing in self.scheduler.fire_due()]

    def queued(self, function: str = "fn") -> list[AsyncEvent]:
        return self.stores.queue.events(function, 10_000)


@pytest.fixture
def time() -> FakeTime:
    return FakeTime(START)


@pytest.fixture
def harness(tmp_path: Path, time: FakeTime) -> Harness:
    return Harness(tmp_path / "data", time)


def minute(n: int) -> int:
    """2024-01-01 00:n:00 (n may exceed 59)."""
    return calendar.timegm((2024, 1, 1, 0, 0, 0)) + n * MINUTE


def payloads(events: list[AsyncEvent]) -> list[dict[str, Any]]:
    return [orjson.loads(event.payload) for event in events]


def test_each_tick_fires_once(harness: Harness) -> None:
    harness.add("every-minute", "rate(1 minute)")
    assert harness.fire_at(minute(1) - 1) == []
    assert harness.fire_at(minute(1)) == [minute(1)]
    assert harness.fire_at(minute(1) + 30) == []
    assert harness.fire_at(minute(2) + 5) == [minute(2)]
    assert harness.fire_at(minute(2) + 6) == []
    assert [event["time"] for event in payloads(harness.queued())] == [
        "2024-01-01T00:01:00Z",
        "2024-01-01T00:02:00Z",
    ]


def test_after_downtime_only_the_latest_missed_tick_fires(harness: Harness) -> None:
    harness.add("every-minute", "rate(1 minute)")
    assert harness.fire_at(minute(1)) == [minute(1)]
    # Down from 00:01 to 00:10:30: nine ticks missed, one fires, then the schedule goes on.
    assert harness.fire_at(minute(10) + 30) == [minute(10)]
    assert harness.fire_at(minute(10) + 31) == []
    assert harness.fire_at(minute(11)) == [minute(11)]
    assert len(harness.queued()) == 3


def test_cron_after_downtime(harness: Harness) -> None:
    harness.add("quarterly", "cron(0/15 * * * ? *)")
    assert harness.fire_at(minute(15)) == [minute(15)]
    assert harness.fire_at(minute(15 * 9 + 7)) == [minute(15 * 9)]
    assert harness.fire_at(minute(15 * 10)) == [minute(15 * 10)]


def test_a_restarted_scheduler_continues_where_the_store_says(
    tmp_path: Path, time: FakeTime
) -> None:
    first = Harness(tmp_path / "data", time)
    first.add("every-minute", "rate(1 minute)")
    assert first.fire_at(minute(1)) == [minute(1)]
    # A new process on the same data: the claimed tick is not fired again.
    second = Harness(tmp_path / "data", time)
    assert second.fire_at(minute(1) + 20) == []
    assert second.fire_at(minute(4) + 20) == [minute(4)]
    assert len(second.queued()) == 2


def test_two_schedulers_on_one_store_never_fire_a_tick_twice(
    tmp_path: Path, time: FakeTime
) -> None:
    harnesses = [Harness(tmp_path / "data", time) for _ in range(2)]
    for index in range(5):
        harnesses[0].add(f"rule-{index}", "rate(1 minute)")
    fired: list[list[int]] = [[], []]
    for step in range(1, 31):
        time.now = minute(step)
        barrier = threading.Barrier(2)

        def run(index: int, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            fired[index].extend(f.tick for f in harnesses[index].scheduler.fire_due())

        threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # 5 rules x 30 ticks, each fired by exactly one of the two schedulers.
    assert len(fired[0]) + len(fired[1]) == 150
    events = harnesses[0].queued()
    assert len(events) == 150
    assert len({event.event_id for event in events}) == 150
    assert len({(e["resources"][0], e["time"]) for e in payloads(events)}) == 150


class FailingQueue:
    """The real queue, except that the next `failures` enqueues raise (a crash mid-claim)."""

    def __init__(self, queue: Any, failures: int) -> None:
        self._queue = queue
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    def enqueue(self, events: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("disk full")
        self._queue.enqueue(events)


def test_a_claim_commits_only_with_its_events(
    tmp_path: Path, time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    harness = Harness(tmp_path / "data", time, queue=lambda real: FailingQueue(real, 1))
    harness.add("every-minute", "rate(1 minute)")
    assert harness.fire_at(minute(1)) == []
    assert "could not fire rule every-minute" in caplog.text
    # Nothing was claimed: the tick is still due, and fires (once) on the next pass.
    rule = harness.stores.rules.get("every-minute")
    assert rule is not None and rule.next_fire_at == minute(1) and rule.last_fired is None
    assert harness.queued() == []
    assert harness.fire_at(minute(1) + 1) == [minute(1)]
    assert len(harness.queued()) == 1


def test_the_scheduled_event_and_target_inputs(harness: Harness) -> None:
    harness.add(
        "shapes",
        "rate(1 minute)",
        {"Id": "plain", "Arn": FUNCTION_ARN + "fn"},
        {"Id": "input", "Arn": FUNCTION_ARN + "fn", "Input": '{"custom": [1, 2]}'},
        {"Id": "detail", "Arn": FUNCTION_ARN + "fn", "InputPath": "$.detail"},
        {"Id": "first", "Arn": FUNCTION_ARN + "fn:live", "InputPath": "$.resources[0]"},
        {"Id": "missing", "Arn": FUNCTION_ARN + "fn", "InputPath": "$.detail.nothing"},
    )
    harness.time.now = minute(1) + 3
    (firing,) = harness.scheduler.fire_due()
    rule_arn = "arn:aws:events:us-east-1:000000000000:rule/shapes"
    # Events come in target order (targets are kept sorted by Id).
    by_target = dict(
        zip(["detail", "first", "input", "missing", "plain"], firing.events, strict=True)
    )

    def event(target: str) -> AsyncEvent:
        return by_target[target]

    plain = orjson.loads(event("plain").payload)
    assert orjson.loads(event("plain").payload) == {
        "version": "0",
        "id": plain["id"],
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "2024-01-01T00:01:00Z",
        "region": "us-east-1",
        "resources": [rule_arn],
        "detail": {},
    }
    assert list(orjson.loads(event("plain").payload)) == [
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    ]
    assert event("input").payload == b'{"custom": [1, 2]}'  # verbatim, spacing included
    assert event("detail").payload == b"{}"
    assert orjson.loads(event("first").payload) == rule_arn
    assert event("first").qualifier == "live"
    assert event("missing").payload == b"null"
    # The queue keeps wall-clock times for age and retries.
    assert event("plain").enqueued_at == harness.time.now
    # One event (one id) for the tick; one invocation (request id) per target.
    assert len({e.event_id for e in firing.events}) == 5


def test_each_firing_has_its_own_event_id(harness: Harness) -> None:
    harness.add("ids", "rate(1 minute)")
    harness.fire_at(minute(1))
    harness.fire_at(minute(2))
    first, second = payloads(harness.queued())
    assert first["id"] != second["id"]


def test_a_target_without_permission_is_not_invoked_and_counts_as_failed(
    tmp_path: Path, time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    harness = Harness(tmp_path / "data", time, DenyAll())
    harness.add("denied", "rate(1 minute)")
    assert harness.fire_at(minute(1)) == [minute(1)]
    assert harness.queued() == []
    assert harness.metrics.counter(TRIGGERED_RULES, "denied") == 1
    assert harness.metrics.counter(FAILED_INVOCATIONS, "denied") == 1
    assert harness.metrics.counter(INVOCATIONS, "denied") == 1
    assert "no policy allows events.amazonaws.com" in caplog.text
    # The tick is used up all the same: a fixed policy applies from the next tick on.
    assert harness.fire_at(minute(1) + 10) == []


def test_disabled_rules_do_not_fire_and_enabling_does_not_catch_up(harness: Harness) -> None:
    harness.add("paused", "rate(1 minute)")
    harness.rules.set_state("paused", "DISABLED")
    assert harness.fire_at(minute(5)) == []
    harness.rules.set_state("paused", "ENABLED")
    assert harness.fire_at(minute(5) + 30) == []
    assert harness.fire_at(minute(6)) == [minute(6)]


def test_changing_the_expression_restarts_the_schedule(harness: Harness) -> None:
    harness.add("changing", "rate(10 minutes)")
    harness.time.now = minute(3) + 20
    harness.rules.put_rule("changing", schedule_expression="rate(1 minute)")
    assert harness.fire_at(minute(4)) == [minute(4)]


def test_reputting_the_same_expression_keeps_the_cadence(harness: Harness) -> None:
    harness.add("steady", "rate(5 minutes)")
    harness.time.now = minute(3)
    harness.rules.put_rule("steady", schedule_expression="rate(5 minutes)", description="new")
    assert harness.fire_at(minute(5)) == [minute(5)]


def test_event_pattern_rules_never_fire(harness: Harness) -> None:
    harness.rules.put_rule("pattern", event_pattern='{"source": ["my.app"]}')
    harness.rules.put_targets("pattern", [{"Id": "t", "Arn": FUNCTION_ARN + "fn"}])
    rule = harness.stores.rules.get("pattern")
    assert rule is not None and rule.next_fire_at is None
    assert harness.fire_at(minute(60)) == []


def test_scaled_clock() -> None:
    wall = FakeTime(1000.0)
    clock = ScheduleClock(scale=0.01, origin=1000.0, wall=wall)
    assert clock.now() == 1000.0
    wall.now = 1006.0
    assert clock.now() == pytest.approx(1600.0)
    assert clock.real_seconds(60) == pytest.approx(0.6)
