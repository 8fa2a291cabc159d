"""FilterCriteria: which records of a batch reach the function.

A mapping's patterns are ORed; each is an EventBridge pattern (`lamina.events.patterns`)
matched against the record as the function would receive it, with the source's data key
(SQS `body`, Kinesis and MQ `data`, DynamoDB `dynamodb`) in decoded form: a JSON body is
matched as the object it holds, any other body as its text, so a JSON pattern never matches
a plain-text message (and a plain pattern never matches a JSON one). Records that match no
pattern are consumed without an invocation: SQS deletes them, streams move past them, MQ
acks them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import orjson

from lamina.events.patterns import EventPattern, compile_pattern

T = TypeVar("T")

# A record that has no readable value under the data key: patterns on it never match.
_UNREADABLE = object()


def json_or_text(text: str) -> Any:
    """A message body as filters see it: the JSON value it holds, else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def json_only(data: bytes | str) -> Any:
    """A stream record's data as filters see it: the JSON value it holds; unreadable (no
    pattern on `data` matches) when it is not JSON, as Lambda treats non-JSON stream data."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _UNREADABLE


def json_base64(data: str) -> Any:
    """Base64 data (Kinesis, MQ) as filters see it: the JSON it decodes to, else unreadable."""
    try:
        return json_only(base64.b64decode(data, validate=True))
    except ValueError:
        return _UNREADABLE


class RecordFilter:
    """The mapping's FilterCriteria; with no patterns every record passes."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns: list[EventPattern] = [compile_pattern(pattern) for pattern in patterns]

    @property
    def active(self) -> bool:
        return bool(self._patterns)

    def matches(self, view: Mapping[str, Any]) -> bool:
        return any(pattern.matches(view) for pattern in self._patterns)

    def split(
        self,
        records: list[T],
        view: Callable[[T], Mapping[str, Any]],
    ) -> tuple[list[T], list[T]]:
        """(kept, filtered out) records, each list in the batch's order."""
        if not self._patterns:
            return records, []
        kept: list[T] = []
        dropped: list[T] = []
        for record in records:
            (kept if self.matches(view(record)) else dropped).append(record)
        return kept, dropped


def with_data(record: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """The record with its data key replaced by the decoded value (left out if unreadable,
    so that a pattern on it does not match)."""
    view = dict(record)
    if value is _UNREADABLE:
        view.pop(key, None)
    else:
        view[key] = value
    return view
