"""The SavedEventStore contract (the console's saved test events): round trip, replace,
per-function listing by name, delete, a missing function, and cascade on function delete.
Also the service's rules over each store: names, JSON bodies, size and the per-function cap."""

from __future__ import annotations

import pytest

from lamina.arns import Account
from lamina.control.context import Domain
from lamina.control.test_events import MAX_EVENTS_PER_FUNCTION, SavedEventService
from lamina.errors import InvalidParameterValue, ResourceNotFound
from lamina.model.functions import FunctionConfig, FunctionRecord
from lamina.store.protocols import SavedEvent, Stores
from tests.support.backends import Backend


@pytest.fixture
def stores(store_backend: Backend) -> Stores:
    return store_backend.stores()


def add_function(stores: Stores, name: str) -> None:
    config = FunctionConfig(
        function_name=name,
        role="arn:aws:iam::123456789012:role/contract",
        runtime="python3.12",
        handler="app.handler",
        code_sha256="c0de",
        code_size=100,
        code_blob="b" * 64,
        unzipped_size=200,
    )
    stores.functions.put(FunctionRecord(latest=config))


def test_an_event_round_trips_and_is_replaced_by_name(stores: Stores) -> None:
    add_function(stores, "f")
    events = stores.test_events
    first = SavedEvent("f", "order-1", '{"id": 1, "note": "välue"}', 100.5)
    assert events.put(first)
    assert events.get("f", "order-1") == first
    second = SavedEvent("f", "order-1", "[1, 2]", 200.0)
    assert events.put(second)
    assert events.get("f", "order-1") == second
    assert events.count("f") == 1
    assert events.get("f", "missing") is None


def test_events_are_listed_per_function_by_name(stores: Stores) -> None:
    add_function(stores, "f")
    add_function(stores, "g")
    for name in ("b", "a", "C"):
        stores.test_events.put(SavedEvent("f", name, "{}", 1.0))
    stores.test_events.put(SavedEvent("g", "z", "{}", 1.0))
    assert [event.name for event in stores.test_events.list("f")] == ["C", "a", "b"]
    assert [event.name for event in stores.test_events.list("g")] == ["z"]
    assert stores.test_events.list("nobody") == []


def test_delete_says_whether_there_was_one(stores: Stores) -> None:
    add_function(stores, "f")
    stores.test_events.put(SavedEvent("f", "e", "{}", 1.0))
    assert stores.test_events.delete("f", "e")
    assert not stores.test_events.delete("f", "e")
    assert stores.test_events.get("f", "e") is None


def test_nothing_is_stored_for_a_missing_function(stores: Stores) -> None:
    assert not stores.test_events.put(SavedEvent("ghost", "e", "{}", 1.0))
    assert stores.test_events.list("ghost") == []


def test_deleting_the_function_deletes_its_events(stores: Stores) -> None:
    add_function(stores, "f")
    add_function(stores, "g")
    stores.test_events.put(SavedEvent("f", "e1", "{}", 1.0))
    stores.test_events.put(SavedEvent("g", "e1", "{}", 1.0))
    with stores.functions.transaction():
        stores.functions.delete("f")
    assert stores.test_events.list("f") == []
    assert [event.function for event in stores.test_events.list("g")] == ["g"]
    # A new function of the same name starts with none.
    add_function(stores, "f")
    assert stores.test_events.list("f") == []


def test_events_survive_reopening_the_store(store_backend: Backend) -> None:
    stores = store_backend.stores()
    add_function(stores, "f")
    stores.test_events.put(SavedEvent("f", "kept", '{"k": 1}', 5.0))
    again = store_backend.stores()
    assert again.test_events.get("f", "kept") == SavedEvent("f", "kept", '{"k": 1}', 5.0)


@pytest.fixture
def service(stores: Stores) -> SavedEventService:
    domain = Domain(
        stores=stores,
        account=Account("123456789012", "us-east-1"),
        s3=None,  # type: ignore[arg-type]  # never read: saved events touch no code
        account_concurrency=1000,
    )
    add_function(stores, "f")
    return SavedEventService(domain, clock=lambda: 42.0)


def test_the_service_saves_lists_gets_and_deletes(service: SavedEventService) -> None:
    saved = service.save("f", "my_event-1.json", '{"a": 1}')
    assert saved == SavedEvent("f", "my_event-1.json", '{"a": 1}', 42.0)
    assert service.list("f") == [saved]
    assert service.get("f", "my_event-1.json") == saved
    service.delete("f", "my_event-1.json")
    with pytest.raises(ResourceNotFound, match=r"has no saved test event named my_event-1\.json"):
        service.get("f", "my_event-1.json")
    with pytest.raises(ResourceNotFound, match="has no saved test event"):
        service.delete("f", "my_event-1.json")


@pytest.mark.parametrize("name", ["", "a" * 26, "has space", "slash/name", "ümlaut"])
def test_the_service_refuses_bad_names(service: SavedEventService, name: str) -> None:
    with pytest.raises(InvalidParameterValue, match="1 to 25 characters"):
        service.save("f", name, "{}")


def test_the_service_refuses_bodies_that_are_not_json_or_too_large(
    service: SavedEventService,
) -> None:
    with pytest.raises(InvalidParameterValue, match="not valid JSON"):
        service.save("f", "e", "{nope")
    with pytest.raises(InvalidParameterValue, match="may be at most"):
        service.save("f", "e", '"' + "x" * (6 * 1024 * 1024 + 100) + '"')


def test_the_service_caps_events_per_function(service: SavedEventService) -> None:
    for number in range(MAX_EVENTS_PER_FUNCTION):
        service.save("f", f"e{number}", "{}")
    with pytest.raises(InvalidParameterValue, match="already has 10 saved test events"):
        service.save("f", "one-more", "{}")
    service.save("f", "e0", '{"replaced": true}')  # replacing takes no new place
    assert service.get("f", "e0").body == '{"replaced": true}'


def test_the_service_names_a_missing_function(service: SavedEventService) -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:ghost"
    with pytest.raises(ResourceNotFound, match=f"Function not found: {arn}"):
        service.save("ghost", "e", "{}")
    with pytest.raises(ResourceNotFound, match="Function not found"):
        service.list("ghost")
    with pytest.raises(ResourceNotFound, match="Function not found"):
        service.get("ghost", "e")
