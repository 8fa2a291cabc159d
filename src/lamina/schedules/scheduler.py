"""The scheduler: turns the due ticks of enabled rules into asynchronous invocations.

Each rule row carries its next tick (`next_fire_at`) and the last one fired. A pass takes the
rules whose next tick has come and, for each, in ONE transaction shared with the durable
async queue: re-reads the rule, moves `next_fire_at` past now with a compare-and-set (the
claim), and queues one asynchronous event per deliverable target. So:

- a tick is never fired twice: only one claim can move `next_fire_at` from a given value, be
  it by this process, another process on the same store, or a pass after a restart;
- a tick is never lost to a crash: the claim and its events commit together or not at all
  (claiming first and enqueueing after would lose the tick if the process died in between;
  enqueueing first and claiming after would fire it again). From the queue on, asynchronous
  invocation's own guarantees apply: retries, destinations, DLQ, nothing dropped silently;
- after downtime the rule fires once, for the most recent missed tick, not once per tick.

Each firing gets a fresh event id (shared by its targets, as one EventBridge event goes to
every target) and a fresh request id per target, so that a tick fired twice would show as two
ids for one `time`, while a redelivery by the queue (at-least-once) repeats the same ids.
Invocations go through the queue as any `InvocationType=Event` call does; EventBridge's own
target retry policy therefore does not apply on top of Lambda's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lamina import metrics as m
from lamina.arns import Account
from lamina.model.rules import DEFAULT_BUS, Rule, Target, rule_arn
from lamina.schedules.clock import ScheduleClock
from lamina.schedules.events import RuleContext, scheduled_event, target_payload
from lamina.schedules.expressions import parse_schedule
from lamina.schedules.targets import TargetResolver, Undeliverable
from lamina.store.protocols import AsyncEvent, AsyncQueue, RuleStore

log = logging.getLogger("lamina.schedules")

# Metric names as CloudWatch has them in the AWS/Events namespace, kept per rule name.
TRIGGERED_RULES = "TriggeredRules"
INVOCATIONS = "Invocations"
FAILED_INVOCATIONS = "FailedInvocations"

# How often the store is re-read when nothing in this process changed a rule (changes made
# through another process sharing the store).
POLL_S = 1.0
# Due rules taken per pass (one transaction each); a full batch means more may be due, so
# the next pass starts at once.
BATCH = 100
_WAKE_MARGIN_S = 0.01


@dataclass(frozen=True)
class Firing:
    """One claimed tick of one rule: the events it queued and the targets it could not reach."""

    rule: str
    tick: int
    events: list[AsyncEvent] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (target id, reason)


class Scheduler:
    """Fires due rules; `changed()` (safe from any thread) makes it look again at once."""

    def __init__(
        self,
        *,
        rules: RuleStore,
        queue: AsyncQueue,
        targets: TargetResolver,
        account: Account,
        metrics: m.MetricsRegistry,
        clock: ScheduleClock,
        lambda_metrics: m.MetricsRegistry | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        self._queue = queue
        self._targets = targets
        self._account = account
        # EventBridge's own metrics (AWS/Events, per rule) and Lambda's (AWS/Lambda, per
        # function) go to different registries: a rule's Invocations are not a function's.
        self._metrics = metrics
        self._lambda_metrics = lambda_metrics or metrics
        self._clock = clock
        # The queue keeps wall-clock times (event age, retries), whatever the schedule clock.
        self._wall = wall
        # Store calls block; one thread of our own keeps them off the event loop.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lamina-schedules")
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- one pass

    def fire_due(self) -> list[Firing]:
        """Fire every rule whose next tick has come; returns what was claimed."""
        now = int(self._clock.now())
        fired: list[Firing] = []
        for rule in self._rules.due(now, BATCH):
            try:
                firing = self._fire(rule.name, now, rule.bus)
            except Exception:
                # Nothing was committed: the tick stays due and the next pass tries again.
                log.exception("could not fire rule %s", rule.name)
                continue
            if firing is not None:
                self._report(firing)
                fired.append(firing)
        return fired

    def _fire(self, name: str, now: int, bus: str = DEFAULT_BUS) -> Firing | None:
        with self._queue.transaction():
            # Re-read under the transaction: the rule may have changed since `due` saw it.
            rule = self._rules.get(name, bus)
            if rule is None or rule.next_fire_at is None or rule.next_fire_at > now:
                return None
            tick, following = self._ticks(rule, now)
            if not self._rules.claim(name, rule.next_fire_at, tick, following, bus):
                return None
            firing = self._events(rule, tick, self._rules.targets(name, rule.bus))
            if firing.events:
                self._queue.enqueue(firing.events)
        return firing

    @staticmethod
    def _ticks(rule: Rule, now: int) -> tuple[int, int | None]:
        """The tick to fire (the latest one due, however many were missed) and the next."""
        assert rule.next_fire_at is not None
        if rule.schedule_expression is None:
            return rule.next_fire_at, None
        schedule = parse_schedule(rule.schedule_expression)
        latest = schedule.latest_until(now, rule.anchor)
        tick = max(latest or rule.next_fire_at, rule.next_fire_at)
        return tick, schedule.next_after(now, rule.anchor)

    def _events(self, rule: Rule, tick: int, targets: list[Target]) -> Firing:
        arn = rule_arn(self._account, rule.name, rule.bus)
        event = scheduled_event(str(uuid.uuid4()), self._account, arn, tick)
        firing = Firing(rule.name, tick)
        wall = self._wall()
        context = RuleContext(arn, rule.name, wall)
        for target in targets:
            try:
                function, qualifier = self._targets.resolve(target.arn, arn)
            except Undeliverable as error:
                firing.failures.append((target.id, str(error)))
                continue
            payload = target_payload(target, event, context)
            firing.events.append(
                AsyncEvent(str(uuid.uuid4()), function, qualifier, payload, wall, wall)
            )
        return firing

    def _report(self, firing: Firing) -> None:
        self._metrics.count(TRIGGERED_RULES, firing.rule)
        # As on AWS, Invocations counts attempts; the failed ones also count as failed.
        attempts = len(firing.events) + len(firing.failures)
        if attempts:
            self._metrics.count(INVOCATIONS, firing.rule, attempts)
        for event in firing.events:
            self._lambda_metrics.count(m.ASYNC_EVENTS_RECEIVED, event.function)
        for target_id, reason in firing.failures:
            self._metrics.count(FAILED_INVOCATIONS, firing.rule)
            log.warning("rule %s: target %s was not invoked: %s", firing.rule, target_id, reason)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start firing; needs a running event loop."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    def changed(self) -> None:
        """A rule changed: look again now rather than at the next poll."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._loop = None
        # A pass already in its thread finishes (it is one short transaction per rule).
        await asyncio.to_thread(self._executor.shutdown, True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            try:
                delay = await loop.run_in_executor(self._executor, self._pass)
            except Exception:
                log.exception("firing scheduled rules failed")
                delay = POLL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _pass(self) -> float:
        """Fire what is due; returns how long to wait (real seconds) before the next pass."""
        if len(self.fire_due()) >= BATCH:
            return 0.0
        next_due = self._rules.next_due()
        if next_due is None:
            return POLL_S
        wait = self._clock.real_seconds(next_due - self._clock.now())
        if wait <= 0:
            # Still due after the pass: firing it failed (logged); try again at the next poll.
            return POLL_S
        # A little late rather than early, or the pass finds nothing due yet.
        return min(POLL_S, wait + _WAKE_MARGIN_S)
