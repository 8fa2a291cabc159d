"""What a scheduled rule sends its targets: AWS's scheduled event, or the target's own input.

A target with `Input` gets that text verbatim; with `InputPath`, the part of the event the path
selects; otherwise the event itself:
`{"version":"0","id":…,"detail-type":"Scheduled Event","source":"aws.events","account":…,
"time":"…Z","region":…,"resources":[rule ARN],"detail":{}}`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from lamina.arns import Account
from lamina.model.rules import Target

DETAIL_TYPE = "Scheduled Event"
SOURCE = "aws.events"

# `$`, then `.name`, `['name']` or `[index]` steps: the JsonPath subset InputPath needs.
_STEP = re.compile(r"\.([A-Za-z0-9_$@-]+)|\['([^']*)'\]|\[\"([^\"]*)\"\]|\[([0-9]+)\]")


def event_time(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(event_id: str, account: Account, rule_arn: str, tick: int) -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account.account_id,
        "time": event_time(tick),
        "region": account.region,
        "resources": [rule_arn],
        "detail": {},
    }


def compile_path(path: str) -> list[str | int]:
    """The steps of an InputPath; raises ValueError for anything else."""
    if not path.startswith("$"):
        raise ValueError(f"{path!r} does not start with $")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise ValueError(f"{path!r} is not a JsonPath this supports")
        name = match[1] or match[2] or match[3]
        steps.append(int(match[4]) if match[4] is not None else name or "")
        position = match.end()
    return steps


def select(path: str, event: Any) -> Any:
    """The value at `path`; None (JSON null) where the event has nothing there."""
    value = event
    for step in compile_path(path):
        in_list = isinstance(step, int) and isinstance(value, list) and step < len(value)
        in_object = isinstance(step, str) and isinstance(value, dict) and step in value
        if not (in_list or in_object):
            return None
        value = value[step]
    return value


def target_payload(target: Target, event: dict[str, Any]) -> bytes:
    if target.input is not None:
        return target.input.encode()
    if target.input_path is not None:
        return orjson.dumps(select(target.input_path, event))
    return orjson.dumps(event)
