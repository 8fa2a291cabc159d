"""Event source mappings as Lamina keeps them, and the per-shard checkpoints of stream pollers.

A mapping carries its source kind, the function as the caller addressed it (the qualifier
kept in `function_arn`), every setting in Lamina's own names, and where its state machine
stands (`lamina.control.mappings` moves it). Settings that apply to a kind only are None (or
empty) for the others; what a response shows for each kind is the API layer's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lamina.arns import Account

# Source kinds.
SQS = "sqs"
KINESIS = "kinesis"
DYNAMODB = "dynamodb"
MQ = "mq"
KAFKA = "kafka"
STREAM_KINDS = frozenset({KINESIS, DYNAMODB})

# States, in AWS's words. Creating, Updating, Enabling, Disabling and Deleting are
# transitional: the API answers them, and the mapping then settles Enabled or Disabled (or,
# after Deleting, is gone).
CREATING = "Creating"
ENABLED = "Enabled"
DISABLED = "Disabled"
UPDATING = "Updating"
ENABLING = "Enabling"
DISABLING = "Disabling"
DELETING = "Deleting"
SETTLED_STATES = frozenset({ENABLED, DISABLED})
TRANSITIONAL_STATES = frozenset({CREATING, UPDATING, ENABLING, DISABLING, DELETING})

# LastProcessingResult values AWS shows (pollers record the last two).
NO_RECORDS_PROCESSED = "No records processed"
PROCESSING_OK = "OK"
FUNCTION_CALL_FAILED = "PROBLEM: Function call failed"

# StateTransitionReason after a caller's change: SQS (and MQ, Kafka) say one thing, streams
# another (both recorded on AWS).
USER_INITIATED = "USER_INITIATED"
USER_ACTION = "User action"


# How AWS answers for a mapping that is not there (Get, Update, Delete, tags).
MAPPING_NOT_FOUND = "The resource you requested does not exist."


def broker_name(arn: str) -> str:
    """`arn:aws:mq:<region>:<account>:broker:<name>:<id>` -> `<name>` ("" for another ARN)."""
    resource = arn.split(":", 5)[5] if arn.count(":") >= 5 else ""
    parts = resource.split(":")
    return parts[1] if len(parts) >= 2 and parts[0] == "broker" else ""


def mapping_arn(account: Account, uuid: str) -> str:
    return f"arn:aws:lambda:{account.region}:{account.account_id}:event-source-mapping:{uuid}"


@dataclass(frozen=True)
class EventSourceMapping:
    """One mapping from an event source to a function."""

    uuid: str
    kind: str  # SQS, KINESIS, DYNAMODB, MQ or KAFKA
    function_name: str
    # As the caller addressed the function: a version or alias qualifier is kept.
    function_arn: str
    # None for self-managed Kafka, which names its brokers instead.
    event_source_arn: str | None
    state: str
    state_transition_reason: str
    # What the mapping settles to after a transition: Enabled (True) or Disabled.
    enabled: bool
    last_modified: float  # epoch seconds
    batch_size: int
    # None where AWS shows no value (MQ and Kafka, whose default window is 0.5 s).
    maximum_batching_window: int | None = None
    # None for SQS, which AWS never shows one for; pollers record the others' results.
    last_processing_result: str | None = None
    starting_position: str | None = None
    starting_position_timestamp: float | None = None
    # Streams only.
    parallelization_factor: int | None = None
    maximum_record_age: int | None = None  # -1: no limit
    maximum_retry_attempts: int | None = None  # -1: no limit
    bisect_batch_on_function_error: bool | None = None
    tumbling_window: int | None = None
    on_failure: str | None = None  # the on-failure destination's ARN (streams, Kafka)
    function_response_types: tuple[str, ...] = ()
    # FilterCriteria patterns as the caller sent them (JSON text).
    filters: tuple[str, ...] = ()
    maximum_concurrency: int | None = None  # ScalingConfig (SQS)
    queues: tuple[str, ...] = ()  # MQ
    topics: tuple[str, ...] = ()  # Kafka
    # SourceAccessConfigurations as (Type, URI) pairs (MQ, Kafka).
    source_access: tuple[tuple[str, str], ...] = ()
    bootstrap_servers: tuple[str, ...] = ()  # self-managed Kafka
    consumer_group_id: str | None = None  # self-managed Kafka
    # Members Lamina keeps and shows back without acting on them, under their wire names
    # (KMSKeyArn, MetricsConfig, LoggingConfig, ProvisionedPollerConfig, and the rest of a
    # SelfManagedKafkaEventSourceConfig).
    extras: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_stream(self) -> bool:
        return self.kind in STREAM_KINDS

    @property
    def fifo(self) -> bool:
        """An SQS FIFO queue (its name ends in `.fifo`)."""
        return self.kind == SQS and (self.event_source_arn or "").endswith(".fifo")

    @property
    def qualifier(self) -> str | None:
        """The version or alias the mapping invokes (None: unqualified, i.e. `$LATEST`)."""
        rest = self.function_arn.split(":function:", 1)[-1]
        return rest.split(":", 1)[1] if ":" in rest else None

    @property
    def settled(self) -> bool:
        return self.state in SETTLED_STATES

    def to_doc(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "kind": self.kind,
            "function_name": self.function_name,
            "function_arn": self.function_arn,
            "event_source_arn": self.event_source_arn,
            "state": self.state,
            "state_transition_reason": self.state_transition_reason,
            "enabled": self.enabled,
            "last_modified": self.last_modified,
            "batch_size": self.batch_size,
            "maximum_batching_window": self.maximum_batching_window,
            "last_processing_result": self.last_processing_result,
            "starting_position": self.starting_position,
            "starting_position_timestamp": self.starting_position_timestamp,
            "parallelization_factor": self.parallelization_factor,
            "maximum_record_age": self.maximum_record_age,
            "maximum_retry_attempts": self.maximum_retry_attempts,
            "bisect_batch_on_function_error": self.bisect_batch_on_function_error,
            "tumbling_window": self.tumbling_window,
            "on_failure": self.on_failure,
            "function_response_types": list(self.function_response_types),
            "filters": list(self.filters),
            "maximum_concurrency": self.maximum_concurrency,
            "queues": list(self.queues),
            "topics": list(self.topics),
            "source_access": [list(pair) for pair in self.source_access],
            "bootstrap_servers": list(self.bootstrap_servers),
            "consumer_group_id": self.consumer_group_id,
            "extras": self.extras,
            "tags": self.tags,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> EventSourceMapping:
        return cls(
            uuid=doc["uuid"],
            kind=doc["kind"],
            function_name=doc["function_name"],
            function_arn=doc["function_arn"],
            event_source_arn=doc.get("event_source_arn"),
            state=doc["state"],
            state_transition_reason=doc["state_transition_reason"],
            enabled=bool(doc["enabled"]),
            last_modified=float(doc["last_modified"]),
            batch_size=int(doc["batch_size"]),
            maximum_batching_window=doc.get("maximum_batching_window"),
            last_processing_result=doc.get("last_processing_result"),
            starting_position=doc.get("starting_position"),
            starting_position_timestamp=doc.get("starting_position_timestamp"),
            parallelization_factor=doc.get("parallelization_factor"),
            maximum_record_age=doc.get("maximum_record_age"),
            maximum_retry_attempts=doc.get("maximum_retry_attempts"),
            bisect_batch_on_function_error=doc.get("bisect_batch_on_function_error"),
            tumbling_window=doc.get("tumbling_window"),
            on_failure=doc.get("on_failure"),
            function_response_types=tuple(doc.get("function_response_types") or ()),
            filters=tuple(doc.get("filters") or ()),
            maximum_concurrency=doc.get("maximum_concurrency"),
            queues=tuple(doc.get("queues") or ()),
            topics=tuple(doc.get("topics") or ()),
            source_access=tuple((pair[0], pair[1]) for pair in doc.get("source_access") or ()),
            bootstrap_servers=tuple(doc.get("bootstrap_servers") or ()),
            consumer_group_id=doc.get("consumer_group_id"),
            extras=dict(doc.get("extras") or {}),
            tags=dict(doc.get("tags") or {}),
        )


@dataclass(frozen=True)
class ShardCheckpoint:
    """Where a stream mapping's poller stands in one shard (Kinesis or DynamoDB Streams).

    Written by pollers after each batch, so that a restart (or a disable and enable) resumes
    from the last processed record.
    """

    shard_id: str
    # The last sequence number processed; None: nothing processed yet in this shard.
    sequence_number: str | None = None
    # The shard was closed (split or merged) and read to its end: its children may start.
    finished: bool = False
    # Whatever else the poller keeps for the shard (a tumbling window's state, ...).
    state: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "sequence_number": self.sequence_number,
            "finished": self.finished,
            "state": self.state,
        }

    @classmethod
    def from_doc(cls, shard_id: str, doc: dict[str, Any]) -> ShardCheckpoint:
        return cls(
            shard_id=shard_id,
            sequence_number=doc.get("sequence_number"),
            finished=bool(doc.get("finished")),
            state=dict(doc.get("state") or {}),
        )
