"""Asynchronous-invocation settings: retries, event age and destinations, per qualifier."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lamina.arns import FunctionRef
from lamina.constants import LATEST
from lamina.control.context import Domain
from lamina.control.functions import FunctionService, merge_qualifier
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.errors import InvalidParameterValue, ResourceNotFound
from lamina.model.functions import Document

if TYPE_CHECKING:
    from lamina.control.role_permissions import RolePermissions

KIND = "event-invoke"
DEFAULT_RETRY_ATTEMPTS = 2
DEFAULT_EVENT_AGE_SECONDS = 21600

_PARTITION = r"arn:aws[a-zA-Z-]*"
_REGION = r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d"
# Destination kinds and the ARNs that name one. FIFO queues and topics cannot be destinations.
_DESTINATIONS: dict[str, re.Pattern[str]] = {
    "sqs": re.compile(rf"^{_PARTITION}:sqs:{_REGION}:\d{{12}}:[A-Za-z0-9_-]{{1,80}}$"),
    "sns": re.compile(rf"^{_PARTITION}:sns:{_REGION}:\d{{12}}:[A-Za-z0-9_-]{{1,256}}$"),
    "lambda": re.compile(
        rf"^{_PARTITION}:lambda:{_REGION}:\d{{12}}:function:[A-Za-z0-9_-]{{1,64}}"
        r"(?::(?:\$LATEST|[A-Za-z0-9_-]{1,128}))?$"
    ),
    "events": re.compile(rf"^{_PARTITION}:events:{_REGION}:\d{{12}}:event-bus/[A-Za-z0-9/._-]+$"),
    "s3": re.compile(rf"^{_PARTITION}:s3:::[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]$"),
}
_ON_SUCCESS_KINDS = ("sqs", "sns", "lambda", "events")
_ON_FAILURE_KINDS = (*_ON_SUCCESS_KINDS, "s3")
_FUNCTION_MISSING = "The function doesn't exist."


def destination_kind(arn: str) -> str | None:
    """Which kind of destination `arn` names: sqs, sns, lambda, events, s3; None if none."""
    for kind, pattern in _DESTINATIONS.items():
        if pattern.match(arn):
            return kind
    return None


def _valid_destination(arn: str | None, allowed: tuple[str, ...]) -> bool:
    return arn is None or destination_kind(arn) in allowed


@dataclass(frozen=True)
class EventInvokeConfig(Document):
    """How Lambda handles asynchronous events sent to one function qualifier."""

    function_name: str
    qualifier: str
    maximum_retry_attempts: int | None = None
    maximum_event_age_seconds: int | None = None
    on_success: str | None = None
    on_failure: str | None = None
    last_modified: float = field(default_factory=time.time)

    @property
    def retry_attempts(self) -> int:
        """Retries after a function error, with AWS's default when unset."""
        if self.maximum_retry_attempts is None:
            return DEFAULT_RETRY_ATTEMPTS
        return self.maximum_retry_attempts

    @property
    def event_age_seconds(self) -> int:
        """How long an event may wait before it is discarded, with AWS's default when unset."""
        if self.maximum_event_age_seconds is None:
            return DEFAULT_EVENT_AGE_SECONDS
        return self.maximum_event_age_seconds


@dataclass(frozen=True)
class EventInvokeSettings:
    """Fields a Put or Update request carries; for Update, None means "keep the stored value"."""

    maximum_retry_attempts: int | None = None
    maximum_event_age_seconds: int | None = None
    # Present only when the request named that condition; "" or None clears it.
    on_success: str | None = None
    on_failure: str | None = None
    has_on_success: bool = False
    has_on_failure: bool = False
    # Whether the request set anything at all (AWS refuses a Put or Update that sets nothing).
    given: bool = True

    @classmethod
    def from_request(cls, params: dict[str, Any]) -> EventInvokeSettings:
        destinations = params.get("DestinationConfig") or {}
        on_success = destinations.get("OnSuccess")
        on_failure = destinations.get("OnFailure")
        return cls(
            maximum_retry_attempts=params.get("MaximumRetryAttempts"),
            maximum_event_age_seconds=params.get("MaximumEventAgeInSeconds"),
            on_success=(on_success or {}).get("Destination") or None,
            on_failure=(on_failure or {}).get("Destination") or None,
            has_on_success=on_success is not None,
            has_on_failure=on_failure is not None,
            given=any(
                params.get(member) is not None
                for member in (
                    "MaximumRetryAttempts",
                    "MaximumEventAgeInSeconds",
                    "DestinationConfig",
                )
            ),
        )

    def check(self) -> None:
        if not self.given:
            raise InvalidParameterValue(
                "You must specify at least one of error handling or destination setting."
            )
        if _valid_destination(self.on_success, _ON_SUCCESS_KINDS) and _valid_destination(
            self.on_failure, _ON_FAILURE_KINDS
        ):
            return
        success = f"OnSuccess(destination={self.on_success})" if self.on_success else "null"
        failure = f"OnFailure(destination={self.on_failure})" if self.on_failure else "null"
        raise InvalidParameterValue(
            f"The provided destination config DestinationConfig(onSuccess={success}, "
            f"onFailure={failure}) is invalid."
        )


class EventInvokeConfigService:
    """Put/Update/Get/Delete/List of event-invoke configs, and the lookup async invokes use."""

    def __init__(
        self,
        domain: Domain,
        functions: FunctionService,
        role_permissions: RolePermissions | None = None,
    ) -> None:
        self._functions = functions
        self._store = domain.stores.functions
        self._account = domain.account
        # Enforced mode only: the function's role must allow writing to its destinations.
        self._roles = role_permissions

    def _target(self, ref: FunctionRef, qualifier: str | None) -> tuple[str, str]:
        """(function name, child key) after checking the function and qualifier exist."""
        try:
            resolved = self._functions.resolve(ref, qualifier)
        except ResourceNotFound:
            raise ResourceNotFound(_FUNCTION_MISSING) from None
        return resolved.record.name, resolved.qualifier or LATEST

    def _configured(self, ref: FunctionRef, qualifier: str | None) -> tuple[str, str]:
        """(function name, child key) of a config that must exist, which is all AWS checks:
        a missing function or qualifier is just a function without a config."""
        key = merge_qualifier(ref, qualifier) or LATEST
        if self._store.get(ref.name) is None or self._load(ref.name, key) is None:
            raise self._missing(ref.name, key)
        return ref.name, key

    def _check_destinations(self, name: str, settings: EventInvokeSettings) -> None:
        """A function destination must exist, and must not be the function itself."""
        for arn in (settings.on_success, settings.on_failure):
            if arn is None or destination_kind(arn) != "lambda":
                continue
            target = arn.split(":")[6]
            if target == name:
                raise InvalidParameterValue(
                    "You can't specify the function as a destination for itself."
                )
            if self._store.get(target) is None:
                raise InvalidParameterValue(f"The destination ARN {arn} is invalid.")

    def _check_role(
        self, ref: FunctionRef, qualifier: str | None, settings: EventInvokeSettings
    ) -> None:
        """Enforced mode: the role of the function (as qualified) must allow sending to each
        destination the request names."""
        if self._roles is None:
            return
        given = [
            settings.on_success if settings.has_on_success else None,
            settings.on_failure if settings.has_on_failure else None,
        ]
        if not any(given):
            return
        resolved = self._functions.resolve(ref, qualifier)
        self._roles.check_destinations(resolved.config.role, resolved.record.name, given)

    def _missing(self, name: str, key: str) -> ResourceNotFound:
        return ResourceNotFound(
            f"The function {self._account.function_arn(name, key)} doesn't have an "
            "EventInvokeConfig"
        )

    def _load(self, name: str, key: str) -> EventInvokeConfig | None:
        doc = self._store.get_child(name, KIND, key)
        return EventInvokeConfig.from_doc(doc) if doc is not None else None

    def put(
        self, ref: FunctionRef, qualifier: str | None, settings: EventInvokeSettings
    ) -> EventInvokeConfig:
        """Replace the whole config: anything the request leaves out is cleared."""
        settings.check()
        with self._store.transaction():
            name, key = self._target(ref, qualifier)
            self._check_destinations(name, settings)
            self._check_role(ref, qualifier, settings)
            config = EventInvokeConfig(
                function_name=name,
                qualifier=key,
                maximum_retry_attempts=settings.maximum_retry_attempts,
                maximum_event_age_seconds=settings.maximum_event_age_seconds,
                on_success=settings.on_success,
                on_failure=settings.on_failure,
            )
            self._store.put_child(name, KIND, key, config.to_doc())
            return config

    def update(
        self, ref: FunctionRef, qualifier: str | None, settings: EventInvokeSettings
    ) -> EventInvokeConfig:
        """Merge the given fields into the existing config."""
        settings.check()
        with self._store.transaction():
            name, key = self._target(ref, qualifier)
            current = self._load(name, key)
            if current is None:
                raise self._missing(name, key)
            self._check_destinations(name, settings)
            self._check_role(ref, qualifier, settings)
            config = replace(
                current,
                maximum_retry_attempts=_first(
                    settings.maximum_retry_attempts, current.maximum_retry_attempts
                ),
                maximum_event_age_seconds=_first(
                    settings.maximum_event_age_seconds, current.maximum_event_age_seconds
                ),
                on_success=settings.on_success if settings.has_on_success else current.on_success,
                on_failure=settings.on_failure if settings.has_on_failure else current.on_failure,
                last_modified=time.time(),
            )
            self._store.put_child(name, KIND, key, config.to_doc())
            return config

    def get(self, ref: FunctionRef, qualifier: str | None) -> EventInvokeConfig:
        name, key = self._configured(ref, qualifier)
        config = self._load(name, key)
        assert config is not None
        return config

    def delete(self, ref: FunctionRef, qualifier: str | None) -> None:
        with self._store.transaction():
            name, key = self._configured(ref, qualifier)
            self._store.delete_child(name, KIND, key)

    def list_configs(
        self, ref: FunctionRef, marker: str | None, max_items: int | None
    ) -> tuple[list[EventInvokeConfig], str | None]:
        try:
            record = self._functions.unqualified(ref, "ListFunctionEventInvokeConfigs")
        except ResourceNotFound:
            raise ResourceNotFound(_FUNCTION_MISSING) from None
        after = decode_marker(marker)
        configs = [
            EventInvokeConfig.from_doc(doc)
            for key, doc in self._store.list_children(record.name, KIND)
            if after is None or key > str(after)
        ]
        return take_page(configs, page_size(max_items), lambda config: config.qualifier)

    def effective(self, function_name: str, qualifier: str | None) -> EventInvokeConfig:
        """The settings an async event sent to `function_name[:qualifier]` runs under.

        As on AWS, the config is the one stored for the qualifier the caller invoked (an
        alias's own config, not its version's); with none stored, AWS's defaults apply.
        """
        key = qualifier or LATEST
        return self._load(function_name, key) or EventInvokeConfig(
            function_name=function_name, qualifier=key
        )


def _first(given: int | None, current: int | None) -> int | None:
    return given if given is not None else current
