"""PutEvents: check each entry as EventBridge does, match the events against the rules of
their bus, and turn each match into asynchronous invocations of the rule's Lambda targets.

`plan` does everything short of queueing: it answers every entry (an `EventId`, or an
`ErrorCode` and `ErrorMessage`) and lists the invocations to queue, one per matching rule
and target, each with the payload the target's Input, InputPath or InputTransformer makes.
The caller queues them all in one commit before it answers, so an accepted event is never
lost: from the queue on, asynchronous invocation's guarantees apply (retries, destinations,
DLQ), as they do for scheduled rules.

As on AWS:
- an entry without `Source`, `DetailType` or `Detail`, or whose `Detail` is not a JSON object,
  fails on its own (`InvalidArgument`, `MalformedDetail`), and the others go on;
- entries adding up to more than the size limit fail the whole request;
- an event for a bus that does not exist is accepted (it gets an `EventId`) and goes nowhere
  (Lamina says so in its log);
- a target that may not be invoked (no permission for `events.amazonaws.com`, or a function
  that is gone) does not fail the entry: the event counts as a FailedInvocation of the rule.

Rules' patterns are compiled once per change of the rule store (its change stamp), not once
per event.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from lamina import metrics as m
from lamina.arns import Account
from lamina.errors import LaminaError, ValidationError
from lamina.events.patterns import EventPattern, InvalidPattern, compile_pattern
from lamina.model.rules import DEFAULT_BUS, Rule, Target, rule_arn
from lamina.schedules.events import RuleContext, bus_event, target_payload
from lamina.schedules.scheduler import FAILED_INVOCATIONS, TRIGGERED_RULES
from lamina.schedules.targets import TargetResolver, Undeliverable
from lamina.store.protocols import AsyncEvent, RuleStore
from lamina.store.stamped import StampedCache

log = logging.getLogger("lamina.events")

# The most all entries of one request may add up to, counted as EventBridge counts them
# (see `entry_size`). The botocore model in use documents 1 MB ("less than 1MB"), raised
# from the 256 KB of earlier documentation.
MAX_REQUEST_BYTES = 1024 * 1024
MAX_DETAIL_TYPE = 128
TIME_BYTES = 14

# Per-entry error codes, as PutEventsResultEntry documents them.
INVALID_ARGUMENT = "InvalidArgument"
MALFORMED_DETAIL = "MalformedDetail"

# Metric names as CloudWatch has them in the AWS/Events namespace, kept per rule (its name
# on the default bus, `bus/name` on any other) in the registry the scheduler counts into.
# EventBridge's `Invocations` is not counted: that registry also feeds the AWS/Lambda series,
# where a rule's Invocations would add to the account's Lambda invocations.
MATCHED_EVENTS = "MatchedEvents"


def entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge documents it: 14 bytes for a Time, the UTF-8 bytes of
    Source, DetailType, Detail and each of the Resources."""
    size = TIME_BYTES if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        value = entry.get(key)
        if isinstance(value, str):
            size += len(value.encode())
    for resource in entry.get("Resources") or ():
        if isinstance(resource, str):
            size += len(resource.encode())
    return size


def _missing(name: str) -> tuple[str, str]:
    return (
        INVALID_ARGUMENT,
        f"Parameter {name} is not valid. Reason: {name} is a required argument.",
    )


def check_entry(entry: Mapping[str, Any]) -> tuple[str, str] | Any:
    """The entry's detail (a JSON object), or the (ErrorCode, ErrorMessage) it fails with."""
    for name in ("Source", "DetailType", "Detail"):
        if not entry.get(name):
            return _missing(name)
    if len(entry["DetailType"]) > MAX_DETAIL_TYPE:
        # The limit is documented; the wording of its refusal is Lamina's.
        return (
            INVALID_ARGUMENT,
            f"Parameter DetailType is not valid. Reason: DetailType is longer than "
            f"{MAX_DETAIL_TYPE} characters.",
        )
    try:
        detail = orjson.loads(entry["Detail"])
    except orjson.JSONDecodeError:
        return MALFORMED_DETAIL, "Detail is malformed."
    if not isinstance(detail, dict):
        return MALFORMED_DETAIL, "Detail is malformed."
    return detail


def _moment(value: Any, default: float) -> float:
    """An entry's `Time` (epoch seconds, a datetime or an ISO 8601 text) as epoch seconds."""
    if value is None:
        return default
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return default
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return default


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    arn: str
    pattern: EventPattern
    targets: tuple[Target, ...]

    @property
    def key(self) -> str:
        """The rule as Lamina's metrics name it."""
        return (
            self.rule.name if self.rule.bus == DEFAULT_BUS else f"{self.rule.bus}/{self.rule.name}"
        )


@dataclass
class Plan:
    """What one PutEvents does: the answer per entry, and the invocations to queue."""

    entries: list[dict[str, str]] = field(default_factory=list)
    invocations: list[AsyncEvent] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)  # rule keys, one per matching event
    # (rule key, target id, reason) per target that could not be invoked
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # buses that do not exist

    @property
    def failed_count(self) -> int:
        return sum(1 for entry in self.entries if "ErrorCode" in entry)


class EventRouter:
    """Matches put events against the rules of their bus and plans the invocations."""

    def __init__(
        self,
        *,
        rules: RuleStore,
        targets: TargetResolver,
        account: Account,
        bus_name: Callable[[str | None], str],
        bus_exists: Callable[[str], bool],
        metrics: m.MetricsRegistry | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        self._targets = targets
        self._account = account
        self._bus_name = bus_name
        self._bus_exists = bus_exists
        self._metrics = metrics
        self._wall = wall
        self._compiled: StampedCache[dict[str, list[CompiledRule]]] = StampedCache(
            rules.change_stamp, self._compile
        )

    # ---------------------------------------------------------------- rules

    def _compile(self) -> dict[str, list[CompiledRule]]:
        """Every enabled rule with a pattern and at least one target, by bus."""
        by_bus: dict[str, list[CompiledRule]] = {}
        for rule, targets in self._rules.pattern_rules():
            if not rule.enabled or rule.event_pattern is None or not targets:
                continue
            try:
                pattern = compile_pattern(rule.event_pattern)
            except InvalidPattern as error:
                # Refused by PutRule today; kept from before, or from another engine.
                log.warning(
                    "rule %s on bus %s: its pattern is skipped: %s", rule.name, rule.bus, error
                )
                continue
            arn = rule_arn(self._account, rule.name, rule.bus)
            by_bus.setdefault(rule.bus, []).append(CompiledRule(rule, arn, pattern, tuple(targets)))
        return by_bus

    # ---------------------------------------------------------------- PutEvents

    def plan(self, entries: Sequence[Mapping[str, Any]]) -> Plan:
        """Answer every entry and list the invocations its event causes (nothing queued yet).

        Raises ValidationError when the entries together are over the size limit."""
        if sum(entry_size(entry) for entry in entries) > MAX_REQUEST_BYTES:
            raise ValidationError("Total size of the entries in the request is over the limit.")
        now = self._wall()
        plan = Plan()
        compiled = self._compiled.get()
        # Within one request a target is resolved (and its permission checked) once.
        resolved: dict[tuple[str, str], tuple[str, str | None] | Undeliverable] = {}
        for entry in entries:
            checked = check_entry(entry)
            if isinstance(checked, tuple):
                code, message = checked
                plan.entries.append({"ErrorCode": code, "ErrorMessage": message})
                continue
            event_id = str(uuid.uuid4())
            plan.entries.append({"EventId": event_id})
            bus = self._bus_name_or_none(entry.get("EventBusName"))
            if bus is None or not self._bus_exists(bus):
                plan.dropped.append(str(entry.get("EventBusName")))
                continue
            event = bus_event(
                event_id,
                self._account,
                entry["Source"],
                entry["DetailType"],
                checked,
                entry.get("Resources") or [],
                _moment(entry.get("Time"), now),
            )
            for candidate in compiled.get(bus, ()):
                if candidate.pattern.matches(event):
                    self._deliver(plan, candidate, event, now, resolved)
        return plan

    def _bus_name_or_none(self, value: str | None) -> str | None:
        try:
            return self._bus_name(value)
        except LaminaError:
            # A bus ARN of another account or region: not a bus this Lamina has.
            return None

    def _resolve(self, target: Target, rule_arn: str) -> tuple[str, str | None] | Undeliverable:
        try:
            return self._targets.resolve(target.arn, rule_arn)
        except Undeliverable as error:
            return error

    def _deliver(
        self,
        plan: Plan,
        rule: CompiledRule,
        event: dict[str, Any],
        now: float,
        resolved: dict[tuple[str, str], tuple[str, str | None] | Undeliverable],
    ) -> None:
        plan.matched.append(rule.key)
        context = RuleContext(rule.arn, rule.rule.name, now)
        for target in rule.targets:
            key = (target.arn, rule.arn)
            if key not in resolved:
                resolved[key] = self._resolve(target, rule.arn)
            outcome = resolved[key]
            if isinstance(outcome, Undeliverable):
                plan.failures.append((rule.key, target.id, str(outcome)))
                continue
            function, qualifier = outcome
            payload = target_payload(target, event, context)
            plan.invocations.append(
                AsyncEvent(str(uuid.uuid4()), function, qualifier, payload, now, now)
            )

    def report(self, plan: Plan) -> None:
        """Count what the plan did (after its invocations were queued) and log what failed."""
        for bus in plan.dropped:
            log.warning(
                "PutEvents: event bus %s does not exist; the event was accepted and dropped, "
                "as EventBridge does",
                bus,
            )
        for key, target_id, reason in plan.failures:
            log.warning("rule %s: target %s was not invoked: %s", key, target_id, reason)
        if self._metrics is None:
            return
        for key in plan.matched:
            self._metrics.count(MATCHED_EVENTS, key)
            self._metrics.count(TRIGGERED_RULES, key)
        for key, _, _ in plan.failures:
            self._metrics.count(FAILED_INVOCATIONS, key)
