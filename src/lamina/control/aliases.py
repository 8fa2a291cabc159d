"""Aliases: named pointers to one version, optionally splitting traffic with a second."""

from __future__ import annotations

from dataclasses import replace

from lamina.arns import FunctionRef
from lamina.constants import LATEST
from lamina.control.concurrency import refuse_snapstart
from lamina.control.context import Domain
from lamina.control.functions import FunctionService, check_revision
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from lamina.model.functions import Alias, new_revision_id


class AliasService:
    def __init__(self, domain: Domain, functions: FunctionService) -> None:
        self._functions = functions
        self._store = domain.stores.functions
        self._account = domain.account

    def _arn(self, function: str, alias: str) -> str:
        return self._account.function_arn(function, alias)

    def _check_target(self, function: str, version: str, weights: dict[str, float] | None) -> None:
        if version != LATEST and self._store.get_version(function, int(version)) is None:
            raise ResourceNotFound(
                f"Function not found: {self._account.function_arn(function, version)}"
            )
        if not weights:
            return
        if len(weights) > 1:
            raise InvalidParameterValue(
                "Number of items in AdditionalVersionWeights cannot be greater than 1"
            )
        ((extra, weight),) = weights.items()
        if LATEST in {version, extra}:
            refusal = InvalidParameterValue(
                "$LATEST is not supported for an alias pointing to more than 1 version"
            )
            refusal.error_type = None  # AWS sends this one without a Type
            raise refusal
        if not extra.isdigit():
            raise InvalidParameterValue(f"Invalid function version {extra} in routing config")
        if extra == version:
            raise InvalidParameterValue(
                f"Invalid function version {extra}. Function version {extra} is already "
                "included in routing configuration."
            )
        if not 0.0 <= weight <= 1.0:
            raise InvalidParameterValue(
                f"Invalid weight {weight} for version {extra}: weights are between 0.0 and 1.0"
            )
        extra_config = self._store.get_version(function, int(extra))
        if extra_config is None:
            raise ResourceNotFound(
                f"Function not found: {self._account.function_arn(function, extra)}"
            )
        primary = self._store.get_version(function, int(version))
        assert primary is not None
        if primary.role != extra_config.role:
            raise InvalidParameterValue(
                "The versions in an alias's routing configuration must have the same execution role"
            )
        if primary.dead_letter_target != extra_config.dead_letter_target:
            raise InvalidParameterValue(
                "The versions in an alias's routing configuration must have the same "
                "dead-letter queue configuration"
            )

    def create(
        self,
        ref: FunctionRef,
        name: str,
        version: str,
        description: str | None,
        weights: dict[str, float] | None,
    ) -> Alias:
        with self._store.transaction():
            record = self._functions.unqualified(ref, "CreateAlias")
            if self._store.get_alias(record.name, name) is not None:
                raise ResourceConflict(f"Alias already exists: {self._arn(record.name, name)}")
            self._check_target(record.name, version, weights)
            alias = Alias(
                function_name=record.name,
                name=name,
                function_version=version,
                description=description or "",
                additional_weights=dict(weights or {}),
            )
            self._store.put_alias(alias)
            return alias

    def get(self, ref: FunctionRef, name: str) -> Alias:
        record = self._functions.unqualified(ref, "GetAlias")
        alias = self._store.get_alias(record.name, name)
        if alias is None:
            raise ResourceNotFound(f"Cannot find alias arn: {self._arn(record.name, name)}")
        return alias

    def update(
        self,
        ref: FunctionRef,
        name: str,
        version: str | None,
        description: str | None,
        weights: dict[str, float] | None,
        revision_id: str | None,
    ) -> Alias:
        with self._store.transaction():
            alias = self.get(ref, name)
            check_revision(revision_id, alias.revision_id)
            target = version or alias.function_version
            routing = alias.additional_weights if weights is None else weights
            self._check_target(alias.function_name, target, routing)
            if self._store.get_child(alias.function_name, "provisioned", name) is not None:
                # Its configuration would then apply to a SnapStart version.
                refuse_snapstart(self._store, alias.function_name, [target, *routing])
            updated = replace(
                alias,
                function_version=target,
                description=alias.description if description is None else description,
                additional_weights=dict(routing),
                revision_id=new_revision_id(),
            )
            self._store.put_alias(updated)
            return updated

    def delete(self, ref: FunctionRef, name: str) -> None:
        with self._store.transaction():
            record = self._functions.unqualified(ref, "DeleteAlias")
            self._store.delete_alias(record.name, name)
            for kind in ("policy", "url", "event-invoke", "provisioned", "runtime-management"):
                self._store.delete_child(record.name, kind, name)

    def list_aliases(
        self,
        ref: FunctionRef,
        version: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[Alias], str | None]:
        record = self._functions.unqualified(ref, "ListAliases")
        aliases = [
            alias
            for alias in self._store.list_aliases(record.name)
            if version is None or alias.function_version == version
        ]
        after = decode_marker(marker)
        if after is not None:
            aliases = [alias for alias in aliases if alias.name > after]
        return take_page(aliases, page_size(max_items), lambda alias: alias.name)
