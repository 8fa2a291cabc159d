"""Reserved concurrency per function and provisioned concurrency per version or alias.

Both draw on the account's concurrency pool, of which UNRESERVED_CONCURRENCY_MIN (or the whole
pool, in an account smaller than that) must stay unreserved: a function with reserved
concurrency commits that much, and its provisioned concurrency is carved out of it; a function
without commits the provisioned concurrency of its versions and aliases. A change is refused
only when it would lower the unreserved pool below that minimum, as AWS refuses it.

Provisioned concurrency on a version and on an alias pointing at that version exclude each
other (AWS's ResourceConflictException). An alias that routes to a second version has its
provisioned concurrency split between the two versions by weight (`ProvisionedTarget.split`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace

from lamina.arns import FunctionRef
from lamina.constants import LATEST, UNRESERVED_CONCURRENCY_MIN
from lamina.control.context import Domain
from lamina.control.functions import (
    FunctionNotFound,
    FunctionService,
    Resolved,
    alias_not_found,
    merge_qualifier,
)
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.control.states import SNAPSTART_APPLY_ON, SNAPSTART_PROVISIONED
from lamina.errors import (
    InvalidParameterValue,
    ProvisionedConcurrencyConfigNotFound,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.model.functions import (
    Alias,
    Document,
    FunctionConfig,
    FunctionRecord,
    aws_timestamp,
)
from lamina.store.protocols import FunctionStore

PROVISIONED_KIND = "provisioned"

_UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
# AWS's texts for over-subscription and for a version provisioned twice (recorded on AWS).
_PROVISIONED_OVER_RESERVED = (
    "Requested Provisioned Concurrency should not be greater than the "
    "reservedConcurrentExecution for function"
)
_ALIAS_ON_PROVISIONED_VERSION = (
    "Alias can't be used for Provisioned Concurrency configuration on an already "
    "Provisioned version"
)
_VERSION_UNDER_PROVISIONED_ALIAS = "Version is pointed by a Provisioned Concurrency alias"


def refuse_snapstart(store: FunctionStore, function: str, versions: list[str]) -> None:
    """Provisioned concurrency cannot apply to any of `versions` that has SnapStart on."""
    for version in versions:
        config = None if version == LATEST else store.get_version(function, int(version))
        if config is not None and config.snap_start == SNAPSTART_APPLY_ON:
            raise InvalidParameterValue(SNAPSTART_PROVISIONED)


def _reserved_below_provisioned(reserved: int, provisioned: int) -> str:
    # AWS's wording, leading space and double space included.
    return (
        f" ReservedConcurrentExecutions  {reserved} should not be lower than function's "
        f"total provisioned concurrency [{provisioned}]."
    )


def _below_minimum(parameter: str, minimum: int) -> str:
    return (
        f"Specified {parameter} for function decreases account's "
        f"UnreservedConcurrentExecution below its minimum value of [{minimum}]."
    )


def unreserved_minimum(account_limit: int) -> int:
    """What must stay unreserved: 100, or the whole pool of an account smaller than that."""
    return min(account_limit, UNRESERVED_CONCURRENCY_MIN)


@dataclass(frozen=True)
class ProvisionedConcurrency(Document):
    """One version's or alias's provisioned concurrency; the engine moves it to READY."""

    requested: int
    allocated: int = 0
    available: int = 0
    status: str = "IN_PROGRESS"
    status_reason: str | None = None
    last_modified: str = field(default_factory=aws_timestamp)

    @property
    def token(self) -> tuple[str, int]:
        """Identifies one Put: a later Put of the same qualifier changes it."""
        return self.last_modified, self.requested


@dataclass(frozen=True)
class ProvisionedTarget:
    """A stored config together with the published version its qualifier points at, and,
    for an alias that routes to a second version, that version and its weight."""

    function: str
    qualifier: str
    config: ProvisionedConcurrency
    version: FunctionConfig
    additional: FunctionConfig | None = None
    weight: float = 0.0

    def split(self) -> list[tuple[FunctionConfig, int]]:
        """How many environments each version gets: the routed version its share by weight
        (ties go to the primary), the primary the rest. Versions given none are left out."""
        extra = 0
        if self.additional is not None:
            extra = max(0, math.ceil(self.config.requested * self.weight - 0.5))
        shares = [(self.version, self.config.requested - extra)]
        if self.additional is not None:
            shares.append((self.additional, extra))
        return [(version, count) for version, count in shares if count > 0]


class ConcurrencyService:
    """Put/Get/Delete reserved concurrency and provisioned concurrency configs."""

    def __init__(self, domain: Domain, functions: FunctionService) -> None:
        self._functions = functions
        self._store = domain.stores.functions
        self._limit = domain.account_concurrency

    # ------------------------------------------------------------------ reserved

    def put_reserved(self, ref: FunctionRef, reserved: int) -> int:
        with self._store.transaction():
            record = self._functions.unqualified(ref, "PutFunctionConcurrency")
            provisioned = sum(self._provisioned_by_function().get(record.name, {}).values())
            if reserved < provisioned:
                raise InvalidParameterValue(_reserved_below_provisioned(reserved, provisioned))
            others = self._committed(excluding=record.name)
            before = (
                provisioned if record.reserved_concurrency is None else record.reserved_concurrency
            )
            self._keep_unreserved_minimum(
                others + before, others + reserved, "ReservedConcurrentExecutions"
            )
            self._store.put(replace(record, reserved_concurrency=reserved))
            return reserved

    def get_reserved(self, ref: FunctionRef) -> int | None:
        return self._functions.unqualified(ref, "GetFunctionConcurrency").reserved_concurrency

    def delete_reserved(self, ref: FunctionRef) -> None:
        # Never refused: the function's provisioned concurrency, which moves from inside the
        # reservation to the account's commitments, is at most the reservation it replaces.
        with self._store.transaction():
            record = self._functions.unqualified(ref, "DeleteFunctionConcurrency")
            if record.reserved_concurrency is None:
                return
            self._store.put(replace(record, reserved_concurrency=None))

    # --------------------------------------------------------------- provisioned

    def put_provisioned(
        self, ref: FunctionRef, qualifier: str | None, requested: int
    ) -> ProvisionedConcurrency:
        with self._store.transaction():
            record, qualifier = self._published_target(ref, qualifier)
            configured = self._provisioned_by_function().get(record.name, {})
            others = {key: value for key, value in configured.items() if key != qualifier}
            total = sum(others.values()) + requested
            if record.reserved_concurrency is not None:
                if total > record.reserved_concurrency:
                    raise InvalidParameterValue(_PROVISIONED_OVER_RESERVED)
            else:
                committed = self._committed(excluding=record.name)
                self._keep_unreserved_minimum(
                    committed + sum(configured.values()),
                    committed + total,
                    "ConcurrentExecutions",
                )
            self._refuse_double_provisioning(record.name, qualifier, others)
            config = ProvisionedConcurrency(requested=requested)
            self._store.put_child(record.name, PROVISIONED_KIND, qualifier, config.to_doc())
            return config

    def get_provisioned(self, ref: FunctionRef, qualifier: str | None) -> ProvisionedConcurrency:
        name, qualifier = self._existing_target(ref, qualifier)
        doc = self._store.get_child(name, PROVISIONED_KIND, qualifier)
        if doc is None:
            raise ProvisionedConcurrencyConfigNotFound(
                "No Provisioned Concurrency Config found for this function"
            )
        return ProvisionedConcurrency.from_doc(doc)

    def delete_provisioned(self, ref: FunctionRef, qualifier: str | None) -> None:
        with self._store.transaction():
            # Deleting a config that is not there succeeds, as on AWS.
            name, qualifier = self._existing_target(ref, qualifier)
            self._store.delete_child(name, PROVISIONED_KIND, qualifier)

    def list_provisioned(
        self, ref: FunctionRef, marker: str | None, max_items: int | None
    ) -> tuple[str, list[tuple[str, ProvisionedConcurrency]], str | None]:
        """The function's name and its configs by qualifier, one page, with the next marker."""
        record = self._functions.unqualified(ref, "ListProvisionedConcurrencyConfigs")
        configs = sorted(
            (
                (key, ProvisionedConcurrency.from_doc(doc))
                for key, doc in self._store.list_children(record.name, PROVISIONED_KIND)
            ),
            key=lambda item: item[0],
        )
        after = decode_marker(marker)
        if after is not None:
            configs = [(key, config) for key, config in configs if key > str(after)]
        page, next_marker = take_page(configs, page_size(max_items), lambda item: item[0])
        return record.name, page, next_marker

    # ------------------------------------------------- engine side (provisioning)

    def provisioned_targets(self) -> list[ProvisionedTarget]:
        """Every stored config whose qualifier still names a published version."""
        targets = []
        for name, qualifier, doc in self._store.list_children_of_kind(PROVISIONED_KIND):
            try:
                resolved = self._functions.resolve(FunctionRef(name, None), qualifier)
                additional, weight = self._routed_version(name, resolved.alias)
            except ResourceNotFound:
                continue
            if resolved.config.version != LATEST:
                targets.append(
                    ProvisionedTarget(
                        name,
                        qualifier,
                        ProvisionedConcurrency.from_doc(doc),
                        resolved.config,
                        additional,
                        weight,
                    )
                )
        return targets

    def _routed_version(
        self, name: str, alias: Alias | None
    ) -> tuple[FunctionConfig | None, float]:
        """The second version an alias routes to, with its weight (None when it routes to one)."""
        if alias is None or not alias.additional_weights:
            return None, 0.0
        ((extra, weight),) = alias.additional_weights.items()
        return self._functions.resolve(FunctionRef(name, None), extra).config, weight

    def provisioned_config(self, name: str, qualifier: str) -> ProvisionedConcurrency | None:
        doc = self._store.get_child(name, PROVISIONED_KIND, qualifier)
        return None if doc is None else ProvisionedConcurrency.from_doc(doc)

    def record_provisioned(
        self,
        name: str,
        qualifier: str,
        token: tuple[str, int],
        status: str,
        allocated: int,
        reason: str | None = None,
    ) -> bool:
        """Report what the engine achieved for the Put identified by `token`.

        Returns False (and changes nothing) when the config was deleted or replaced since.
        """
        with self._store.transaction():
            current = self.provisioned_config(name, qualifier)
            if current is None or current.token != token:
                return False
            updated = replace(
                current,
                status=status,
                allocated=allocated,
                available=allocated,
                status_reason=reason,
            )
            if updated != current:
                self._store.put_child(name, PROVISIONED_KIND, qualifier, updated.to_doc())
            return True

    # ------------------------------------------------------------------ helpers

    def _published_target(
        self, ref: FunctionRef, qualifier: str | None
    ) -> tuple[FunctionRecord, str]:
        """The function and a qualifier naming a published version, directly or via an alias."""
        qualifier = merge_qualifier(ref, qualifier)
        if not qualifier or qualifier == LATEST:
            raise InvalidParameterValue(_UNPUBLISHED)
        resolved = self._resolve(ref, qualifier)
        if resolved.config.version == LATEST:
            raise InvalidParameterValue(_UNPUBLISHED)
        routed = resolved.alias.additional_weights if resolved.alias is not None else {}
        refuse_snapstart(self._store, resolved.record.name, [resolved.config.version, *routed])
        return resolved.record, qualifier

    def _existing_target(self, ref: FunctionRef, qualifier: str | None) -> tuple[str, str]:
        qualifier = merge_qualifier(ref, qualifier) or LATEST
        if qualifier == LATEST:
            raise InvalidParameterValue(
                "The function resource provided must be an alias or a published version."
            )
        return self._resolve(ref, qualifier).record.name, qualifier

    def _resolve(self, ref: FunctionRef, qualifier: str) -> Resolved:
        """AWS names a missing alias, even of a missing function, `Cannot find alias arn`."""
        try:
            return self._functions.resolve(ref, qualifier)
        except FunctionNotFound:
            raise alias_not_found(self._functions.not_found(ref.name, qualifier)) from None

    def _keep_unreserved_minimum(self, before: int, after: int, parameter: str) -> None:
        """Refuse a change that takes the account's commitments from `before` to `after` when
        it lowers the unreserved pool below its minimum (a change that lowers nothing passes,
        so reserving 0 is always allowed)."""
        minimum = unreserved_minimum(self._limit)
        if after > before and self._limit - after < minimum:
            raise InvalidParameterValue(_below_minimum(parameter, minimum))

    def _refuse_double_provisioning(
        self, name: str, qualifier: str, others: dict[str, int]
    ) -> None:
        """A version is provisioned either directly or through aliases that point at it."""
        if qualifier.isdigit():
            for key in others:
                alias = None if key.isdigit() else self._store.get_alias(name, key)
                if alias is not None and alias.function_version == qualifier:
                    raise ResourceConflict(_VERSION_UNDER_PROVISIONED_ALIAS)
            return
        alias = self._store.get_alias(name, qualifier)
        if alias is not None and alias.function_version in others:
            raise ResourceConflict(_ALIAS_ON_PROVISIONED_VERSION)

    def _provisioned_by_function(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = defaultdict(dict)
        for name, key, doc in self._store.list_children_of_kind(PROVISIONED_KIND):
            found[name][key] = ProvisionedConcurrency.from_doc(doc).requested
        return found

    def _committed(self, excluding: str) -> int:
        """Concurrency the other functions take from the account pool."""
        return commitments(self._store, excluding).total


@dataclass(frozen=True)
class Commitments:
    """What functions take out of the account's pool ahead of any invocation."""

    # Reserved concurrency of the functions that have a reservation.
    reserved: int
    # Provisioned concurrency of the functions without one (with one, it is inside it).
    provisioned: int

    @property
    def total(self) -> int:
        """Concurrency outside the unreserved pool."""
        return self.reserved + self.provisioned


def unreserved_concurrency(account_limit: int, committed: int) -> int:
    """The unreserved pool: the account's limit less what functions commit ahead of any
    invocation (`Commitments.total`). GetAccountSettings reports it as
    UnreservedConcurrentExecutions, and the engine admits unreserved invocations within it."""
    return max(0, account_limit - committed)


def commitments(store: FunctionStore, excluding: str | None = None) -> Commitments:
    """The account's commitments, leaving out function `excluding` (one being changed)."""
    provisioned: dict[str, int] = defaultdict(int)
    for name, _, doc in store.list_children_of_kind(PROVISIONED_KIND):
        provisioned[name] += ProvisionedConcurrency.from_doc(doc).requested
    # A function's provisioned concurrency is inside its reservation, where it has one.
    # (Child documents go with their function: every name here is a function's.)
    reservations = store.reservations()
    reserved = sum(count for name, count in reservations.items() if name != excluding)
    unreserved_provisioned = sum(
        count
        for name, count in provisioned.items()
        if name != excluding and name not in reservations
    )
    return Commitments(reserved, unreserved_provisioned)
