"""Handlers for EventBridge's rule operations (`X-Amz-Target: AWSEvents.<Operation>`)."""

from __future__ import annotations

from typing import Any

from lamina.api.context import Handler
from lamina.model.rules import DEFAULT_BUS, Rule
from lamina.schedules.rules import RuleService


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def _failed(entries: list[dict[str, str]]) -> dict[str, Any]:
    return {"FailedEntryCount": len(entries), "FailedEntries": entries}


def operations(rules: RuleService) -> dict[str, Handler]:
    def view(rule: Rule) -> dict[str, Any]:
        members = {
            "Name": rule.name,
            "Arn": rules.arn(rule.name),
            "EventPattern": rule.event_pattern,
            "ScheduleExpression": rule.schedule_expression,
            "State": rule.state,
            "Description": rule.description,
            "RoleArn": rule.role_arn,
            "EventBusName": DEFAULT_BUS,
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
