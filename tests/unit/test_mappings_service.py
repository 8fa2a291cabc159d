"""MappingService on real SQLite stores with a scripted source API: the state machine
(transitions answered, then settled; ResourceInUse while one is under way; transitions a
stop interrupted finished at start) and how the source API's answers are worded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lamina.arns import FunctionRef
from lamina.control.context import Domain
from lamina.control.event_sources import (
    QueueFacts,
    SourceNotFound,
    SourceRefused,
    SourceUnreachable,
)
from lamina.control.functions import FunctionService
from lamina.control.mappings import MappingService
from lamina.errors import InvalidParameterValue, ResourceInUse, ResourceNotFound
from lamina.model.mappings import (
    CREATING,
    DELETING,
    DISABLED,
    DISABLING,
    ENABLED,
    ENABLING,
    PROCESSING_OK,
    UPDATING,
)
from tests.support.domain import fails_with, function_settings, open_domain, source

QUEUE = "arn:aws:sqs:us-east-1:123456789012:orders"
STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
UPDATE_IN_USE = "Cannot update the event source mapping because it is in use."
DELETE_IN_USE = "Cannot delete the event source mapping because it is in use."


class ScriptedSources:
    """The sources' APIs, answering what a test sets."""

    def __init__(self) -> None:
        self.failure: Exception | None = None
        self.visibility_timeout = 30
        self.asked: list[str] = []

    def queue(self, arn: str) -> QueueFacts:
        self.asked.append(arn)
        if self.failure is not None:
            raise self.failure
        return QueueFacts(self.visibility_timeout, arn.endswith(".fifo"))

    def kinesis_stream(self, arn: str) -> None:
        self.asked.append(arn)
        if self.failure is not None:
            raise self.failure

    def dynamodb_stream(self, arn: str) -> None:
        self.kinesis_stream(arn)


@pytest.fixture
def sources() -> ScriptedSources:
    return ScriptedSources()


@pytest.fixture
def domain(tmp_path: Path, sources: ScriptedSources) -> Domain:
    return replace(open_domain(tmp_path / "data"), event_sources=sources)


@pytest.fixture
def functions(domain: Domain) -> FunctionService:
    service = FunctionService(domain)
    service.create("fn", function_settings(timeout=20), source())
    return service


def test_a_create_answers_creating_and_settles_enabled(
    domain: Domain, functions: FunctionService
) -> None:
    mappings = MappingService(domain, functions)
    created = mappings.create(FunctionRef("fn", None), {"EventSourceArn": QUEUE})
    assert created.state == CREATING
    assert mappings.get(created.uuid).state == ENABLED
    disabled = mappings.create(
        FunctionRef("fn", None),
        {"EventSourceArn": STREAM, "StartingPosition": "LATEST", "Enabled": False},
    )
    assert mappings.get(disabled.uuid).state == DISABLED


def test_updates_and_deletes_wait_for_a_transition(
    domain: Domain, functions: FunctionService
) -> None:
    pending = MappingService(domain, functions, settle_now=False)
    created = pending.create(FunctionRef("fn", None), {"EventSourceArn": QUEUE})
    with fails_with(ResourceInUse, UPDATE_IN_USE):
        pending.update(created.uuid, None, {"BatchSize": 5})
    with fails_with(ResourceInUse, DELETE_IN_USE):
        pending.delete(created.uuid)
    pending.settle(created.uuid)
    assert pending.update(created.uuid, None, {"BatchSize": 5}).state == UPDATING
    with fails_with(ResourceInUse, DELETE_IN_USE):
        pending.delete(created.uuid)
    pending.settle(created.uuid)
    assert pending.update(created.uuid, None, {"Enabled": False}).state == DISABLING
    pending.settle(created.uuid)
    assert pending.get(created.uuid).state == DISABLED
    assert pending.update(created.uuid, None, {"Enabled": False}).state == UPDATING
    pending.settle(created.uuid)
    assert pending.update(created.uuid, None, {"Enabled": True}).state == ENABLING
    pending.settle(created.uuid)
    assert pending.delete(created.uuid).state == DELETING
    assert pending.get(created.uuid).state == DELETING
    with fails_with(ResourceInUse, DELETE_IN_USE):
        pending.delete(created.uuid)
    pending.settle(created.uuid)
    with fails_with(ResourceNotFound, "The resource you requested does not exist."):
        pending.get(created.uuid)


def test_transitions_a_stop_interrupted_finish_at_start(
    domain: Domain, functions: FunctionService
) -> None:
    pending = MappingService(domain, functions, settle_now=False)
    creating = pending.create(FunctionRef("fn", None), {"EventSourceArn": QUEUE})
    deleting = pending.create(
        FunctionRef("fn", None), {"EventSourceArn": STREAM, "StartingPosition": "LATEST"}
    )
    pending.settle(deleting.uuid)
    pending.delete(deleting.uuid)
    assert MappingService(domain, functions).finish_transitions() == 2
    assert pending.get(creating.uuid).state == ENABLED
    with pytest.raises(ResourceNotFound):
        pending.get(deleting.uuid)
    assert MappingService(domain, functions).finish_transitions() == 0


def test_an_update_keeps_the_result_a_poller_recorded(
    domain: Domain, functions: FunctionService
) -> None:
    mappings = MappingService(domain, functions)
    created = mappings.create(
        FunctionRef("fn", None), {"EventSourceArn": STREAM, "StartingPosition": "LATEST"}
    )
    domain.stores.mappings.record_result(created.uuid, PROCESSING_OK)
    mappings.update(created.uuid, None, {"BatchSize": 7})
    stored = mappings.get(created.uuid)
    assert (stored.batch_size, stored.last_processing_result) == (7, PROCESSING_OK)


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (
            SourceNotFound("gone"),
            "Error occurred while ReceiveMessage. SQS Error Code: "
            "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue "
            "does not exist.",
        ),
        (
            SourceRefused("AccessDenied", "not yours"),
            "Error occurred while ReceiveMessage. SQS Error Code: AccessDenied. SQS Error "
            "Message: not yours",
        ),
        (
            SourceUnreachable("SQS", 'Could not connect to the endpoint URL: "http://x/"'),
            "Error occurred while ReceiveMessage. SQS could not be reached to check the event "
            'source: Could not connect to the endpoint URL: "http://x/"',
        ),
    ],
)
def test_the_queue_api_answers_are_worded(
    domain: Domain,
    functions: FunctionService,
    sources: ScriptedSources,
    failure: Exception,
    message: str,
) -> None:
    sources.failure = failure
    with fails_with(InvalidParameterValue, message):
        MappingService(domain, functions).create(FunctionRef("fn", None), {"EventSourceArn": QUEUE})
    assert domain.stores.mappings.page(None, 10) == []


def test_the_queue_must_hide_a_message_as_long_as_the_function_runs(
    domain: Domain, functions: FunctionService, sources: ScriptedSources
) -> None:
    sources.visibility_timeout = 15
    with fails_with(
        InvalidParameterValue,
        "Queue visibility timeout: 15 seconds is less than Function timeout: 20 seconds",
    ):
        MappingService(domain, functions).create(FunctionRef("fn", None), {"EventSourceArn": QUEUE})


def test_the_source_is_not_asked_about_a_request_already_refused(
    domain: Domain, functions: FunctionService, sources: ScriptedSources
) -> None:
    with pytest.raises(InvalidParameterValue):
        MappingService(domain, functions).create(
            FunctionRef("fn", None), {"EventSourceArn": QUEUE, "BatchSize": 100}
        )
    assert sources.asked == []
