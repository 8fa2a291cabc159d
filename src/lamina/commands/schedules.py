"""`lamina schedule`, `lamina schedules` and `lamina unschedule`: schedules without the AWS CLI.

They talk to a running Lamina over its API, exactly as the AWS CLI would: PutRule, an
AddPermission for events.amazonaws.com (which AWS requires, and Lamina enforces, before a
rule may invoke a function), then PutTargets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from typing import Any

from lamina.settings import Settings

COMMANDS = ("schedule", "schedules", "unschedule")
TARGET_ID = "lamina-schedule"
_NAME_MAX = 64


def add_parsers(commands: Any) -> None:
    """Add the subcommands to `lamina`'s argparse subparsers."""
    schedule = commands.add_parser(
        "schedule", help="run a function on a schedule (an EventBridge rule)"
    )
    schedule.add_argument("function", help="a function name or ARN, optionally with a qualifier")
    schedule.add_argument("expression", help="e.g. 'rate(5 minutes)' or 'cron(0 9 ? * MON-FRI *)'")
    schedule.add_argument("--name", help="the rule's name (default: FUNCTION-schedule)")
    schedule.add_argument("--input", help="JSON to send instead of the scheduled event")
    listing = commands.add_parser("schedules", help="list scheduled rules and their targets")
    unschedule = commands.add_parser("unschedule", help="delete a scheduled rule")
    unschedule.add_argument("name", help="the rule's name")
    for parser in (schedule, listing, unschedule):
        parser.add_argument("--endpoint", help="Lamina's URL (default: from LAMINA_HOST/PORT)")
    listing.add_argument("--json", action="store_true", help="print JSON")


def statement_id(rule: str) -> str:
    return f"{TARGET_ID}-{re.sub(r'[^a-zA-Z0-9_-]', '-', rule)}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    import boto3  # Lazy: only these subcommands need an AWS client.
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint = args.endpoint or settings.endpoint

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=settings.region,
            # Without authentication Lamina accepts any credentials; these only sign.
            aws_access_key_id=settings.access_key_id or "lamina",
            aws_secret_access_key=settings.secret_access_key or "lamina",
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    commands = {"schedule": _schedule, "schedules": _list, "unschedule": _unschedule}
    try:
        return commands[args.command](args, client("events"), client("lambda"))
    except ClientError as error:
        details = error.response.get("Error", {})
        print(f"lamina: {details.get('Code')}: {details.get('Message')}", file=sys.stderr)
    except BotoCoreError as error:
        print(f"lamina: cannot reach Lamina at {endpoint}: {error}", file=sys.stderr)
    return 1


def _target(function: str, configuration: dict[str, Any]) -> tuple[str, str | None]:
    """The target ARN and qualifier for what the user typed (`name`, `name:alias`, an ARN)."""
    unqualified = configuration["FunctionArn"].split(":function:")[0] + (
        f":function:{configuration['FunctionName']}"
    )
    parts = function.split(":")
    qualifier = parts[7] if function.startswith("arn:") and len(parts) > 7 else None
    if not function.startswith("arn:") and len(parts) == 2:
        qualifier = parts[1]
    return (f"{unqualified}:{qualifier}" if qualifier else unqualified), qualifier


def _schedule(args: argparse.Namespace, events: Any, lambda_: Any) -> int:
    configuration = lambda_.get_function(FunctionName=args.function)["Configuration"]
    target_arn, qualifier = _target(args.function, configuration)
    name = args.name or f"{configuration['FunctionName']}-schedule"[:_NAME_MAX]
    rule_arn = events.put_rule(
        Name=name,
        ScheduleExpression=args.expression,
        Description=f"lamina schedule {args.function}",
    )["RuleArn"]
    permission: dict[str, Any] = {
        "FunctionName": configuration["FunctionName"],
        "StatementId": statement_id(name),
        "Action": "lambda:InvokeFunction",
        "Principal": "events.amazonaws.com",
        "SourceArn": rule_arn,
    }
    if qualifier:
        permission["Qualifier"] = qualifier
    # A conflict means an earlier `lamina schedule` of this rule granted it already.
    with contextlib.suppress(lambda_.exceptions.ResourceConflictException):
        lambda_.add_permission(**permission)
    target: dict[str, Any] = {"Id": TARGET_ID, "Arn": target_arn}
    if args.input is not None:
        target["Input"] = args.input
    events.put_targets(Rule=name, Targets=[target])
    print(rule_arn)
    return 0


def _rules(events: Any) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for page in events.get_paginator("list_rules").paginate():
        rules.extend(page["Rules"])
    for rule in rules:
        rule["Targets"] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    return rules


def _list(args: argparse.Namespace, events: Any, lambda_: Any) -> int:
    rules = [rule for rule in _rules(events) if rule.get("ScheduleExpression")]
    if args.json:
        print(json.dumps(rules, indent=2))
        return 0
    if not rules:
        print("No scheduled rules.")
        return 0
    print(f"{'RULE':<40} {'STATE':<9} {'SCHEDULE':<32} TARGETS")
    for rule in rules:
        targets = ", ".join(target["Arn"].split(":function:")[-1] for target in rule["Targets"])
        print(
            f"{rule['Name']:<40} {rule['State']:<9} {rule['ScheduleExpression']:<32} "
            f"{targets or '-'}"
        )
    return 0


def _unschedule(args: argparse.Namespace, events: Any, lambda_: Any) -> int:
    targets = events.list_targets_by_rule(Rule=args.name)["Targets"]
    if targets:
        events.remove_targets(Rule=args.name, Ids=[target["Id"] for target in targets])
    for target in targets:
        if target["Id"] != TARGET_ID:
            continue
        # Not found: the function or the statement is gone already.
        with contextlib.suppress(lambda_.exceptions.ResourceNotFoundException):
            lambda_.remove_permission(
                FunctionName=target["Arn"], StatementId=statement_id(args.name)
            )
    events.delete_rule(Name=args.name)
    print(f"Deleted rule {args.name}")
    return 0
