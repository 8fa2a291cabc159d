"""AliasService on real SQLite stores: targets, routing weights, revisions, listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.arns import FunctionRef
from lamina.constants import LATEST
from lamina.control.aliases import AliasService
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from tests.support.domain import fails_with, function_settings, open_domain, source

ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"
FN = FunctionRef("fn", None)


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    return open_domain(tmp_path / "data")


@pytest.fixture
def functions(domain: Domain) -> FunctionService:
    """`fn` with versions 1 and 2 (which differ in their timeout)."""
    service = FunctionService(domain)
    service.create("fn", function_settings(), source(), publish=True)
    service.update_configuration(FN, {"timeout": 10}, None)
    service.publish_version(FN, None, None, None)
    return service


@pytest.fixture
def aliases(domain: Domain, functions: FunctionService) -> AliasService:
    return AliasService(domain, functions)


def test_create_and_get(aliases: AliasService) -> None:
    alias = aliases.create(FN, "live", "1", "production", None)
    assert (alias.function_name, alias.name, alias.function_version) == ("fn", "live", "1")
    assert alias.description == "production"
    assert alias.additional_weights == {}
    assert aliases.get(FN, "live") == alias


def test_an_alias_may_point_at_latest(aliases: AliasService, functions: FunctionService) -> None:
    aliases.create(FN, "head", LATEST, None, None)
    resolved = functions.resolve(FunctionRef("fn", "head"))
    assert resolved.config.version == LATEST
    assert aliases.get(FN, "head").description == ""


def test_create_refuses_a_duplicate(aliases: AliasService) -> None:
    aliases.create(FN, "live", "1", None, None)
    with fails_with(ResourceConflict, f"Alias already exists: {ARN}:live"):
        aliases.create(FN, "live", "2", None, None)
    assert aliases.get(FN, "live").function_version == "1"


def test_create_refuses_a_missing_version_or_function(aliases: AliasService) -> None:
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:9"):
        aliases.create(FN, "live", "9", None, None)
    with fails_with(
        ResourceNotFound, "Function not found: arn:aws:lambda:us-east-1:123456789012:function:no"
    ):
        aliases.create(FunctionRef("no", None), "live", "1", None, None)
    with fails_with(ResourceNotFound, f"Cannot find alias arn: {ARN}:live"):
        aliases.get(FN, "live")


def test_create_refuses_a_qualified_function_name(aliases: AliasService) -> None:
    message = "CreateAlias does not accept a qualified function name: remove ':1' from fn:1"
    with fails_with(InvalidParameterValue, message):
        aliases.create(FunctionRef("fn", "1"), "live", "1", None, None)


# ------------------------------------------------------------------------------ routing


def test_routing_splits_traffic_with_a_second_version(aliases: AliasService) -> None:
    alias = aliases.create(FN, "canary", "2", None, {"1": 0.25})
    assert alias.additional_weights == {"1": 0.25}
    assert aliases.get(FN, "canary").additional_weights == {"1": 0.25}


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_routing_weights_at_the_bounds_are_accepted(aliases: AliasService, weight: float) -> None:
    assert aliases.create(FN, "edge", "2", None, {"1": weight}).additional_weights == {"1": weight}


@pytest.mark.parametrize(
    ("version", "weights", "message"),
    [
        (
            "2",
            {"1": 0.1, "3": 0.1},
            "Number of items in AdditionalVersionWeights cannot be greater than 1",
        ),
        (
            LATEST,
            {"1": 0.1},
            "$LATEST is not supported for an alias pointing to more than 1 version",
        ),
        (
            "1",
            {LATEST: 0.1},
            "$LATEST is not supported for an alias pointing to more than 1 version",
        ),
        ("2", {"one": 0.1}, "Invalid function version one in routing config"),
        (
            "2",
            {"2": 0.1},
            "Invalid function version 2. Function version 2 is already included in routing "
            "configuration.",
        ),
        ("2", {"1": 1.5}, "Invalid weight 1.5 for version 1: weights are between 0.0 and 1.0"),
        ("2", {"1": -0.1}, "Invalid weight -0.1 for version 1: weights are between 0.0 and 1.0"),
    ],
)
def test_invalid_routing_is_refused(
    aliases: AliasService, version: str, weights: dict[str, float], message: str
) -> None:
    with fails_with(InvalidParameterValue, message):
        aliases.create(FN, "bad", version, None, weights)
    with fails_with(ResourceNotFound, f"Cannot find alias arn: {ARN}:bad"):
        aliases.get(FN, "bad")


def test_routing_to_a_missing_version(aliases: AliasService) -> None:
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:7"):
        aliases.create(FN, "bad", "2", None, {"7": 0.5})


def test_routed_versions_must_share_role_and_dead_letter_queue(
    aliases: AliasService, functions: FunctionService
) -> None:
    functions.update_configuration(FN, {"role": "arn:aws:iam::123456789012:role/other"}, None)
    functions.publish_version(FN, None, None, None)  # 3: another role
    functions.update_configuration(
        FN,
        {
            "role": function_settings()["role"],
            "dead_letter_target": "arn:aws:sqs:us-east-1:123456789012:dlq",
        },
        None,
    )
    functions.publish_version(FN, None, None, None)  # 4: the same role, a DLQ
    with fails_with(
        InvalidParameterValue,
        "The versions in an alias's routing configuration must have the same execution role",
    ):
        aliases.create(FN, "mixed", "2", None, {"3": 0.5})
    with fails_with(
        InvalidParameterValue,
        "The versions in an alias's routing configuration must have the same dead-letter "
        "queue configuration",
    ):
        aliases.create(FN, "mixed", "2", None, {"4": 0.5})


# ------------------------------------------------------------------------------- update


def test_update_changes_only_what_is_given(aliases: AliasService) -> None:
    created = aliases.create(FN, "live", "1", "first", None)
    moved = aliases.update(FN, "live", "2", None, None, created.revision_id)
    assert (moved.function_version, moved.description) == ("2", "first")
    assert moved.revision_id != created.revision_id
    routed = aliases.update(FN, "live", None, "split", {"1": 0.5}, None)
    assert (routed.function_version, routed.description) == ("2", "split")
    assert routed.additional_weights == {"1": 0.5}
    # No weights given keeps the routing; an empty map removes it.
    kept = aliases.update(FN, "live", None, None, None, None)
    assert kept.additional_weights == {"1": 0.5}
    cleared = aliases.update(FN, "live", None, None, {}, None)
    assert cleared.additional_weights == {}
    assert aliases.get(FN, "live") == cleared


def test_update_with_a_stale_revision(aliases: AliasService) -> None:
    created = aliases.create(FN, "live", "1", None, None)
    aliases.update(FN, "live", "2", None, None, None)
    with fails_with(
        PreconditionFailed,
        "The Revision Id provided does not match the latest Revision Id. "
        "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
    ):
        aliases.update(FN, "live", "1", None, None, created.revision_id)
    assert aliases.get(FN, "live").function_version == "2"


def test_update_checks_the_new_routing_against_the_kept_version(aliases: AliasService) -> None:
    aliases.create(FN, "live", "2", None, None)
    with fails_with(
        InvalidParameterValue,
        "Invalid function version 2. Function version 2 is already included in routing "
        "configuration.",
    ):
        aliases.update(FN, "live", None, None, {"2": 0.5}, None)


def test_update_of_a_missing_alias(aliases: AliasService) -> None:
    with fails_with(ResourceNotFound, f"Cannot find alias arn: {ARN}:nope"):
        aliases.update(FN, "nope", "1", None, None, None)


# ----------------------------------------------------------------------- delete, listing


def test_delete_removes_the_alias_and_what_hangs_off_it(
    aliases: AliasService, domain: Domain
) -> None:
    aliases.create(FN, "live", "1", None, None)
    store = domain.stores.functions
    store.put_child("fn", "policy", "live", {"statements": {}})
    store.put_child("fn", "policy", "1", {"statements": {}})
    aliases.delete(FN, "live")
    with fails_with(ResourceNotFound, f"Cannot find alias arn: {ARN}:live"):
        aliases.get(FN, "live")
    assert store.get_child("fn", "policy", "live") is None
    # The version's own policy is not the alias's.
    assert store.get_child("fn", "policy", "1") == {"statements": {}}


def test_list_aliases_filters_by_version_and_pages(aliases: AliasService) -> None:
    for name, version in (("c", "1"), ("a", "2"), ("b", "1"), ("d", "1")):
        aliases.create(FN, name, version, None, None)
    everything, none_left = aliases.list_aliases(FN, None, None, None)
    assert [alias.name for alias in everything] == ["a", "b", "c", "d"]
    assert none_left is None
    first, marker = aliases.list_aliases(FN, "1", None, 2)
    assert [alias.name for alias in first] == ["b", "c"]
    rest, end = aliases.list_aliases(FN, "1", marker, 2)
    assert [alias.name for alias in rest] == ["d"]
    assert end is None
