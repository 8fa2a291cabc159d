"""Saved test events: the named events the console's Test tab keeps per function.

AWS's console keeps private test events per function (up to 10 of them) and shareable ones
in an EventBridge schema registry; Lamina keeps one kind, in its own store, with the
console's rules: a name of 1 to 25 letters, digits, dots, hyphens and underscores, and a
body that is JSON and no larger than a synchronous invocation's payload (6 MB).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import orjson

from lamina.constants import SYNC_PAYLOAD_MAX_BYTES
from lamina.control.context import Domain
from lamina.errors import InvalidParameterValue, ResourceNotFound
from lamina.store.protocols import SavedEvent

MAX_EVENTS_PER_FUNCTION = 10
_NAME = re.compile(r"[A-Za-z0-9._-]{1,25}")


class SavedEventService:
    """Save, list, read and delete a function's saved test events."""

    def __init__(self, domain: Domain, clock: Callable[[], float] = time.time) -> None:
        self._store = domain.stores.test_events
        self._functions = domain.stores.functions
        self._account = domain.account
        self._clock = clock

    def save(self, function: str, name: str, body: str) -> SavedEvent:
        """Create the event, or replace the one of that name."""
        check_name(name)
        check_body(body)
        event = SavedEvent(function, name, body, self._clock())
        # Serialised with other saves, so two at once cannot both take the tenth place.
        with self._store.transaction():
            if self._store.get(function, name) is None:
                if self._functions.get(function) is None:
                    raise self._function_not_found(function)
                if self._store.count(function) >= MAX_EVENTS_PER_FUNCTION:
                    raise InvalidParameterValue(
                        f"Function {function} already has {MAX_EVENTS_PER_FUNCTION} saved test "
                        "events, the most it may have. Delete one first."
                    )
            if not self._store.put(event):
                raise self._function_not_found(function)
        return event

    def list(self, function: str) -> list[SavedEvent]:
        self._require_function(function)
        return self._store.list(function)

    def get(self, function: str, name: str) -> SavedEvent:
        event = self._store.get(function, name)
        if event is None:
            self._require_function(function)
            raise _event_not_found(function, name)
        return event

    def delete(self, function: str, name: str) -> None:
        if not self._store.delete(function, name):
            self._require_function(function)
            raise _event_not_found(function, name)

    def _require_function(self, function: str) -> None:
        if self._functions.get(function) is None:
            raise self._function_not_found(function)

    def _function_not_found(self, function: str) -> ResourceNotFound:
        return ResourceNotFound(f"Function not found: {self._account.function_arn(function)}")


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidParameterValue(
            "A test event's name must be 1 to 25 characters: letters, digits, dots (.), "
            "hyphens (-) and underscores (_)."
        )


def check_body(body: str) -> None:
    size = len(body.encode("utf-8"))
    if size > SYNC_PAYLOAD_MAX_BYTES:
        raise InvalidParameterValue(
            f"The test event is {size} bytes; it may be at most {SYNC_PAYLOAD_MAX_BYTES} bytes "
            "(a synchronous invocation's payload)."
        )
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidParameterValue(f"The test event is not valid JSON: {error}") from None


def _event_not_found(function: str, name: str) -> ResourceNotFound:
    return ResourceNotFound(f"Function {function} has no saved test event named {name}.")
