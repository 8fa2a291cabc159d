"""EventBridge event buses, rules and targets: what CreateEventBus, PutRule, PutTargets and
their friends may do.

The default bus always exists; custom buses are made by CreateEventBus. Rules with a
`ScheduleExpression` (default bus only, as on AWS) fire on their schedule; rules with an
`EventPattern` receive the events put on their bus (see `bus.py`). Every change tells the
scheduler, which then looks again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from lamina.arns import Account
from lamina.control.paging import decode_marker, encode_marker
from lamina.errors import (
    InvalidEventPattern,
    InvalidParameterValue,
    LimitExceeded,
    ResourceAlreadyExists,
    ResourceNotFound,
    ValidationError,
)
from lamina.events.patterns import InvalidPattern, compile_pattern
from lamina.model.rules import (
    DEFAULT_BUS,
    DISABLED,
    ENABLED,
    EventBus,
    Rule,
    Target,
    bus_arn,
    rule_arn,
)
from lamina.schedules.cron import InvalidExpression
from lamina.schedules.events import PREDEFINED, compile_path, placeholders
from lamina.schedules.expressions import Schedule, minute_floor, parse_schedule
from lamina.store.protocols import RuleStore

MAX_TARGETS = 5  # per rule, as on AWS
PAGE_MAX = 100

_NAME = r"[.\-_A-Za-z0-9]+"
_RULE_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:events:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    rf"rule/(?:(?P<bus>[/.\-_A-Za-z0-9]+)/)?(?P<name>{_NAME})"
)
_BUS_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:events:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"event-bus/(?P<name>[/.\-_A-Za-z0-9]+)"
)
_FUNCTION_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"function:[a-zA-Z0-9_-]{1,64}(?::(?:\$LATEST|[a-zA-Z0-9_-]+))?"
)
# CreateEventBus members Lamina keeps and returns but does not act on.
_BUS_EXTRAS = ("KmsKeyIdentifier", "DeadLetterConfig", "LogConfig")


def check_schedule(expression: str) -> Schedule:
    try:
        return parse_schedule(expression)
    except InvalidExpression:
        # EventBridge says no more than this; the reason stays in Lamina's debug log.
        raise ValidationError("Parameter ScheduleExpression is not valid.") from None


def check_pattern(pattern: str) -> None:
    try:
        compile_pattern(pattern)
    except InvalidPattern as error:
        raise InvalidEventPattern(f"Event pattern is not valid. Reason: {error}") from None


def _tags(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or ()}


def _after(token: str | None) -> str | None:
    try:
        position = decode_marker(token)
    except InvalidParameterValue:
        raise ValidationError(f"The NextToken {token} is not valid.") from None
    return str(position) if position is not None else None


def _page(items: list[Any], limit: int, key: Callable[[Any], str]) -> tuple[list[Any], str | None]:
    """`items` holds up to limit + 1 entries: the extra one only says that more remain."""
    if len(items) <= limit:
        return items, None
    return items[:limit], encode_marker(key(items[limit - 1]))


def check_target(doc: Mapping[str, Any], account: Account) -> Target:
    """A PutTargets entry as Lamina can deliver it; raises ValidationError otherwise."""
    target_id, arn = doc["Id"], doc["Arn"]
    match = _FUNCTION_ARN.fullmatch(arn)
    if match is None:
        raise ValidationError(
            f"Target {target_id}: Lamina delivers rule events to Lambda functions only, "
            f"and {arn} is not a function ARN."
        )
    if (match["region"], match["account"]) != (account.region, account.account_id):
        raise ValidationError(
            f"Target {target_id}: {arn} is not in this Lamina's account "
            f"({account.account_id}) and region ({account.region})."
        )
    if sum(key in doc for key in ("Input", "InputPath", "InputTransformer")) > 1:
        raise ValidationError(
            f"Only one of Input, InputPath, or InputTransformer must be provided for target "
            f"{target_id}."
        )
    if "Input" in doc:
        try:
            orjson.loads(doc["Input"])
        except orjson.JSONDecodeError:
            raise ValidationError(
                f"Input for target {target_id} is not a valid JSON text."
            ) from None
    if "InputPath" in doc:
        try:
            compile_path(doc["InputPath"])
        except ValueError:
            raise ValidationError(
                f"InputPath for target {target_id} is not a valid JsonPath."
            ) from None
    transformer = doc.get("InputTransformer")
    if transformer is not None:
        paths: Mapping[str, str] = transformer.get("InputPathsMap") or {}
        for name, path in paths.items():
            try:
                compile_path(path)
            except ValueError:
                raise ValidationError(
                    f"InputPathsMap for target {target_id} has an invalid JsonPath for "
                    f"{name}: {path}."
                ) from None
        for name in placeholders(transformer["InputTemplate"]):
            if name not in paths and name not in PREDEFINED:
                raise ValidationError(
                    f"InputTemplate for target {target_id} contains invalid placeholder {name}."
                )
    return Target(target_id, arn, dict(doc))


class RuleService:
    """Buses, rules, targets and their tags, with the schedule bookkeeping each change implies."""

    def __init__(
        self,
        store: RuleStore,
        account: Account,
        clock: Callable[[], float],
        changed: Callable[[], None] = lambda: None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self._store = store
        self._account = account
        self._clock = clock
        self._changed = changed
        # Bus creation and modification times are wall-clock times, whatever the schedules run on.
        self._wall = wall or time.time

    @property
    def account_id(self) -> str:
        return self._account.account_id

    @property
    def account(self) -> Account:
        return self._account

    def arn(self, name: str, bus: str = DEFAULT_BUS) -> str:
        return rule_arn(self._account, name, bus)

    def bus_arn(self, name: str) -> str:
        return bus_arn(self._account, name)

    # ------------------------------------------------------------------ buses

    def bus_name(self, bus: str | None) -> str:
        """The name an `EventBusName` member (a name or an ARN, or nothing) refers to."""
        if bus is None:
            return DEFAULT_BUS
        match = _BUS_ARN.fullmatch(bus)
        if match is None:
            return bus
        if (match["region"], match["account"]) != (self._account.region, self._account.account_id):
            raise ResourceNotFound(f"Event bus {bus} does not exist.")
        return match["name"]

    def _bus(self, bus: str | None) -> str:
        """The name of an existing bus; ResourceNotFound otherwise."""
        name = self.bus_name(bus)
        if name != DEFAULT_BUS and self._store.get_bus(name) is None:
            raise ResourceNotFound(f"Event bus {name} does not exist.")
        return name

    def _default_bus(self) -> EventBus:
        """The default bus, recorded the first time anyone asks about it."""
        bus = self._store.get_bus(DEFAULT_BUS)
        if bus is None:
            now = self._wall()
            bus = EventBus(DEFAULT_BUS, created=now, modified=now)
            self._store.put_bus(bus)
        return bus

    def bus_exists(self, name: str) -> bool:
        return name == DEFAULT_BUS or self._store.get_bus(name) is not None

    def create_bus(
        self,
        name: str,
        *,
        event_source: str | None = None,
        description: str | None = None,
        tags: Iterable[Mapping[str, str]] | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> EventBus:
        if event_source is not None:
            # Partner event sources come from SaaS partners; Lamina has none.
            raise ResourceNotFound(f"Event source {event_source} does not exist.")
        if "/" in name:
            raise ValidationError("Event bus name must not contain '/'.")
        now = self._wall()
        bus = EventBus(
            name,
            created=now,
            modified=now,
            description=description,
            tags=_tags(tags),
            extras={key: value for key, value in (extras or {}).items() if key in _BUS_EXTRAS},
        )
        with self._store.transaction():
            if name == DEFAULT_BUS or self._store.get_bus(name) is not None:
                raise ResourceAlreadyExists(f"Event bus {name} already exists.")
            self._store.put_bus(bus)
        return bus

    def update_bus(
        self, name: str | None, *, description: str | None, extras: Mapping[str, Any]
    ) -> EventBus:
        with self._store.transaction():
            bus_name = self._bus(name)
            bus = self._default_bus() if bus_name == DEFAULT_BUS else self._store.get_bus(bus_name)
            assert bus is not None
            kept = {key: value for key, value in extras.items() if key in _BUS_EXTRAS}
            updated = replace(
                bus,
                description=description if description is not None else bus.description,
                extras={**bus.extras, **kept},
                modified=self._wall(),
            )
            self._store.put_bus(updated)
        return updated

    def delete_bus(self, name: str) -> None:
        """Deleting a bus that does not exist succeeds, as on AWS."""
        if name == DEFAULT_BUS:
            raise ValidationError("Cannot delete event bus default.")
        with self._store.transaction():
            if self._store.get_bus(name) is None:
                return
            if self._store.has_rules(name):
                raise ValidationError("EventBus can't be deleted since it has rules.")
            self._store.delete_bus(name)

    def describe_bus(self, name: str | None) -> EventBus:
        bus_name = self.bus_name(name)
        if bus_name == DEFAULT_BUS:
            return self._default_bus()
        bus = self._store.get_bus(bus_name)
        if bus is None:
            raise ResourceNotFound(f"Event bus {bus_name} does not exist.")
        return bus

    def list_buses(
        self, prefix: str | None, token: str | None, limit: int | None
    ) -> tuple[list[EventBus], str | None]:
        self._default_bus()
        size = min(limit or PAGE_MAX, PAGE_MAX)
        buses = self._store.buses(prefix, _after(token), size + 1)
        return _page(buses, size, lambda bus: bus.name)

    # ------------------------------------------------------------------ lookups

    def _require(self, name: str, bus: str) -> Rule:
        rule = self._store.get(name, bus)
        if rule is None:
            raise ResourceNotFound(f"Rule {name} does not exist on EventBus {bus}.")
        return rule

    def describe(self, name: str, bus: str | None = None) -> Rule:
        return self._require(name, self._bus(bus))

    def _next_fire(self, rule: Rule, now: int) -> int | None:
        if rule.schedule_expression is None or not rule.enabled:
            return None
        return check_schedule(rule.schedule_expression).next_after(now, rule.anchor)

    # ------------------------------------------------------------------ rules

    def put_rule(
        self,
        name: str,
        *,
        schedule_expression: str | None = None,
        event_pattern: str | None = None,
        state: str | None = None,
        description: str | None = None,
        role_arn: str | None = None,
        tags: Iterable[Mapping[str, str]] | None = None,
        bus: str | None = None,
    ) -> str:
        """Create the rule or replace it; PutRule keeps no field the caller leaves out,
        except the targets and the tags (which only TagResource/UntagResource change)."""
        bus_name = self._bus(bus)
        if schedule_expression is not None and bus_name != DEFAULT_BUS:
            raise ValidationError("ScheduleExpression is supported only on the default event bus.")
        if not schedule_expression and not event_pattern:
            raise ValidationError(
                "Parameter(s) EventPattern or ScheduleExpression must be specified."
            )
        if schedule_expression:
            check_schedule(schedule_expression)
        if event_pattern:
            check_pattern(event_pattern)
        now = int(self._clock())
        with self._store.transaction():
            if not self.bus_exists(bus_name):  # deleted since: no rule on a bus that is gone
                raise ResourceNotFound(f"Event bus {bus_name} does not exist.")
            existing = self._store.get(name, bus_name)
            rule = Rule(
                name=name,
                schedule_expression=schedule_expression or None,
                event_pattern=event_pattern or None,
                state=state or ENABLED,
                description=description,
                role_arn=role_arn,
                tags={**(existing.tags if existing else {}), **_tags(tags)},
                anchor=minute_floor(now),
                bus=bus_name,
            )
            if existing and existing.schedule_expression == rule.schedule_expression:
                # Re-putting the same schedule (tools do, to change a description) keeps its
                # cadence: same anchor, and the tick already due stays due.
                rule = replace(rule, anchor=existing.anchor)
                if existing.enabled and rule.enabled:
                    rule = replace(rule, next_fire_at=existing.next_fire_at)
            if rule.next_fire_at is None:
                rule = replace(rule, next_fire_at=self._next_fire(rule, now))
            self._store.put(rule)
        self._changed()
        return self.arn(name, bus_name)

    def list_rules(
        self,
        prefix: str | None,
        bus: str | None,
        token: str | None,
        limit: int | None,
    ) -> tuple[list[Rule], str | None]:
        bus_name = self._bus(bus)
        size = min(limit or PAGE_MAX, PAGE_MAX)
        rules = self._store.page(prefix, _after(token), size + 1, bus_name)
        return _page(rules, size, lambda rule: rule.name)

    def delete_rule(self, name: str, bus: str | None = None) -> None:
        """Deleting a rule that does not exist succeeds, as on AWS."""
        bus_name = self._bus(bus)
        with self._store.transaction():
            if self._store.get(name, bus_name) is None:
                return
            if self._store.targets(name, bus_name):
                raise ValidationError("Rule can't be deleted since it has targets.")
            self._store.delete(name, bus_name)
        self._changed()

    def set_state(self, name: str, state: str, bus: str | None = None) -> None:
        """EnableRule / DisableRule. Enabling never fires ticks missed while disabled."""
        bus_name = self._bus(bus)
        with self._store.transaction():
            rule = self._require(name, bus_name)
            if rule.state == state or (rule.enabled and state == ENABLED):
                return
            updated = replace(rule, state=state, next_fire_at=None)
            if state != DISABLED:
                updated = replace(
                    updated, next_fire_at=self._next_fire(updated, int(self._clock()))
                )
            self._store.put(updated)
        self._changed()

    # ------------------------------------------------------------------ targets

    def put_targets(
        self, rule_name: str, targets: Sequence[dict[str, Any]], bus: str | None = None
    ) -> list[dict[str, str]]:
        """Add or replace targets by Id; returns the failed entries (always none here)."""
        bus_name = self._bus(bus)
        checked = {
            target.id: target for target in (check_target(doc, self._account) for doc in targets)
        }
        with self._store.transaction():
            self._require(rule_name, bus_name)
            ids = {target.id for target in self._store.targets(rule_name, bus_name)}
            if len(ids | checked.keys()) > MAX_TARGETS:
                raise LimitExceeded(
                    f"The requested resource exceeds the maximum number allowed: a rule has at "
                    f"most {MAX_TARGETS} targets."
                )
            self._store.put_targets(rule_name, list(checked.values()), bus_name)
        return []

    def remove_targets(
        self, rule_name: str, ids: Sequence[str], bus: str | None = None
    ) -> list[dict[str, str]]:
        """Ids the rule does not have are ignored; returns the failed entries (none)."""
        bus_name = self._bus(bus)
        with self._store.transaction():
            self._require(rule_name, bus_name)
            self._store.remove_targets(rule_name, ids, bus_name)
        return []

    def list_targets(
        self, rule_name: str, bus: str | None, token: str | None, limit: int | None
    ) -> tuple[list[Target], str | None]:
        bus_name = self._bus(bus)
        self._require(rule_name, bus_name)
        after = _after(token)
        size = min(limit or PAGE_MAX, PAGE_MAX)
        targets = [
            t for t in self._store.targets(rule_name, bus_name) if after is None or t.id > after
        ]
        return _page(targets[: size + 1], size, lambda target: target.id)

    def rule_names_by_target(
        self, arn: str, bus: str | None, token: str | None, limit: int | None
    ) -> tuple[list[str], str | None]:
        bus_name = self._bus(bus)
        size = min(limit or PAGE_MAX, PAGE_MAX)
        names = self._store.rules_with_target(arn, _after(token), size + 1, bus_name)
        return _page(names, size, lambda name: name)

    # ------------------------------------------------------------------ tags

    def _tagged(self, arn: str) -> Rule | EventBus:
        """The rule or bus an ARN names (tags live on both)."""
        bus_match = _BUS_ARN.fullmatch(arn)
        if bus_match is not None:
            return self.describe_bus(arn)
        match = _RULE_ARN.fullmatch(arn)
        if match is None:
            raise ResourceNotFound(
                f"Lamina keeps tags on rules and event buses only, and {arn} is neither."
            )
        bus = match["bus"] or DEFAULT_BUS
        if (match["region"], match["account"]) != (self._account.region, self._account.account_id):
            raise ResourceNotFound(f"Rule {match['name']} does not exist on EventBus {bus}.")
        if not self.bus_exists(bus):
            raise ResourceNotFound(f"Event bus {bus} does not exist.")
        return self._require(match["name"], bus)

    def _retag(self, arn: str, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        with self._store.transaction():
            item = self._tagged(arn)
            if isinstance(item, EventBus):
                self._store.put_bus(replace(item, tags=change(item.tags)))
            else:
                self._store.put(replace(item, tags=change(item.tags)))

    def tag(self, arn: str, tags: Iterable[Mapping[str, str]]) -> None:
        added = _tags(tags)
        self._retag(arn, lambda current: {**current, **added})

    def untag(self, arn: str, keys: Iterable[str]) -> None:
        removed = set(keys)
        self._retag(
            arn,
            lambda current: {key: value for key, value in current.items() if key not in removed},
        )

    def tags(self, arn: str) -> dict[str, str]:
        return self._tagged(arn).tags
