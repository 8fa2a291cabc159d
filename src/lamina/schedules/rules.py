"""EventBridge rules on the default bus: what PutRule, PutTargets and friends may do.

Only the default event bus exists. Rules with a `ScheduleExpression` fire on their schedule;
rules with only an `EventPattern` are kept (so tools that manage them work) but never fire,
as Lamina has no PutEvents. Every change tells the scheduler, which then looks again.
"""

from __future__ import annotations

import re
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
    ResourceNotFound,
    ValidationError,
)
from lamina.model.rules import DEFAULT_BUS, DISABLED, ENABLED, Rule, Target, rule_arn
from lamina.schedules.cron import InvalidExpression
from lamina.schedules.events import compile_path
from lamina.schedules.expressions import Schedule, minute_floor, parse_schedule
from lamina.store.protocols import RuleStore

MAX_TARGETS = 5  # per rule, as on AWS
PAGE_MAX = 100

_RULE_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:events:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"rule/(?:default/)?(?P<name>[.\-_A-Za-z0-9]+)"
)
_FUNCTION_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"function:[a-zA-Z0-9_-]{1,64}(?::(?:\$LATEST|[a-zA-Z0-9_-]+))?"
)


def check_schedule(expression: str) -> Schedule:
    try:
        return parse_schedule(expression)
    except InvalidExpression:
        # EventBridge says no more than this; the reason stays in Lamina's debug log.
        raise ValidationError("Parameter ScheduleExpression is not valid.") from None


def _check_pattern(pattern: str) -> None:
    try:
        document = orjson.loads(pattern)
    except orjson.JSONDecodeError as error:
        raise InvalidEventPattern(f"Event pattern is not valid. Reason: {error}") from None
    if not isinstance(document, dict):
        raise InvalidEventPattern("Event pattern is not valid. Reason: Filter is not an object")


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


class RuleService:
    """Rules, targets and rule tags, with the schedule bookkeeping each change implies."""

    def __init__(
        self,
        store: RuleStore,
        account: Account,
        clock: Callable[[], float],
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._account = account
        self._clock = clock
        self._changed = changed

    @property
    def account_id(self) -> str:
        return self._account.account_id

    def arn(self, name: str) -> str:
        return rule_arn(self._account, name)

    # ------------------------------------------------------------------ lookups

    def _check_bus(self, bus: str | None) -> None:
        default_arn = (
            f"arn:aws:events:{self._account.region}:{self._account.account_id}:"
            f"event-bus/{DEFAULT_BUS}"
        )
        if bus not in (None, DEFAULT_BUS, default_arn):
            raise ResourceNotFound(f"Event bus {bus} does not exist.")

    def _require(self, name: str) -> Rule:
        rule = self._store.get(name)
        if rule is None:
            raise ResourceNotFound(f"Rule {name} does not exist on EventBus {DEFAULT_BUS}.")
        return rule

    def describe(self, name: str, bus: str | None = None) -> Rule:
        self._check_bus(bus)
        return self._require(name)

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
        self._check_bus(bus)
        if not schedule_expression and not event_pattern:
            raise ValidationError(
                "Parameter(s) EventPattern or ScheduleExpression must be specified."
            )
        if schedule_expression:
            check_schedule(schedule_expression)
        if event_pattern:
            _check_pattern(event_pattern)
        now = int(self._clock())
        with self._store.transaction():
            existing = self._store.get(name)
            rule = Rule(
                name=name,
                schedule_expression=schedule_expression or None,
                event_pattern=event_pattern or None,
                state=state or ENABLED,
                description=description,
                role_arn=role_arn,
                tags={**(existing.tags if existing else {}), **_tags(tags)},
                anchor=minute_floor(now),
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
        return self.arn(name)

    def list_rules(
        self,
        prefix: str | None,
        bus: str | None,
        token: str | None,
        limit: int | None,
    ) -> tuple[list[Rule], str | None]:
        self._check_bus(bus)
        size = min(limit or PAGE_MAX, PAGE_MAX)
        rules = self._store.page(prefix, _after(token), size + 1)
        return _page(rules, size, lambda rule: rule.name)

    def delete_rule(self, name: str, bus: str | None = None) -> None:
        """Deleting a rule that does not exist succeeds, as on AWS."""
        self._check_bus(bus)
        with self._store.transaction():
            if self._store.get(name) is None:
                return
            if self._store.targets(name):
                raise ValidationError("Rule can't be deleted since it has targets.")
            self._store.delete(name)
        self._changed()

    def set_state(self, name: str, state: str, bus: str | None = None) -> None:
        """EnableRule / DisableRule. Enabling never fires ticks missed while disabled."""
        self._check_bus(bus)
        with self._store.transaction():
            rule = self._require(name)
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

    def _target(self, doc: dict[str, Any]) -> Target:
        target_id, arn = doc["Id"], doc["Arn"]
        match = _FUNCTION_ARN.fullmatch(arn)
        if match is None:
            raise ValidationError(
                f"Target {target_id}: Lamina delivers rule events to Lambda functions only, "
                f"and {arn} is not a function ARN."
            )
        if (match["region"], match["account"]) != (self._account.region, self._account.account_id):
            raise ValidationError(
                f"Target {target_id}: {arn} is not in this Lamina's account "
                f"({self._account.account_id}) and region ({self._account.region})."
            )
        inputs = [key for key in ("Input", "InputPath", "InputTransformer") if key in doc]
        if len(inputs) > 1:
            raise ValidationError(
                f"Target {target_id}: use only one of Input, InputPath and InputTransformer "
                f"(got {', '.join(inputs)})."
            )
        if "InputTransformer" in doc:
            raise ValidationError(
                f"Target {target_id}: Lamina does not apply InputTransformer; "
                "use Input or InputPath."
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
        return Target(target_id, arn, doc)

    def put_targets(
        self, rule_name: str, targets: Sequence[dict[str, Any]], bus: str | None = None
    ) -> list[dict[str, str]]:
        """Add or replace targets by Id; returns the failed entries (always none here)."""
        self._check_bus(bus)
        checked = {target.id: target for target in map(self._target, targets)}
        with self._store.transaction():
            self._require(rule_name)
            ids = {target.id for target in self._store.targets(rule_name)} | checked.keys()
            if len(ids) > MAX_TARGETS:
                raise LimitExceeded(
                    f"The requested resource exceeds the maximum number allowed: a rule has at "
                    f"most {MAX_TARGETS} targets."
                )
            self._store.put_targets(rule_name, list(checked.values()))
        return []

    def remove_targets(
        self, rule_name: str, ids: Sequence[str], bus: str | None = None
    ) -> list[dict[str, str]]:
        """Ids the rule does not have are ignored; returns the failed entries (none)."""
        self._check_bus(bus)
        with self._store.transaction():
            self._require(rule_name)
            self._store.remove_targets(rule_name, ids)
        return []

    def list_targets(
        self, rule_name: str, bus: str | None, token: str | None, limit: int | None
    ) -> tuple[list[Target], str | None]:
        self._check_bus(bus)
        self._require(rule_name)
        after = _after(token)
        size = min(limit or PAGE_MAX, PAGE_MAX)
        targets = [t for t in self._store.targets(rule_name) if after is None or t.id > after]
        return _page(targets[: size + 1], size, lambda target: target.id)

    def rule_names_by_target(
        self, arn: str, bus: str | None, token: str | None, limit: int | None
    ) -> tuple[list[str], str | None]:
        self._check_bus(bus)
        size = min(limit or PAGE_MAX, PAGE_MAX)
        names = self._store.rules_with_target(arn, _after(token), size + 1)
        return _page(names, size, lambda name: name)

    # ------------------------------------------------------------------ tags

    def _rule_for_arn(self, arn: str) -> Rule:
        match = _RULE_ARN.fullmatch(arn)
        if match is None:
            raise ResourceNotFound(f"Lamina keeps tags on rules only, and {arn} is not a rule ARN.")
        if (match["region"], match["account"]) != (self._account.region, self._account.account_id):
            raise ResourceNotFound(
                f"Rule {match['name']} does not exist on EventBus {DEFAULT_BUS}."
            )
        return self._require(match["name"])

    def tag(self, arn: str, tags: Iterable[Mapping[str, str]]) -> None:
        with self._store.transaction():
            rule = self._rule_for_arn(arn)
            self._store.put(replace(rule, tags={**rule.tags, **_tags(tags)}))

    def untag(self, arn: str, keys: Iterable[str]) -> None:
        removed = set(keys)
        with self._store.transaction():
            rule = self._rule_for_arn(arn)
            kept = {key: value for key, value in rule.tags.items() if key not in removed}
            self._store.put(replace(rule, tags=kept))

    def tags(self, arn: str) -> dict[str, str]:
        return self._rule_for_arn(arn).tags
