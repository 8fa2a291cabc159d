"""What a rule sends its targets: the event as EventBridge delivers it, or the target's input.

The event, a scheduled one or one put on a bus with PutEvents:
`{"version":"0","id":…,"detail-type":…,"source":…,"account":…,"time":"…Z","region":…,
"resources":[…],"detail":{…}}` (a scheduled event has `Scheduled Event`, `aws.events`, the
rule's ARN as its one resource and an empty detail).

A target with `Input` gets that text verbatim; with `InputPath`, the part of the event the
path selects; with `InputTransformer`, its template with each `<placeholder>` filled in (see
`transform`); otherwise the event itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from lamina.arns import Account
from lamina.model.rules import Target

DETAIL_TYPE = "Scheduled Event"
SOURCE = "aws.events"

# `$`, then `.name`, `['name']` or `[index]` steps: the JsonPath subset InputPath and the
# InputPathsMap of an InputTransformer take.
_STEP = re.compile(r"\.([A-Za-z0-9_$@/-]+)|\['([^']*)'\]|\[\"([^\"]*)\"\]|\[([0-9]+)\]")

# What an InputTemplate treats as a placeholder: `<name>`, with the characters a key of
# InputPathsMap may have, and the dots of the predefined variables.
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")

# Predefined InputTemplate variables, reserved names an InputPathsMap may not define.
RULE_ARN = "aws.events.rule-arn"
RULE_NAME = "aws.events.rule-name"
INGESTION_TIME = "aws.events.event.ingestion-time"
ORIGINAL_EVENT = "aws.events.event"
ORIGINAL_EVENT_JSON = "aws.events.event.json"
PREDEFINED = frozenset({RULE_ARN, RULE_NAME, INGESTION_TIME, ORIGINAL_EVENT, ORIGINAL_EVENT_JSON})


def event_time(moment: float) -> str:
    return datetime.fromtimestamp(int(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ingestion_time(moment: float) -> str:
    """When EventBridge took the event in: ISO 8601 with milliseconds."""
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def scheduled_event(event_id: str, account: Account, rule_arn: str, tick: int) -> dict[str, Any]:
    return bus_event(event_id, account, SOURCE, DETAIL_TYPE, {}, [rule_arn], tick)


def bus_event(
    event_id: str,
    account: Account,
    source: str,
    detail_type: str,
    detail: Any,
    resources: Sequence[str],
    moment: float,
) -> dict[str, Any]:
    """An event as EventBridge hands it to targets, its members in EventBridge's order."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": detail_type,
        "source": source,
        "account": account.account_id,
        "time": event_time(moment),
        "region": account.region,
        "resources": list(resources),
        "detail": detail,
    }


# ---------------------------------------------------------------------- JsonPath


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


_MISSING = object()


def _lookup(path: str, event: Any) -> Any:
    """The value at `path`, or `_MISSING` where the event has nothing there."""
    value = event
    for step in compile_path(path):
        in_list = isinstance(step, int) and isinstance(value, list) and step < len(value)
        in_object = isinstance(step, str) and isinstance(value, dict) and step in value
        if not (in_list or in_object):
            return _MISSING
        value = value[step]
    return value


def select(path: str, event: Any) -> Any:
    """The value at `path`; None (JSON null) where the event has nothing there."""
    value = _lookup(path, event)
    return None if value is _MISSING else value


# ---------------------------------------------------------------------- InputTransformer


def placeholders(template: str) -> list[str]:
    """The names of the `<placeholders>` in an InputTemplate, in order of appearance."""
    return _PLACEHOLDER.findall(template)


@dataclass(frozen=True)
class RuleContext:
    """What the predefined variables of an InputTemplate refer to."""

    rule_arn: str
    rule_name: str
    ingested_at: float  # epoch seconds


def _original_event(event: Mapping[str, Any], ingested: str) -> dict[str, Any]:
    """`<aws.events.event>`: the event without its detail, as EventBridge spells it then
    (`detailType`, and the ingestion time as its time; recorded on AWS)."""
    return {
        "id": event.get("id"),
        "account": event.get("account"),
        "detailType": event.get("detail-type"),
        "time": ingested,
        "source": event.get("source"),
        "region": event.get("region"),
        "resources": event.get("resources"),
        "version": event.get("version"),
    }


def _text(value: Any) -> str:
    """A value placed inside a JSON string or a plain-text template: strings as they are,
    anything else as JSON without its quotation marks (as EventBridge documents it)."""
    if value is _MISSING:
        return ""
    if isinstance(value, str):
        return value
    encoded = orjson.dumps(value).decode()
    return encoded.replace('"', "") if isinstance(value, dict | list) else encoded


def transform(
    transformer: Mapping[str, Any], event: Mapping[str, Any], context: RuleContext
) -> str:
    """The InputTemplate with its placeholders filled in from the event.

    A template that is a JSON object or array gets each placeholder outside a string as a
    JSON value (a string quoted, a value the event lacks as `""`, as recorded on AWS) and
    each one inside a string as text. Any other template (a JSON string, plain text) gets
    text everywhere. `<aws.events.event>` and `<aws.events.event.json>` are JSON wherever
    they stand; EventBridge does not escape them either.
    """
    template: str = transformer["InputTemplate"]
    paths: Mapping[str, str] = transformer.get("InputPathsMap") or {}
    ingested = ingestion_time(context.ingested_at)
    values: dict[str, Any] = {name: _lookup(path, event) for name, path in paths.items()}
    values[RULE_ARN] = context.rule_arn
    values[RULE_NAME] = context.rule_name
    values[INGESTION_TIME] = ingested
    raw = {
        ORIGINAL_EVENT: lambda: orjson.dumps(_original_event(event, ingested)).decode(),
        ORIGINAL_EVENT_JSON: lambda: orjson.dumps(event).decode(),
    }
    json_mode = template.lstrip()[:1] in ("{", "[")
    out: list[str] = []
    in_string = False
    position = 0
    while position < len(template):
        char = template[position]
        if json_mode and char == "\\" and in_string:
            out.append(template[position : position + 2])
            position += 2
            continue
        if json_mode and char == '"':
            in_string = not in_string
        elif char == "<":
            match = _PLACEHOLDER.match(template, position)
            if match is not None and (match[1] in values or match[1] in raw):
                name = match[1]
                if name in raw:
                    out.append(raw[name]())
                elif json_mode and not in_string:
                    value = values[name]
                    out.append('""' if value is _MISSING else orjson.dumps(value).decode())
                else:
                    out.append(_text(values[name]))
                position = match.end()
                continue
        out.append(char)
        position += 1
    return "".join(out)


def target_payload(
    target: Target, event: dict[str, Any], context: RuleContext | None = None
) -> bytes:
    if target.input is not None:
        return target.input.encode()
    if target.input_path is not None:
        return orjson.dumps(select(target.input_path, event))
    transformer = target.input_transformer
    if transformer is not None and context is not None:
        return transform(transformer, event, context).encode()
    return orjson.dumps(event)
