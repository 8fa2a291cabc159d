"""Event source mappings: Create/Update/Delete/Get/List, validated and worded as AWS does.

The source kind comes from the EventSourceArn (or `SelfManagedEventSource` for Kafka); each
kind takes its own parameters, with its own defaults (`_DEFAULTS`). Whether the queue or
stream exists is asked of the source's own API through `Domain.event_sources`; what the
function's timeout and the queue's visibility timeout allow is checked here.

The state machine: a create is stored Creating, an update Updating (or Enabling/Disabling
when it toggles `Enabled`), a delete Deleting; the API answers that state, and `settle`
then moves the mapping to Enabled or Disabled (or removes it) before the response leaves,
as function activation does (`lamina.control.states`). A transition a crash interrupted is
finished at start (`finish_transitions`). With `settle_now=False` transitions stay until
someone else (a poller supervisor) settles them.

Pollers record what they see through the store: `set_state`, `record_result` and the shard
checkpoints.
"""

from __future__ import annotations

import time
import uuid as uuids
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from lamina.arns import FunctionRef
from lamina.control.context import Domain
from lamina.control.event_invoke import destination_kind
from lamina.control.event_sources import SourceNotFound, SourceRefused, SourceUnreachable
from lamina.control.functions import FunctionService
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.control.role_permissions import RolePermissions
from lamina.control.tags import check_tags
from lamina.errors import (
    InvalidParameterValue,
    ResourceConflict,
    ResourceInUse,
    ResourceNotFound,
)
from lamina.model.mappings import (
    CREATING,
    DELETING,
    DISABLED,
    DISABLING,
    DYNAMODB,
    ENABLED,
    ENABLING,
    KAFKA,
    KINESIS,
    MAPPING_NOT_FOUND,
    MQ,
    NO_RECORDS_PROCESSED,
    SETTLED_STATES,
    SQS,
    STREAM_KINDS,
    TRANSITIONAL_STATES,
    UPDATING,
    USER_ACTION,
    USER_INITIATED,
    EventSourceMapping,
    broker_name,
    mapping_arn,
)

# ListEventSourceMappings hands out at most this many per page.
LIST_PAGE_MAX = 100
MAX_FILTERS = 5
SQS_WINDOWLESS_BATCH_MAX = 10
AT_TIMESTAMP = "AT_TIMESTAMP"
ON_FAILURE_KINDS: dict[str, tuple[str, ...]] = {
    KINESIS: ("sqs", "sns", "s3"),
    DYNAMODB: ("sqs", "sns", "s3"),
    KAFKA: ("sqs", "sns", "s3"),
}

# ------------------------------------------------------------------ AWS's texts

NOT_FOUND = MAPPING_NOT_FOUND
UNRECOGNIZED_SOURCE = "Unrecognized event source."
FUNCTION_MISSING = "Function does not exist"
INVALID_FILTER = "Invalid filter pattern definition."
WINDOW_REQUIRED = (
    "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
    "greater than 10"
)
FIFO_WINDOW = "Batching window is not supported for FIFO queues"
SQS_STARTING_POSITION = "StartingPosition is not valid for SQS event sources."
UPDATE_IN_USE = "Cannot update the event source mapping because it is in use."
DELETE_IN_USE = "Cannot delete the event source mapping because it is in use."
QUEUE_MISSING = (
    "Error occurred while ReceiveMessage. SQS Error Code: "
    "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does "
    "not exist."
)


def unsupported(parameter: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Unsupported {parameter} parameter for given event source mapping type."
    )


def member_missing(member: str) -> InvalidParameterValue:
    """AWS words a missing member a kind needs as a validation error, under its own code."""
    return InvalidParameterValue(
        f"1 validation error detected: Value null at '{member}' failed to satisfy "
        "constraint: Member must not be null."
    )


def duplicate(mapping: EventSourceMapping) -> ResourceConflict:
    """AWS's 409 for a second mapping of one source to one function (the spaces inside the
    quotes are AWS's)."""
    source, name = mapping.event_source_arn, mapping.function_name
    if mapping.kind == KAFKA:
        # AWS's wording for MSK; a self-managed source is named by its bootstrap servers.
        servers, topics = ",".join(mapping.bootstrap_servers), ",".join(mapping.topics)
        return ResourceConflict(
            f'An event source mapping with bootstrap servers ("{servers}"), function '
            f'("{mapping.function_arn}") and topics ("{topics}") already exists. Please '
            f"update or delete the existing mapping with UUID {mapping.uuid}"
        )
    if mapping.kind == SQS:
        return ResourceConflict(
            f'An event source mapping with SQS arn (" {source} ") and function (" {name} ") '
            "already exists. Please update or delete the existing mapping with UUID "
            f"{mapping.uuid}"
        )
    return ResourceConflict(
        f'The event source arn (" {source} ") and function (" {name} ") provided mapping '
        "already exists. Please update or delete the existing mapping with UUID "
        f"{mapping.uuid}"
    )


# --------------------------------------------------------------- source kinds


def source_kind(arn: str | None, self_managed: bool) -> str:
    """The kind of source an EventSourceArn (or a SelfManagedEventSource) names."""
    if self_managed:
        if arn is not None:
            raise InvalidParameterValue(
                "EventSourceArn and SelfManagedEventSource cannot be given together: a "
                "self-managed Kafka source is named by its bootstrap servers."
            )
        return KAFKA
    if arn is None:
        raise InvalidParameterValue(UNRECOGNIZED_SOURCE)
    parts = arn.split(":", 5)
    service, resource = (parts[2], parts[5]) if len(parts) == 6 else ("", "")
    if service == "sqs" and resource and "/" not in resource:
        return SQS
    if service == "kinesis" and resource.startswith("stream/"):
        return KINESIS
    if service == "dynamodb" and resource.startswith("table/") and "/stream/" in resource:
        return DYNAMODB
    if service == "mq" and resource.startswith("broker:"):
        return MQ
    unsupported_services = {
        "kafka": "Amazon MSK",
        "rds": "Amazon DocumentDB",
        "docdb": "Amazon DocumentDB",
    }
    if service in unsupported_services:
        raise InvalidParameterValue(
            f"Lamina does not support {unsupported_services[service]} event sources: it polls "
            "SQS, Kinesis, DynamoDB Streams, Amazon MQ for RabbitMQ and self-managed Kafka."
        )
    raise InvalidParameterValue(UNRECOGNIZED_SOURCE)


# The members each kind takes beyond those every kind takes (FunctionName, Enabled,
# BatchSize, MaximumBatchingWindowInSeconds, FilterCriteria, KMSKeyArn, MetricsConfig,
# LoggingConfig, Tags). Anything else is AWS's "Unsupported <member> parameter".
_COMMON = frozenset(
    {
        "UUID",
        "FunctionName",
        "EventSourceArn",
        "Enabled",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "FilterCriteria",
        "KMSKeyArn",
        "MetricsConfig",
        "LoggingConfig",
        "Tags",
    }
)
_STREAM = frozenset(
    {
        "StartingPosition",
        "StartingPositionTimestamp",
        "ParallelizationFactor",
        "MaximumRecordAgeInSeconds",
        "MaximumRetryAttempts",
        "BisectBatchOnFunctionError",
        "TumblingWindowInSeconds",
        "DestinationConfig",
        "FunctionResponseTypes",
    }
)
_ACCEPTED: dict[str, frozenset[str]] = {
    SQS: _COMMON | {"FunctionResponseTypes", "ScalingConfig", "ProvisionedPollerConfig"},
    KINESIS: _COMMON | _STREAM,
    DYNAMODB: _COMMON | _STREAM,
    MQ: _COMMON | {"Queues", "SourceAccessConfigurations"},
    KAFKA: _COMMON
    | {
        "StartingPosition",
        "StartingPositionTimestamp",
        "Topics",
        "SourceAccessConfigurations",
        "SelfManagedEventSource",
        "SelfManagedKafkaEventSourceConfig",
        "DestinationConfig",
        "FunctionResponseTypes",
        "MaximumRecordAgeInSeconds",
        "MaximumRetryAttempts",
        "ProvisionedPollerConfig",
    },
}
# Access types each broker kind takes (RabbitMQ: credentials and a virtual host).
_ACCESS_TYPES = {
    MQ: frozenset({"BASIC_AUTH", "VIRTUAL_HOST"}),
    KAFKA: frozenset(
        {
            "BASIC_AUTH",
            "VPC_SUBNET",
            "VPC_SECURITY_GROUP",
            "SASL_SCRAM_512_AUTH",
            "SASL_SCRAM_256_AUTH",
            "CLIENT_CERTIFICATE_TLS_AUTH",
            "SERVER_ROOT_CA_CERTIFICATE",
        }
    ),
}
# Members shown back as sent, without Lamina acting on them.
_EXTRAS = ("KMSKeyArn", "MetricsConfig", "LoggingConfig", "ProvisionedPollerConfig")


def _defaults(kind: str) -> dict[str, Any]:
    """What a new mapping of `kind` starts with (AWS's defaults, as AWS shows them)."""
    if kind == SQS:
        return {"batch_size": 10, "maximum_batching_window": 0}
    if kind in STREAM_KINDS:
        return {
            "batch_size": 100,
            "maximum_batching_window": 0,
            "last_processing_result": NO_RECORDS_PROCESSED,
            "parallelization_factor": 1,
            "maximum_record_age": -1,
            "maximum_retry_attempts": -1,
            "bisect_batch_on_function_error": False,
            "tumbling_window": 0,
        }
    # MQ and Kafka: a 0.5 s window that the integer member cannot show.
    return {"batch_size": 100, "last_processing_result": NO_RECORDS_PROCESSED}


def user_reason(kind: str) -> str:
    """StateTransitionReason after a caller's change."""
    return USER_ACTION if kind in STREAM_KINDS else USER_INITIATED


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidParameterValue(f"Invalid StartingPositionTimestamp: {value}") from None


# ----------------------------------------------------------------- the service

PatternCheck = Callable[[str], None]


@dataclass(frozen=True)
class _Target:
    """The function a mapping invokes, as addressed: its name, ARN and timeout."""

    name: str
    arn: str
    timeout: int
    role: str


class MappingService:
    """Event source mappings over the mapping store; blocking (it asks the sources' APIs)."""

    def __init__(
        self,
        domain: Domain,
        functions: FunctionService,
        check_pattern: PatternCheck | None = None,
        *,
        settle_now: bool = True,
        clock: Callable[[], float] = time.time,
        role_permissions: RolePermissions | None = None,
    ) -> None:
        self._store = domain.stores.mappings
        self._account = domain.account
        self._sources = domain.event_sources
        self._functions = functions
        # The EventBridge pattern engine's check (it lives above the control plane):
        # raises ValueError for a pattern it cannot compile.
        self._check_pattern = check_pattern
        self._settle_now = settle_now
        self._clock = clock
        # Enforced mode only: the function's role must allow reading the source and writing
        # to the on-failure destination.
        self._roles = role_permissions

    # ----------------------------------------------------------------- reads

    def get(self, uuid: str) -> EventSourceMapping:
        mapping = self._store.get(uuid)
        if mapping is None:
            raise ResourceNotFound(NOT_FOUND)
        return mapping

    def list(
        self,
        function: FunctionRef | None,
        event_source_arn: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[EventSourceMapping], str | None]:
        """A page in UUID order: an unqualified function matches its mappings of any
        qualifier, a qualified one only those of that qualifier."""
        after = decode_marker(marker)
        limit = page_size(max_items, LIST_PAGE_MAX)
        filters: dict[str, str | None] = {"event_source_arn": event_source_arn or None}
        if function is not None and function.qualifier:
            filters["function_arn"] = self._account.function_arn(function.name, function.qualifier)
        elif function is not None:
            filters["function_name"] = function.name
        items = self._store.page(str(after) if after is not None else None, limit + 1, **filters)
        return take_page(items, limit, lambda mapping: mapping.uuid)

    # ---------------------------------------------------------------- create

    def create(self, function: FunctionRef, params: Mapping[str, Any]) -> EventSourceMapping:
        """Store a new mapping Creating, settle it, and answer it as accepted (Creating)."""
        source = params.get("EventSourceArn")
        kind = source_kind(source, "SelfManagedEventSource" in params)
        self._check_members(kind, params)
        uuid = str(uuids.uuid4())
        tags = dict(params.get("Tags") or {})
        check_tags(tags, mapping_arn(self._account, uuid))
        mapping = EventSourceMapping(
            uuid=uuid,
            kind=kind,
            function_name=function.name,
            function_arn=self._account.function_arn(function.name, function.qualifier),
            event_source_arn=source,
            state=CREATING,
            state_transition_reason=user_reason(kind),
            enabled=params.get("Enabled", True) is not False,
            last_modified=self._clock(),
            tags=tags,
            **_defaults(kind),
        )
        mapping = self._apply(mapping, params, creating=True)
        target = self._target(function)
        self._check_role(mapping, target, source=True)
        self._check_source(mapping, target)
        with self._store.transaction():
            self._check_unique(mapping)
            self._store.put(mapping)
        if self._settle_now:
            self.settle(uuid)
        return mapping

    # ---------------------------------------------------------------- update

    def update(
        self, uuid: str, function: FunctionRef | None, params: Mapping[str, Any]
    ) -> EventSourceMapping:
        current = self.get(uuid)
        self._check_changeable(current, UPDATE_IN_USE)
        self._check_members(current.kind, params)
        mapping = self._apply(current, params, creating=False)
        target = None
        if function is not None:
            target = self._target(function)
            mapping = replace(mapping, function_name=target.name, function_arn=target.arn)
            self._check_role(mapping, target, source=True)
            if mapping.kind == SQS:
                self._check_source(mapping, target)
        elif self._roles is not None and (
            "DestinationConfig" in params or "SourceAccessConfigurations" in params
        ):
            # The function as the mapping addresses it (`…:function:name[:qualifier]`).
            qualifier = current.function_arn.split(":")[7:8]
            current_target = self._target(
                FunctionRef(current.function_name, qualifier[0] if qualifier else None)
            )
            self._check_role(mapping, current_target, source="SourceAccessConfigurations" in params)
        if (
            mapping.kind == MQ
            and mapping.event_source_arn
            and "SourceAccessConfigurations" in params
        ):
            self._check_broker(mapping, mapping.event_source_arn)
        enabled = params.get("Enabled")
        state = UPDATING
        if enabled is not None and enabled != current.enabled:
            state = ENABLING if enabled else DISABLING
        mapping = replace(
            mapping,
            state=state,
            state_transition_reason=user_reason(mapping.kind),
            enabled=current.enabled if enabled is None else bool(enabled),
            last_modified=self._clock(),
        )
        with self._store.transaction():
            latest = self.get(uuid)
            self._check_changeable(latest, UPDATE_IN_USE)
            if target is not None:
                self._check_unique(mapping)
            # What a poller recorded and tags given meanwhile are kept.
            mapping = replace(
                mapping, last_processing_result=latest.last_processing_result, tags=latest.tags
            )
            self._store.put(mapping)
        if self._settle_now:
            self.settle(uuid)
        return mapping

    # ---------------------------------------------------------------- delete

    def delete(self, uuid: str) -> EventSourceMapping:
        """Mark the mapping Deleting and answer that; it is then gone (Get answers 404)."""
        with self._store.transaction():
            mapping = self.get(uuid)
            self._check_changeable(mapping, DELETE_IN_USE)
            mapping = replace(
                mapping, state=DELETING, state_transition_reason=user_reason(mapping.kind)
            )
            self._store.put(mapping)
        if self._settle_now:
            self.settle(uuid)
        return mapping

    # ------------------------------------------------------------ transitions

    def settle(self, uuid: str) -> None:
        """End a transition: Enabled or Disabled as asked, or gone after Deleting."""
        with self._store.transaction():
            mapping = self._store.get(uuid)
            if mapping is None or mapping.state in SETTLED_STATES:
                return
            if mapping.state == DELETING:
                self._store.delete(uuid)
                return
            state = ENABLED if mapping.enabled else DISABLED
            self._store.set_state(uuid, state, mapping.state_transition_reason)

    def finish_transitions(self) -> int:
        """Settle every transition a stop interrupted (at start); how many there were."""
        unfinished = self._store.in_states(TRANSITIONAL_STATES)
        for mapping in unfinished:
            self.settle(mapping.uuid)
        return len(unfinished)

    # ------------------------------------------------------------ validation

    @staticmethod
    def _check_changeable(mapping: EventSourceMapping, refusal: str) -> None:
        if mapping.state not in SETTLED_STATES:
            raise ResourceInUse(refusal)

    def _check_members(self, kind: str, params: Mapping[str, Any]) -> None:
        accepted = _ACCEPTED[kind]
        for member in params:
            if member in accepted:
                continue
            if kind == SQS and member in {"StartingPosition", "StartingPositionTimestamp"}:
                raise InvalidParameterValue(SQS_STARTING_POSITION)
            raise unsupported(member)
        destination = params.get("DestinationConfig")
        if destination is not None and "OnSuccess" in destination:
            raise unsupported("DestinationConfig")

    def _apply(
        self, mapping: EventSourceMapping, params: Mapping[str, Any], *, creating: bool
    ) -> EventSourceMapping:
        """`mapping` with the members given, every rule on the result checked."""
        changes: dict[str, Any] = {}
        simple = {
            "BatchSize": "batch_size",
            "MaximumBatchingWindowInSeconds": "maximum_batching_window",
            "ParallelizationFactor": "parallelization_factor",
            "MaximumRecordAgeInSeconds": "maximum_record_age",
            "MaximumRetryAttempts": "maximum_retry_attempts",
            "BisectBatchOnFunctionError": "bisect_batch_on_function_error",
            "TumblingWindowInSeconds": "tumbling_window",
        }
        for member, name in simple.items():
            if member in params:
                changes[name] = params[member]
        if "FunctionResponseTypes" in params:
            changes["function_response_types"] = tuple(params["FunctionResponseTypes"])
        if "FilterCriteria" in params:
            changes["filters"] = self._filters(params["FilterCriteria"], mapping.kind)
        if "ScalingConfig" in params:
            changes["maximum_concurrency"] = params["ScalingConfig"].get("MaximumConcurrency")
        if "DestinationConfig" in params:
            on_failure = (params["DestinationConfig"].get("OnFailure") or {}).get("Destination")
            changes["on_failure"] = on_failure or None
        if "SourceAccessConfigurations" in params:
            changes["source_access"] = tuple(
                (item.get("Type", ""), item.get("URI", ""))
                for item in params["SourceAccessConfigurations"]
            )
        extras = dict(mapping.extras)
        for member in _EXTRAS:
            if member in params:
                extras[member] = params[member]
        if creating:
            changes.update(self._creation_only(mapping, params, extras))
        changes["extras"] = extras
        mapping = replace(mapping, **changes)
        self._check_rules(mapping)
        return mapping

    def _creation_only(
        self, mapping: EventSourceMapping, params: Mapping[str, Any], extras: dict[str, Any]
    ) -> dict[str, Any]:
        """Members only CreateEventSourceMapping takes: where to start, what to read."""
        changes: dict[str, Any] = {}
        kind = mapping.kind
        if kind in STREAM_KINDS or kind == KAFKA:
            position = params.get("StartingPosition")
            if position is None:
                raise member_missing("startingPosition")
            if position == AT_TIMESTAMP and kind == DYNAMODB:
                raise InvalidParameterValue(
                    f"Unsupported starting position for arn type: {mapping.event_source_arn}"
                )
            changes["starting_position"] = position
            if position == AT_TIMESTAMP:
                given = params.get("StartingPositionTimestamp")
                if given is None:
                    raise member_missing("startingPositionTimestamp")
                moment = _timestamp(given)
                if moment > self._clock():
                    raise InvalidParameterValue(
                        "StartingPositionTimestamp must not be in the future."
                    )
                changes["starting_position_timestamp"] = moment
        if kind == MQ:
            queues = params.get("Queues")
            if not queues:
                raise member_missing("queues")
            changes["queues"] = tuple(queues)
        if kind == KAFKA:
            topics = params.get("Topics")
            if not topics:
                raise member_missing("topics")
            changes["topics"] = tuple(topics)
            endpoints = params["SelfManagedEventSource"].get("Endpoints") or {}
            servers = endpoints.get("KAFKA_BOOTSTRAP_SERVERS")
            if not servers:
                raise member_missing("selfManagedEventSource.endpoints")
            changes["bootstrap_servers"] = tuple(servers)
            config = dict(params.get("SelfManagedKafkaEventSourceConfig") or {})
            # The consumer group defaults to the mapping's UUID.
            changes["consumer_group_id"] = config.pop("ConsumerGroupId", None) or mapping.uuid
            if config:
                extras["SelfManagedKafkaEventSourceConfig"] = config
        return changes

    def _filters(self, criteria: Mapping[str, Any], kind: str) -> tuple[str, ...]:
        filters = criteria.get("Filters") or []
        if len(filters) > MAX_FILTERS:
            raise InvalidParameterValue(
                f"The number of filters in FilterCriteria exceeds the quota of {MAX_FILTERS}."
            )
        patterns = []
        for item in filters:
            pattern = item.get("Pattern")
            if pattern is None:
                raise InvalidParameterValue(INVALID_FILTER)
            try:
                parsed = orjson.loads(pattern)
            except orjson.JSONDecodeError:
                raise InvalidParameterValue(INVALID_FILTER) from None
            if not isinstance(parsed, dict):
                raise InvalidParameterValue(INVALID_FILTER)
            # Stream data is matched as JSON only: a pattern on `data` that is not an
            # object could never match, and Lambda refuses it.
            if kind in STREAM_KINDS and "data" in parsed and not isinstance(parsed["data"], dict):
                raise InvalidParameterValue(INVALID_FILTER)
            if self._check_pattern is not None:
                try:
                    self._check_pattern(pattern)
                except ValueError:
                    raise InvalidParameterValue(INVALID_FILTER) from None
            patterns.append(pattern)
        return tuple(patterns)

    def _check_rules(self, mapping: EventSourceMapping) -> None:
        """The rules that span several members, on the mapping as it would be stored."""
        if mapping.kind == SQS:
            window = mapping.maximum_batching_window or 0
            if mapping.batch_size > SQS_WINDOWLESS_BATCH_MAX and window == 0:
                raise InvalidParameterValue(WINDOW_REQUIRED)
            if mapping.fifo and window > 0:
                raise InvalidParameterValue(FIFO_WINDOW)
        age = mapping.maximum_record_age
        if age is not None and age != -1 and age < 60:
            raise InvalidParameterValue(
                "MaximumRecordAgeInSeconds must be -1 or between 60 and 604800."
            )
        if mapping.on_failure is not None:
            kind = destination_kind(mapping.on_failure)
            if kind not in ON_FAILURE_KINDS.get(mapping.kind, ()):
                raise InvalidParameterValue(f"The destination ARN {mapping.on_failure} is invalid.")
        allowed = _ACCESS_TYPES.get(mapping.kind)
        if allowed is not None:
            for access_type, _ in mapping.source_access:
                if access_type not in allowed:
                    raise InvalidParameterValue(
                        f"Unsupported SourceAccessConfiguration type {access_type} for given "
                        "event source mapping type."
                    )
        if mapping.kind == MQ and not any(t == "BASIC_AUTH" for t, _ in mapping.source_access):
            raise InvalidParameterValue(
                "SourceAccessConfigurations must include BASIC_AUTH (a Secrets Manager secret "
                "with the broker's username and password) for an Amazon MQ event source."
            )

    def _target(self, function: FunctionRef) -> _Target:
        try:
            resolved = self._functions.resolve(function)
        except ResourceNotFound:
            raise InvalidParameterValue(FUNCTION_MISSING) from None
        return _Target(
            name=function.name,
            arn=self._account.function_arn(function.name, function.qualifier),
            timeout=resolved.config.timeout,
            role=resolved.config.role,
        )

    def _check_role(self, mapping: EventSourceMapping, target: _Target, *, source: bool) -> None:
        """Enforced mode: the function's role must allow what its poller does with the source
        (when `source`) and writing to the on-failure destination. AWS checks the role before
        it asks the source whether it exists."""
        if self._roles is None:
            return
        if source:
            secrets = [uri for kind, uri in mapping.source_access if kind == "BASIC_AUTH"]
            self._roles.check_source(
                target.role, target.name, mapping.kind, mapping.event_source_arn, secrets
            )
        self._roles.check_destinations(target.role, target.name, [mapping.on_failure])

    def _check_unique(self, mapping: EventSourceMapping) -> None:
        if mapping.kind == KAFKA:
            self._check_unique_kafka(mapping)
            return
        others = self._store.page(
            None,
            10_000,
            event_source_arn=mapping.event_source_arn,
            function_arn=mapping.function_arn,
        )
        for other in others:
            if other.uuid != mapping.uuid and other.queues == mapping.queues:
                raise duplicate(other)

    def _check_unique_kafka(self, mapping: EventSourceMapping) -> None:
        """A self-managed Kafka source has no ARN: one function may read one set of bootstrap
        servers' topics once."""
        others = self._store.page(None, 10_000, function_arn=mapping.function_arn)
        servers = set(mapping.bootstrap_servers)
        for other in others:
            if (
                other.uuid != mapping.uuid
                and other.kind == KAFKA
                and set(other.bootstrap_servers) == servers
                and set(other.topics) & set(mapping.topics)
            ):
                raise duplicate(other)

    def _check_source(self, mapping: EventSourceMapping, target: _Target) -> None:
        """Ask the source's own API whether it exists (and, for a queue, how long it hides a
        message: no less than the function may run)."""
        arn = mapping.event_source_arn
        if arn is not None and mapping.kind == MQ:
            self._check_broker(mapping, arn)
            return
        if arn is None or mapping.kind == KAFKA:
            return
        sources = self._sources
        if mapping.kind == SQS:
            try:
                facts = sources.queue(arn)
            except SourceNotFound:
                raise InvalidParameterValue(QUEUE_MISSING) from None
            except SourceRefused as refused:
                raise InvalidParameterValue(
                    f"Error occurred while ReceiveMessage. SQS Error Code: {refused.code}. "
                    f"SQS Error Message: {refused.message}"
                ) from None
            except SourceUnreachable as error:
                raise _unreachable("ReceiveMessage", error) from None
            if facts.visibility_timeout < target.timeout:
                raise InvalidParameterValue(
                    f"Queue visibility timeout: {facts.visibility_timeout} seconds is less than "
                    f"Function timeout: {target.timeout} seconds"
                )
            return
        check = sources.kinesis_stream if mapping.kind == KINESIS else sources.dynamodb_stream
        try:
            check(arn)
        except SourceNotFound:
            raise InvalidParameterValue(f"Stream not found: {arn}") from None
        except SourceRefused as refused:
            raise InvalidParameterValue(
                f"Error occurred while DescribeStream. Error Code: {refused.code}. "
                f"Error Message: {refused.message}"
            ) from None
        except SourceUnreachable as error:
            raise _unreachable("DescribeStream", error) from None

    def _check_broker(self, mapping: EventSourceMapping, arn: str) -> None:
        """An Amazon MQ mapping: Lamina must know where the broker listens (LAMINA_MQ_BROKERS)
        and its BASIC_AUTH secret must exist in Secrets Manager (Lamina's wording: AWS's
        texts for these are not known)."""
        name = broker_name(arn)
        try:
            self._sources.mq_broker(name)
        except SourceNotFound:
            raise InvalidParameterValue(
                f"Lamina does not know where the Amazon MQ broker '{name}' of {arn} listens: "
                f"add {name}=amqp://<host>:<port> to LAMINA_MQ_BROKERS."
            ) from None
        for access_type, secret in mapping.source_access:
            if access_type != "BASIC_AUTH":
                continue
            if secret.count(":") < 6 or secret.split(":")[2] != "secretsmanager":
                raise InvalidParameterValue(
                    f"The BASIC_AUTH URI {secret} is not a Secrets Manager secret ARN."
                )
            try:
                self._sources.secret(secret)
            except SourceNotFound:
                raise InvalidParameterValue(
                    f"The BASIC_AUTH secret {secret} does not exist in Secrets Manager."
                ) from None
            except SourceRefused as refused:
                raise InvalidParameterValue(
                    f"Error occurred while DescribeSecret. Error Code: {refused.code}. "
                    f"Error Message: {refused.message}"
                ) from None
            except SourceUnreachable as error:
                raise _unreachable("DescribeSecret", error) from None


def _unreachable(operation: str, error: SourceUnreachable) -> InvalidParameterValue:
    """Lamina's own refusal (AWS's sources are always reachable): the configured endpoint of
    the source's API does not answer, so the source cannot be checked."""
    return InvalidParameterValue(
        f"Error occurred while {operation}. {error.service} could not be reached to check the "
        f"event source: {error.detail}"
    )
