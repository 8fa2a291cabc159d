"""ConcurrencyService on real SQLite stores: reserved and provisioned concurrency within the
account's pool, of which 100 must stay unreserved."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.arns import FunctionRef
from lamina.constants import LATEST, UNRESERVED_CONCURRENCY_MIN
from lamina.control.aliases import AliasService
from lamina.control.concurrency import ConcurrencyService, commitments, unreserved_concurrency
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.errors import (
    InvalidParameterValue,
    ProvisionedConcurrencyConfigNotFound,
    ResourceConflict,
)
from tests.support.domain import fails_with, function_settings, open_domain, source

ACCOUNT_LIMIT = 1000
RESERVABLE = ACCOUNT_LIMIT - UNRESERVED_CONCURRENCY_MIN
NOT_FOUND = "No Provisioned Concurrency Config found for this function"
UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
ALIAS_CONFLICT = (
    "Alias can't be used for Provisioned Concurrency configuration on an already "
    "Provisioned version"
)
VERSION_CONFLICT = "Version is pointed by a Provisioned Concurrency alias"
RESERVED_TOO_HIGH = (
    "Specified ReservedConcurrentExecutions for function decreases account's "
    "UnreservedConcurrentExecution below its minimum value of [100]."
)
PROVISIONED_TOO_HIGH = (
    "Specified ConcurrentExecutions for function decreases account's "
    "UnreservedConcurrentExecution below its minimum value of [100]."
)
OVER_RESERVED = (
    "Requested Provisioned Concurrency should not be greater than the "
    "reservedConcurrentExecution for function"
)


def fn(name: str = "fn", qualifier: str | None = None) -> FunctionRef:
    return FunctionRef(name, qualifier)


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    return open_domain(tmp_path / "data", account_concurrency=ACCOUNT_LIMIT)


@pytest.fixture
def functions(domain: Domain) -> FunctionService:
    """`fn` (versions 1 and 2, alias `live` -> 2, alias `head` -> $LATEST) and `other`."""
    service = FunctionService(domain)
    service.create("fn", function_settings(), source(), publish=True)
    service.update_configuration(fn(), {"timeout": 10}, None)
    service.publish_version(fn(), None, None, None)
    aliases = AliasService(domain, service)
    aliases.create(fn(), "live", "2", None, None)
    aliases.create(fn(), "head", LATEST, None, None)
    service.create("other", function_settings(), source(), publish=True)
    return service


@pytest.fixture
def concurrency(domain: Domain, functions: FunctionService) -> ConcurrencyService:
    return ConcurrencyService(domain, functions)


# ------------------------------------------------------------------------------ reserved


def test_put_get_and_delete_reserved(concurrency: ConcurrencyService) -> None:
    assert concurrency.get_reserved(fn()) is None
    assert concurrency.put_reserved(fn(), 25) == 25
    assert concurrency.get_reserved(fn()) == 25
    assert concurrency.put_reserved(fn(), 0) == 0
    assert concurrency.get_reserved(fn()) == 0
    concurrency.delete_reserved(fn())
    assert concurrency.get_reserved(fn()) is None
    # Deleting what is not there is not an error.
    concurrency.delete_reserved(fn())


def test_reservations_leave_the_unreserved_minimum(concurrency: ConcurrencyService) -> None:
    concurrency.put_reserved(fn("other"), 500)
    with fails_with(InvalidParameterValue, RESERVED_TOO_HIGH):
        concurrency.put_reserved(fn(), RESERVABLE - 500 + 1)
    assert concurrency.get_reserved(fn()) is None
    assert concurrency.put_reserved(fn(), RESERVABLE - 500) == 400
    # Changing a function's own reservation does not count the old value against it.
    assert concurrency.put_reserved(fn(), RESERVABLE - 500) == 400
    with fails_with(InvalidParameterValue, RESERVED_TOO_HIGH):
        concurrency.put_reserved(fn("other"), 501)


def test_an_account_below_the_minimum_cannot_reserve(
    domain: Domain, functions: FunctionService
) -> None:
    small = Domain(domain.stores, domain.account, domain.s3, account_concurrency=100)
    with fails_with(InvalidParameterValue, RESERVED_TOO_HIGH):
        ConcurrencyService(small, functions).put_reserved(fn(), 1)
    # A smaller account keeps all of its pool, and names that as the minimum, as AWS does.
    tiny = ConcurrencyService(
        Domain(domain.stores, domain.account, domain.s3, account_concurrency=10), functions
    )
    with fails_with(InvalidParameterValue, RESERVED_TOO_HIGH.replace("[100]", "[10]")):
        tiny.put_reserved(fn(), 1)
    with fails_with(InvalidParameterValue, PROVISIONED_TOO_HIGH.replace("[100]", "[10]")):
        tiny.put_provisioned(fn(), "1", 1)
    # Reserving 0 lowers nothing, so it is always allowed.
    assert tiny.put_reserved(fn(), 0) == 0


def test_reserved_cannot_go_below_the_functions_provisioned(
    concurrency: ConcurrencyService,
) -> None:
    concurrency.put_provisioned(fn(), "1", 5)
    # AWS's text, recorded, leading space and double space included.
    message = (
        " ReservedConcurrentExecutions  3 should not be lower than function's total "
        "provisioned concurrency [5]."
    )
    with fails_with(InvalidParameterValue, message):
        concurrency.put_reserved(fn(), 3)
    assert concurrency.put_reserved(fn(), 5) == 5


def test_reserved_operations_refuse_a_qualified_name(concurrency: ConcurrencyService) -> None:
    qualified = fn("fn", "1")
    refusal = (
        "This operation is permitted on Lambda functions only. Aliases and versions do not "
        "support this operation. Please specify either a function name or an unqualified "
        "function ARN."
    )
    with fails_with(InvalidParameterValue, refusal):
        concurrency.put_reserved(qualified, 1)
    with fails_with(InvalidParameterValue, refusal):
        concurrency.get_reserved(qualified)
    with fails_with(InvalidParameterValue, refusal):
        concurrency.delete_reserved(qualified)


def test_removing_a_reservation_is_never_refused(
    domain: Domain, functions: FunctionService, concurrency: ConcurrencyService
) -> None:
    concurrency.put_reserved(fn(), 30)
    concurrency.put_provisioned(fn(), "1", 20)
    concurrency.put_reserved(fn("other"), 400)
    # Even with the account's limit lowered since (a setting) to what is committed: the
    # function's provisioned 20 replaces its reservation of 30, which lowers nothing.
    lowered = ConcurrencyService(
        Domain(domain.stores, domain.account, domain.s3, account_concurrency=430), functions
    )
    lowered.delete_reserved(fn())
    assert lowered.get_reserved(fn()) is None
    assert commitments(domain.stores.functions).total == 420


# --------------------------------------------------------------------------- provisioned


def test_put_get_and_delete_provisioned(concurrency: ConcurrencyService) -> None:
    config = concurrency.put_provisioned(fn(), "1", 3)
    assert (config.requested, config.allocated, config.available) == (3, 0, 0)
    assert config.status == "IN_PROGRESS"
    assert concurrency.get_provisioned(fn(), "1") == config
    # An alias is its own target, even when it points at a version that has a config.
    concurrency.put_provisioned(fn("fn", "live"), None, 2)
    assert concurrency.get_provisioned(fn(), "live").requested == 2
    concurrency.delete_provisioned(fn(), "1")
    with fails_with(ProvisionedConcurrencyConfigNotFound, NOT_FOUND):
        concurrency.get_provisioned(fn(), "1")
    concurrency.delete_provisioned(fn(), "1")  # already gone: a no-op, as on AWS
    assert concurrency.get_provisioned(fn(), "live").requested == 2


@pytest.mark.parametrize("qualifier", [None, LATEST, "head"])
def test_provisioned_needs_a_published_version(
    concurrency: ConcurrencyService, qualifier: str | None
) -> None:
    with fails_with(InvalidParameterValue, UNPUBLISHED):
        concurrency.put_provisioned(fn(), qualifier, 1)


def test_provisioned_fits_inside_the_reservation(concurrency: ConcurrencyService) -> None:
    concurrency.put_reserved(fn(), 4)
    concurrency.put_provisioned(fn(), "1", 3)
    # Across qualifiers: 3 on version 1 plus 2 on the alias is 5.
    with fails_with(InvalidParameterValue, OVER_RESERVED):
        concurrency.put_provisioned(fn(), "live", 2)
    # Replacing a qualifier's config does not add to it.
    assert concurrency.put_provisioned(fn(), "1", 4).requested == 4


def test_provisioned_without_a_reservation_draws_on_the_account(
    concurrency: ConcurrencyService,
) -> None:
    concurrency.put_reserved(fn("other"), 850)
    with fails_with(InvalidParameterValue, PROVISIONED_TOO_HIGH):
        concurrency.put_provisioned(fn(), "1", RESERVABLE - 850 + 1)
    concurrency.put_provisioned(fn(), "1", 30)
    with fails_with(InvalidParameterValue, PROVISIONED_TOO_HIGH):
        concurrency.put_provisioned(fn(), "2", 21)
    concurrency.put_provisioned(fn(), "2", 20)
    # fn's provisioned now commits 50: other's reservation cannot grow into it.
    with fails_with(InvalidParameterValue, RESERVED_TOO_HIGH):
        concurrency.put_reserved(fn("other"), 851)


def test_commitments_count_reservations_and_unreserved_provisioning(
    domain: Domain, concurrency: ConcurrencyService
) -> None:
    concurrency.put_reserved(fn("other"), 40)
    concurrency.put_provisioned(fn("other"), "1", 10)  # inside other's reservation
    concurrency.put_provisioned(fn(), "1", 7)
    concurrency.put_provisioned(fn(), "live", 5)
    counted = commitments(domain.stores.functions)
    assert (counted.reserved, counted.provisioned, counted.total) == (40, 12, 52)
    assert commitments(domain.stores.functions, excluding="other").total == 12
    assert commitments(domain.stores.functions, excluding="fn").total == 40


def test_list_provisioned_in_pages(
    domain: Domain, functions: FunctionService, concurrency: ConcurrencyService
) -> None:
    AliasService(domain, functions).create(fn(), "blue", "2", None, None)
    concurrency.put_provisioned(fn(), "live", 1)
    concurrency.put_provisioned(fn(), "1", 1)
    concurrency.put_provisioned(fn(), "blue", 1)
    name, first, marker = concurrency.list_provisioned(fn(), None, 2)
    assert name == "fn"
    assert [qualifier for qualifier, _ in first] == ["1", "blue"]
    _, rest, end = concurrency.list_provisioned(fn(), marker, 2)
    assert [qualifier for qualifier, _ in rest] == ["live"]
    assert end is None


def test_a_version_is_provisioned_directly_or_through_its_aliases(
    domain: Domain, functions: FunctionService, concurrency: ConcurrencyService
) -> None:
    concurrency.put_provisioned(fn(), "2", 1)
    with fails_with(ResourceConflict, ALIAS_CONFLICT):
        concurrency.put_provisioned(fn(), "live", 1)
    concurrency.delete_provisioned(fn(), "2")
    concurrency.put_provisioned(fn(), "live", 1)
    with fails_with(ResourceConflict, VERSION_CONFLICT):
        concurrency.put_provisioned(fn(), "2", 1)
    # Other versions, and other aliases of the same version, are not in the way.
    concurrency.put_provisioned(fn(), "1", 1)
    AliasService(domain, functions).create(fn(), "blue", "2", None, None)
    concurrency.put_provisioned(fn(), "blue", 1)
    assert {key for key, _ in concurrency.list_provisioned(fn(), None, None)[1]} == {
        "1",
        "blue",
        "live",
    }


# ------------------------------------------------------------------------- engine side


def test_the_engine_reports_progress_for_the_put_it_worked_on(
    concurrency: ConcurrencyService,
) -> None:
    first = concurrency.put_provisioned(fn(), "1", 2)
    assert concurrency.record_provisioned("fn", "1", first.token, "READY", 2)
    ready = concurrency.get_provisioned(fn(), "1")
    assert (ready.status, ready.allocated, ready.available) == ("READY", 2, 2)
    replaced = concurrency.put_provisioned(fn(), "1", 3)
    assert replaced.token != first.token
    # Work on the replaced config lands nowhere.
    assert not concurrency.record_provisioned("fn", "1", first.token, "READY", 2)
    assert concurrency.get_provisioned(fn(), "1").status == "IN_PROGRESS"
    concurrency.delete_provisioned(fn(), "1")
    assert not concurrency.record_provisioned("fn", "1", replaced.token, "READY", 3)


def test_provisioned_targets_name_published_versions_only(
    domain: Domain, functions: FunctionService, concurrency: ConcurrencyService
) -> None:
    concurrency.put_provisioned(fn(), "1", 1)
    concurrency.put_provisioned(fn(), "live", 2)
    targets = {
        (t.qualifier, t.version.version, t.config.requested)
        for t in concurrency.provisioned_targets()
    }
    assert targets == {("1", "1", 1), ("live", "2", 2)}
    # An alias moved to $LATEST no longer names a version to keep environments for.
    AliasService(domain, functions).update(fn(), "live", LATEST, None, None, None)
    assert [t.qualifier for t in concurrency.provisioned_targets()] == ["1"]


def test_a_weighted_alias_splits_its_provisioned_concurrency_by_weight(
    domain: Domain, functions: FunctionService, concurrency: ConcurrencyService
) -> None:
    aliases = AliasService(domain, functions)
    aliases.update(fn(), "live", "2", None, {"1": 0.25}, None)
    concurrency.put_provisioned(fn(), "live", 4)
    (target,) = concurrency.provisioned_targets()
    assert target.additional is not None
    assert (target.version.version, target.additional.version, target.weight) == ("2", "1", 0.25)
    assert [(version.version, count) for version, count in target.split()] == [("2", 3), ("1", 1)]
    # Half of an odd count: the tie goes to the primary version.
    concurrency.put_provisioned(fn(), "live", 3)
    aliases.update(fn(), "live", "2", None, {"1": 0.5}, None)
    (target,) = concurrency.provisioned_targets()
    assert [(version.version, count) for version, count in target.split()] == [("2", 2), ("1", 1)]
    # A version whose share rounds to nothing holds no environments.
    aliases.update(fn(), "live", "2", None, {"1": 0.1}, None)
    (target,) = concurrency.provisioned_targets()
    assert [(version.version, count) for version, count in target.split()] == [("2", 3)]


def test_the_unreserved_pool_is_what_commitments_leave(
    domain: Domain, concurrency: ConcurrencyService
) -> None:
    concurrency.put_reserved(fn("other"), 40)
    concurrency.put_provisioned(fn(), "1", 7)
    committed = commitments(domain.stores.functions).total
    assert unreserved_concurrency(ACCOUNT_LIMIT, committed) == ACCOUNT_LIMIT - 47
    assert unreserved_concurrency(10, 47) == 0
