"""Handlers for EventBridge's operations (`X-Amz-Target: AWSEvents.<Operation>`): event
buses, rules, targets, tags and PutEvents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio.to_thread
import orjson

from lamina.api.context import Handler
from lamina.errors import ValidationError
from lamina.events.patterns import compile_pattern
from lamina.model.rules import EventBus, Rule
from lamina.schedules.bus import EventRouter
from lamina.schedules.rules import RuleService, check_pattern
from lamina.store.protocols import AsyncEvent

# Queues a PutEvents' invocations in one commit; returns once they are durable.
Accept = Callable[[Sequence[AsyncEvent]], Awaitable[None]]

_BUS_EXTRAS = ("KmsKeyIdentifier", "DeadLetterConfig", "LogConfig")


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def _failed(entries: list[dict[str, str]]) -> dict[str, Any]:
    return {"FailedEntryCount": len(entries), "FailedEntries": entries}


def operations(rules: RuleService, router: EventRouter, accept: Accept) -> dict[str, Handler]:
    return {
        **_bus_operations(rules),
        **_event_operations(router, accept),
        **_rule_operations(rules),
    }


def _bus_operations(rules: RuleService) -> dict[str, Handler]:
    def bus_view(bus: EventBus, *, extras: bool) -> dict[str, Any]:
        members: dict[str, Any] = {
            "Name": bus.name,
            "Arn": rules.bus_arn(bus.name),
            "Description": bus.description,
            "CreationTime": bus.created,
            "LastModifiedTime": bus.modified,
        }
        if extras:
            members.update(bus.extras)
        return {key: value for key, value in members.items() if value is not None}

    # ------------------------------------------------------------------ buses

    def create_event_bus(params: dict[str, Any]) -> dict[str, Any]:
        bus = rules.create_bus(
            params["Name"],
            event_source=params.get("EventSourceName"),
            description=params.get("Description"),
            tags=params.get("Tags"),
            extras={key: params[key] for key in _BUS_EXTRAS if key in params},
        )
        result: dict[str, Any] = {"EventBusArn": rules.bus_arn(bus.name)}
        if bus.description is not None:
            result["Description"] = bus.description
        result.update(bus.extras)
        return result

    def update_event_bus(params: dict[str, Any]) -> dict[str, Any]:
        bus = rules.update_bus(
            params.get("Name"),
            description=params.get("Description"),
            extras={key: params[key] for key in _BUS_EXTRAS if key in params},
        )
        result = {"Arn": rules.bus_arn(bus.name), "Name": bus.name}
        if bus.description is not None:
            result["Description"] = bus.description
        return {**result, **bus.extras}

    def delete_event_bus(params: dict[str, Any]) -> None:
        rules.delete_bus(params["Name"])

    def describe_event_bus(params: dict[str, Any]) -> dict[str, Any]:
        return bus_view(rules.describe_bus(params.get("Name")), extras=True)

    def list_event_buses(params: dict[str, Any]) -> dict[str, Any]:
        page, token = rules.list_buses(
            params.get("NamePrefix"), params.get("NextToken"), params.get("Limit")
        )
        result: dict[str, Any] = {"EventBuses": [bus_view(bus, extras=False) for bus in page]}
        if token:
            result["NextToken"] = token
        return result

    return {
        "CreateEventBus": create_event_bus,
        "UpdateEventBus": update_event_bus,
        "DeleteEventBus": delete_event_bus,
        "DescribeEventBus": describe_event_bus,
        "ListEventBuses": list_event_buses,
    }


def _event_operations(router: EventRouter, accept: Accept) -> dict[str, Handler]:
    async def put_events(params: dict[str, Any]) -> dict[str, Any]:
        # Matching and permission checks read the store: off the event loop.
        plan = await anyio.to_thread.run_sync(router.plan, params["Entries"])
        # Durable before the answer: an event with an EventId is never lost.
        await accept(plan.invocations)
        router.report(plan)
        return {"FailedEntryCount": plan.failed_count, "Entries": plan.entries}

    def test_event_pattern(params: dict[str, Any]) -> dict[str, Any]:
        check_pattern(params["EventPattern"])
        try:
            event = orjson.loads(params["Event"])
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            raise ValidationError("Parameter Event is not valid.")
        return {"Result": compile_pattern(params["EventPattern"]).matches(event)}

    return {"PutEvents": put_events, "TestEventPattern": test_event_pattern}


def _rule_operations(rules: RuleService) -> dict[str, Handler]:
    def view(rule: Rule) -> dict[str, Any]:
        members = {
            "Name": rule.name,
            "Arn": rules.arn(rule.name, rule.bus),
            "EventPattern": rule.event_pattern,
            "ScheduleExpression": rule.schedule_expression,
            "State": rule.state,
            "Description": rule.description,
            "RoleArn": rule.role_arn,
            "EventBusName": rule.bus,
        }
        return {key: value for key, value in members.items() if value is not None}

    def put_rule(params: dict[str, Any]) -> dict[str, Any]:
        arn = rules.put_rule(
            params["Name"],
            schedule_expression=params.get("ScheduleExpression"),
            event_pattern=params.get("EventPattern"),
            state=params.get("State"),
            description=params.get("Description"),
            role_arn=params.get("RoleArn"),
            tags=params.get("Tags"),
            bus=params.get("EventBusName"),
        )
        return {"RuleArn": arn}

    def describe_rule(params: dict[str, Any]) -> dict[str, Any]:
        rule = rules.describe(params["Name"], params.get("EventBusName"))
        return {**view(rule), "CreatedBy": rules.account_id}

    def list_rules(params: dict[str, Any]) -> dict[str, Any]:
        page, token = rules.list_rules(
            params.get("NamePrefix"),
            params.get("EventBusName"),
            params.get("NextToken"),
            params.get("Limit"),
        )
        result: dict[str, Any] = {"Rules": [view(rule) for rule in page]}
        if token:
            result["NextToken"] = token
        return result

    def delete_rule(params: dict[str, Any]) -> None:
        # `Force` only matters for rules managed by other AWS services; Lamina has none.
        rules.delete_rule(params["Name"], params.get("EventBusName"))

    def enable_rule(params: dict[str, Any]) -> None:
        rules.set_state(params["Name"], "ENABLED", params.get("EventBusName"))

    def disable_rule(params: dict[str, Any]) -> None:
        rules.set_state(params["Name"], "DISABLED", params.get("EventBusName"))

    def put_targets(params: dict[str, Any]) -> dict[str, Any]:
        return _failed(
            rules.put_targets(params["Rule"], params["Targets"], params.get("EventBusName"))
        )

    def remove_targets(params: dict[str, Any]) -> dict[str, Any]:
        return _failed(
            rules.remove_targets(params["Rule"], params["Ids"], params.get("EventBusName"))
        )

    def list_targets_by_rule(params: dict[str, Any]) -> dict[str, Any]:
        page, token = rules.list_targets(
            params["Rule"], params.get("EventBusName"), params.get("NextToken"), params.get("Limit")
        )
        result: dict[str, Any] = {"Targets": [target.doc for target in page]}
        if token:
            result["NextToken"] = token
        return result

    def list_rule_names_by_target(params: dict[str, Any]) -> dict[str, Any]:
        names, token = rules.rule_names_by_target(
            params["TargetArn"],
            params.get("EventBusName"),
            params.get("NextToken"),
            params.get("Limit"),
        )
        result: dict[str, Any] = {"RuleNames": names}
        if token:
            result["NextToken"] = token
        return result

    def tag_resource(params: dict[str, Any]) -> None:
        rules.tag(params["ResourceARN"], params["Tags"])

    def untag_resource(params: dict[str, Any]) -> None:
        rules.untag(params["ResourceARN"], params["TagKeys"])

    def list_tags_for_resource(params: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": _tag_list(rules.tags(params["ResourceARN"]))}

    return {
        "PutRule": put_rule,
        "DescribeRule": describe_rule,
        "ListRules": list_rules,
        "DeleteRule": delete_rule,
        "EnableRule": enable_rule,
        "DisableRule": disable_rule,
        "PutTargets": put_targets,
        "RemoveTargets": remove_targets,
        "ListTargetsByRule": list_targets_by_rule,
        "ListRuleNamesByTarget": list_rule_names_by_target,
        "TagResource": tag_resource,
        "UntagResource": untag_resource,
        "ListTagsForResource": list_tags_for_resource,
    }
