"""Handlers: Create/Update/Delete/Get/ListEventSourceMappings, and how a mapping is shown.

Which keys a response carries depends on the source kind, as recorded on AWS: an SQS
mapping shows no stream settings and no LastProcessingResult; a stream mapping shows every
stream setting with its default, `DestinationConfig: {"OnFailure": {}}` included.
"""

from __future__ import annotations

from typing import Any

from lamina.api.context import ApiContext, Handler
from lamina.control.mappings import MappingService
from lamina.events.patterns import compile_pattern
from lamina.model.mappings import KAFKA, MQ, SQS, EventSourceMapping, mapping_arn


def check_pattern(pattern: str) -> None:
    """A FilterCriteria pattern as the EventBridge pattern engine reads it (ValueError)."""
    compile_pattern(pattern)


def mapping_view(mapping: EventSourceMapping, ctx: ApiContext) -> dict[str, Any]:
    """EventSourceMappingConfiguration: the keys AWS shows for the mapping's kind."""
    view: dict[str, Any] = {
        "UUID": mapping.uuid,
        "BatchSize": mapping.batch_size,
        "EventSourceArn": mapping.event_source_arn,
        "FunctionArn": mapping.function_arn,
        "LastModified": mapping.last_modified,
        "State": mapping.state,
        "StateTransitionReason": mapping.state_transition_reason,
        "EventSourceMappingArn": mapping_arn(ctx.domain.account, mapping.uuid),
    }
    if mapping.maximum_batching_window is not None:
        view["MaximumBatchingWindowInSeconds"] = mapping.maximum_batching_window
    if mapping.last_processing_result is not None:
        view["LastProcessingResult"] = mapping.last_processing_result
    if mapping.kind == SQS or mapping.is_stream or mapping.function_response_types:
        view["FunctionResponseTypes"] = list(mapping.function_response_types)
    if mapping.is_stream:
        view.update(
            {
                "ParallelizationFactor": mapping.parallelization_factor,
                "MaximumRecordAgeInSeconds": mapping.maximum_record_age,
                "MaximumRetryAttempts": mapping.maximum_retry_attempts,
                "BisectBatchOnFunctionError": mapping.bisect_batch_on_function_error,
                "TumblingWindowInSeconds": mapping.tumbling_window,
            }
        )
    if mapping.is_stream or mapping.on_failure is not None:
        on_failure = {"Destination": mapping.on_failure} if mapping.on_failure else {}
        view["DestinationConfig"] = {"OnFailure": on_failure}
    if mapping.starting_position is not None:
        view["StartingPosition"] = mapping.starting_position
    if mapping.starting_position_timestamp is not None:
        view["StartingPositionTimestamp"] = mapping.starting_position_timestamp
    if mapping.kind == KAFKA:
        for member, value in (
            ("MaximumRecordAgeInSeconds", mapping.maximum_record_age),
            ("MaximumRetryAttempts", mapping.maximum_retry_attempts),
        ):
            if value is not None:
                view[member] = value
        view["Topics"] = list(mapping.topics)
        view["SelfManagedEventSource"] = {
            "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": list(mapping.bootstrap_servers)}
        }
        view["SelfManagedKafkaEventSourceConfig"] = {
            "ConsumerGroupId": mapping.consumer_group_id,
            **mapping.extras.get("SelfManagedKafkaEventSourceConfig", {}),
        }
    if mapping.kind == MQ:
        view["Queues"] = list(mapping.queues)
    if mapping.source_access:
        view["SourceAccessConfigurations"] = [
            {"Type": access_type, "URI": uri} for access_type, uri in mapping.source_access
        ]
    if mapping.filters:
        view["FilterCriteria"] = {"Filters": [{"Pattern": pattern} for pattern in mapping.filters]}
    if mapping.maximum_concurrency is not None:
        view["ScalingConfig"] = {"MaximumConcurrency": mapping.maximum_concurrency}
    for member in ("KMSKeyArn", "MetricsConfig", "LoggingConfig", "ProvisionedPollerConfig"):
        if member in mapping.extras:
            view[member] = mapping.extras[member]
    return view


def operations(ctx: ApiContext) -> dict[str, Handler]:
    mappings = MappingService(
        ctx.domain, ctx.functions, check_pattern, role_permissions=ctx.role_permissions
    )

    def show(mapping: EventSourceMapping) -> dict[str, Any]:
        return mapping_view(mapping, ctx)

    def create(params: dict[str, Any]) -> dict[str, Any]:
        return show(mappings.create(ctx.function_ref(params), params))

    def update(params: dict[str, Any]) -> dict[str, Any]:
        function = ctx.function_ref(params) if params.get("FunctionName") else None
        return show(mappings.update(params["UUID"], function, params))

    def delete(params: dict[str, Any]) -> dict[str, Any]:
        return show(mappings.delete(params["UUID"]))

    def get(params: dict[str, Any]) -> dict[str, Any]:
        return show(mappings.get(params["UUID"]))

    def list_mappings(params: dict[str, Any]) -> dict[str, Any]:
        function = ctx.function_ref(params) if params.get("FunctionName") else None
        page, marker = mappings.list(
            function, params.get("EventSourceArn"), params.get("Marker"), params.get("MaxItems")
        )
        return {"EventSourceMappings": [show(mapping) for mapping in page], "NextMarker": marker}

    return {
        "CreateEventSourceMapping": create,
        "UpdateEventSourceMapping": update,
        "DeleteEventSourceMapping": delete,
        "GetEventSourceMapping": get,
        "ListEventSourceMappings": list_mappings,
    }
