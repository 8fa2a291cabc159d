"""Reserved concurrency per function and provisioned concurrency per version or alias.

Both draw on the account's concurrency pool, of which UNRESERVED_CONCURRENCY_MIN must stay
unreserved: a function with reserved concurrency commits that much; one without commits the
provisioned concurrency of its versions and aliases.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from lamina.arns import FunctionRef
from lamina.constants import LATEST, UNRESERVED_CONCURRENCY_MIN
from lamina.control.context import Domain
from lamina.control.functions import FunctionService, merge_qualifier
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.errors import (
    InvalidParameterValue,
    ProvisionedConcurrencyConfigNotFound,
    ResourceNotFound,
)
from lamina.model.functions import Document, FunctionConfig, FunctionRecord, aws_timestamp
from lamina.store.protocols import FunctionStore

PROVISIONED_KIND = "provisioned"

_UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."


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
    """A stored config together with the published version its qualifier points at."""

    function: str
    qualifier: str
    config: ProvisionedConcurrency
    version: FunctionConfig


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
                raise InvalidParameterValue(
                    f"Specified ReservedConcurrentExecutions for function ({reserved}) is less "
                    f"than its total ProvisionedConcurrentExecutions ({provisioned}): lower the "
                    "provisioned concurrency first."
                )
            if self._committed(excluding=record.name) + reserved > self._reservable():
                raise InvalidParameterValue(
                    "Specified ReservedConcurrentExecutions for function decreases account's "
                    "UnreservedConcurrentExecution below its minimum value of "
                    f"[{UNRESERVED_CONCURRENCY_MIN}]."
                )
            self._store.put(replace(record, reserved_concurrency=reserved))
            return reserved

    def get_reserved(self, ref: FunctionRef) -> int | None:
        return self._functions.unqualified(ref, "GetFunctionConcurrency").reserved_concurrency

    def delete_reserved(self, ref: FunctionRef) -> None:
        with self._store.transaction():
            record = self._functions.unqualified(ref, "DeleteFunctionConcurrency")
            if record.reserved_concurrency is None:
                return
            others = self._committed(excluding=record.name)
            own = sum(self._provisioned_by_function().get(record.name, {}).values())
            if others + own > self._reservable():
                raise InvalidParameterValue(
                    "Removing ReservedConcurrentExecutions would let this function's "
                    f"provisioned concurrency ({own}) decrease account's "
                    "UnreservedConcurrentExecution below its minimum value of "
                    f"[{UNRESERVED_CONCURRENCY_MIN}]."
                )
            self._store.put(replace(record, reserved_concurrency=None))

    # --------------------------------------------------------------- provisioned

    def put_provisioned(
        self, ref: FunctionRef, qualifier: str | None, requested: int
    ) -> ProvisionedConcurrency:
        with self._store.transaction():
            record, qualifier = self._published_target(ref, qualifier)
            others = {
                key: value
                for key, value in self._provisioned_by_function().get(record.name, {}).items()
                if key != qualifier
            }
            total = sum(others.values()) + requested
            if record.reserved_concurrency is not None:
                if total > record.reserved_concurrency:
                    raise InvalidParameterValue(
                        "Requested Provisioned Concurrency should not be greater than the "
                        f"reservedConcurrentExecution for function ({record.reserved_concurrency})."
                    )
            elif self._committed(excluding=record.name) + total > self._reservable():
                raise InvalidParameterValue(
                    "Specified ProvisionedConcurrentExecutions for function decreases account's "
                    "UnreservedConcurrentExecution below its minimum value of "
                    f"[{UNRESERVED_CONCURRENCY_MIN}]."
                )
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
            name, qualifier = self._existing_target(ref, qualifier)
            if self._store.get_child(name, PROVISIONED_KIND, qualifier) is None:
                raise ProvisionedConcurrencyConfigNotFound(
                    "No Provisioned Concurrency Config found for this function"
                )
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
                version = self._functions.resolve(FunctionRef(name, None), qualifier).config
            except ResourceNotFound:
                continue
            if version.version != LATEST:
                targets.append(
                    ProvisionedTarget(
                        name, qualifier, ProvisionedConcurrency.from_doc(doc), version
                    )
                )
        return targets

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
        resolved = self._functions.resolve(ref, qualifier)
        if resolved.config.version == LATEST:
            raise InvalidParameterValue(_UNPUBLISHED)
        return resolved.record, qualifier

    def _existing_target(self, ref: FunctionRef, qualifier: str | None) -> tuple[str, str]:
        qualifier = merge_qualifier(ref, qualifier) or LATEST
        if qualifier == LATEST:
            return self._functions.require(ref.name).name, qualifier
        return self._functions.resolve(ref, qualifier).record.name, qualifier

    def _reservable(self) -> int:
        return self._limit - UNRESERVED_CONCURRENCY_MIN

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


def commitments(store: FunctionStore, excluding: str | None = None) -> Commitments:
    """The account's commitments, leaving out function `excluding` (one being changed)."""
    provisioned: dict[str, int] = defaultdict(int)
    for name, _, doc in store.list_children_of_kind(PROVISIONED_KIND):
        provisioned[name] += ProvisionedConcurrency.from_doc(doc).requested
    reserved = unreserved_provisioned = 0
    after: str | None = None
    while batch := store.page(after, 1000):
        for record in batch:
            if record.name == excluding:
                continue
            if record.reserved_concurrency is not None:
                reserved += record.reserved_concurrency
            else:
                unreserved_provisioned += provisioned.get(record.name, 0)
        after = batch[-1].name
    return Commitments(reserved, unreserved_provisioned)
