"""Layers: versioned archives that functions mount, and who may use each version."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson

from lamina.arns import parse_layer_arn
from lamina.constants import CODE_STORAGE_MAX_BYTES, POLICY_MAX_BYTES
from lamina.control.code import CodeArchive, CodeSource, inspect_archive
from lamina.control.context import Domain
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.errors import (
    CodeStorageExceeded,
    InvalidParameterValue,
    PolicyLengthExceeded,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.model.functions import LayerVersion, new_revision_id

GET_LAYER_VERSION = "lambda:GetLayerVersion"

_NOT_FOUND = "The resource you requested does not exist."
_STALE_POLICY = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetLayerPolicy API to retrieve the latest Revision Id"
)


def _matches(layer: LayerVersion, runtime: str | None, architecture: str | None) -> bool:
    """A filter selects only versions that declare the runtime / architecture."""
    return (runtime is None or runtime in layer.compatible_runtimes) and (
        architecture is None or architecture in layer.compatible_architectures
    )


def _check_version_number(version: int) -> None:
    if version < 1:
        raise InvalidParameterValue("Layer Version Cannot be less than 1")


def policy_document(layer: LayerVersion) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Id": "default", "Statement": list(layer.statements.values())}


class LayerService:
    """Publish, read, list and delete layer versions, and manage their permissions."""

    def __init__(self, domain: Domain) -> None:
        self._domain = domain
        self._store = domain.stores.layers
        self._account = domain.account

    # ------------------------------------------------------------------ versions

    def publish(
        self,
        name: str,
        content: CodeSource,
        *,
        description: str | None,
        compatible_runtimes: list[str] | None,
        compatible_architectures: list[str] | None,
        license_info: str | None,
    ) -> LayerVersion:
        archive = inspect_archive(content.read(self._domain.s3))
        with self._store.transaction():
            blob = self._store_archive(archive)
            # The counter outlives deleted versions, so a number is never handed out twice.
            number = self._store.last_version(name) + 1
            self._store.set_last_version(name, number)
            layer = LayerVersion(
                name=name,
                version=number,
                code_sha256=archive.sha256,
                code_size=archive.size,
                code_blob=blob,
                unzipped_size=archive.unzipped_size,
                description=description or "",
                compatible_runtimes=tuple(compatible_runtimes or ()),
                compatible_architectures=tuple(compatible_architectures or ()),
                license_info=license_info,
            )
            self._store.put_version(layer)
            return layer

    def get(self, name: str, version: int) -> LayerVersion:
        _check_version_number(version)
        layer = self._store.get_version(name, version)
        if layer is None:
            raise ResourceNotFound(_NOT_FOUND)
        return layer

    def _permissions_of(self, name: str, version: int) -> LayerVersion:
        """The version whose permissions are asked for; AWS names a missing one."""
        layer = self._store.get_version(name, version)
        if layer is None:
            raise ResourceNotFound(
                f"Layer version {self._account.layer_arn(name, version)} does not exist."
            )
        return layer

    def get_by_arn(self, arn: str) -> LayerVersion:
        ref = parse_layer_arn(arn)
        if ref is None or ref.version is None:
            raise InvalidParameterValue(
                f"Invalid layer version ARN: {arn}. Expected "
                "arn:aws:lambda:<region>:<account>:layer:<name>:<version>"
            )
        if ref.account_id != self._account.account_id or ref.region != self._account.region:
            raise ResourceNotFound(_NOT_FOUND)
        return self.get(ref.name, ref.version)

    def delete(self, name: str, version: int) -> None:
        # Idempotent, as on AWS; functions already using the version keep their copy.
        _check_version_number(version)
        with self._store.transaction():
            self._store.delete_version(name, version)

    # ------------------------------------------------------------------- listing

    def list_layers(
        self,
        runtime: str | None,
        architecture: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[LayerVersion], str | None]:
        """The newest version of each layer that matches the filters, by layer name."""
        limit = page_size(max_items)
        after = decode_marker(marker)
        found = (
            layer
            for layer in self._latest_matching(runtime, architecture)
            if after is None or layer.name > after
        )
        return take_page(found, limit, lambda layer: layer.name)

    def _latest_matching(
        self, runtime: str | None, architecture: str | None
    ) -> Iterator[LayerVersion]:
        for latest in self._store.latest_versions():
            if _matches(latest, runtime, architecture):
                yield latest
                continue
            older = (
                layer
                for layer in self._store.list_versions(latest.name)
                if _matches(layer, runtime, architecture)
            )
            match = next(older, None)
            if match is not None:
                yield match

    def list_versions(
        self,
        name: str,
        runtime: str | None,
        architecture: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[LayerVersion], str | None]:
        """Versions newest first; an unknown layer simply has none."""
        limit = page_size(max_items)
        before = decode_marker(marker)
        if before is not None and not isinstance(before, int):
            raise InvalidParameterValue(f"Invalid Marker: {marker}")
        versions = [
            layer
            for layer in self._store.list_versions(name)
            if _matches(layer, runtime, architecture) and (before is None or layer.version < before)
        ]
        return take_page(versions, limit, lambda layer: layer.version)

    # --------------------------------------------------------------- permissions

    def add_permission(
        self,
        name: str,
        version: int,
        statement_id: str,
        action: str,
        principal: str,
        organization_id: str | None,
        revision_id: str | None,
    ) -> tuple[dict[str, Any], str]:
        """Grant `principal` use of one layer version; returns the statement and new revision."""
        if action != GET_LAYER_VERSION:
            raise InvalidParameterValue(
                f"Action {action} is not supported for layers: use {GET_LAYER_VERSION}"
            )
        if organization_id and principal != "*":
            raise InvalidParameterValue(
                "OrganizationId can only be used with Principal '*': the organization "
                "condition narrows a grant to everyone"
            )
        with self._store.transaction():
            layer = self._permissions_of(name, version)
            if statement_id in layer.statements:
                raise ResourceConflict(
                    f"The statement id ({statement_id}) provided already exists. Please provide "
                    "a new statement id, or remove the existing statement."
                )
            if revision_id is not None and revision_id != layer.policy_revision_id:
                raise PreconditionFailed(_STALE_POLICY)
            statement: dict[str, Any] = {
                "Sid": statement_id,
                "Effect": "Allow",
                "Principal": self._principal(principal),
                "Action": GET_LAYER_VERSION,
                "Resource": self._account.layer_arn(name, version),
            }
            if organization_id:
                statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": organization_id}}
            updated = replace(
                layer,
                statements={**layer.statements, statement_id: statement},
                policy_revision_id=new_revision_id(),
            )
            size = len(orjson.dumps(policy_document(updated)))
            if size > POLICY_MAX_BYTES:
                raise PolicyLengthExceeded(
                    f"The final policy size ({size}) is bigger than the limit ({POLICY_MAX_BYTES})."
                )
            self._store.put_version(updated)
            return statement, updated.policy_revision_id

    def policy(self, name: str, version: int) -> tuple[dict[str, Any], str]:
        layer = self._permissions_of(name, version)
        if not layer.statements:
            raise ResourceNotFound("No policy is associated with the given resource.")
        return policy_document(layer), layer.policy_revision_id

    def remove_permission(
        self, name: str, version: int, statement_id: str, revision_id: str | None
    ) -> None:
        with self._store.transaction():
            layer = self._permissions_of(name, version)
            if revision_id is not None and revision_id != layer.policy_revision_id:
                raise PreconditionFailed(_STALE_POLICY)
            if statement_id not in layer.statements:
                raise ResourceNotFound(f"Statement {statement_id} is not found in resource policy.")
            statements = {sid: doc for sid, doc in layer.statements.items() if sid != statement_id}
            self._store.put_version(
                replace(layer, statements=statements, policy_revision_id=new_revision_id())
            )

    # ------------------------------------------------------------------- helpers

    @staticmethod
    def _principal(principal: str) -> str | dict[str, str]:
        if principal == "*":
            return "*"
        if principal.isdigit():
            return {"AWS": f"arn:aws:iam::{principal}:root"}
        return {"AWS": principal}

    def _store_archive(self, archive: CodeArchive) -> str:
        stores = self._domain.stores
        if not stores.blobs.exists(archive.blob_key):
            used = stores.functions.total_code_size() + stores.layers.total_code_size()
            if used + archive.size > CODE_STORAGE_MAX_BYTES:
                raise CodeStorageExceeded("Code storage limit exceeded.")
        return stores.blobs.put(archive.data)
