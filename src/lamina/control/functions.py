"""Functions and their published versions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lamina.arns import FunctionRef, parse_layer_arn
from lamina.constants import (
    CODE_STORAGE_MAX_BYTES,
    LATEST,
    MAX_LAYERS,
    UNZIPPED_CODE_MAX_BYTES,
)
from lamina.control.code import CodeArchive, CodeSource, inspect_archive
from lamina.control.context import Domain
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.control.rules import check_config
from lamina.control.tags import check_tags
from lamina.errors import (
    CodeSigningConfigNotFound,
    CodeStorageExceeded,
    CodeVerificationFailed,
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.model.functions import (
    Alias,
    FunctionConfig,
    FunctionRecord,
    LayerRef,
    aws_timestamp,
    new_revision_id,
)

_STALE_REVISION = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


@dataclass(frozen=True)
class Resolved:
    """A function as a client addressed it: the record, the config, and how it was named."""

    record: FunctionRecord
    config: FunctionConfig
    qualifier: str | None
    alias: Alias | None = None


def merge_qualifier(ref: FunctionRef, explicit: str | None) -> str | None:
    if ref.qualifier and explicit and ref.qualifier != explicit:
        raise InvalidParameterValue(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return explicit or ref.qualifier


def check_revision(expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise PreconditionFailed(_STALE_REVISION)


class FunctionService:
    """Create, read, update, delete and publish functions."""

    def __init__(self, domain: Domain) -> None:
        self._domain = domain
        self._functions = domain.stores.functions
        self._account = domain.account

    # ----------------------------------------------------------------- lookups

    def not_found(self, name: str, qualifier: str | None = None) -> ResourceNotFound:
        return ResourceNotFound(
            f"Function not found: {self._account.function_arn(name, qualifier)}"
        )

    def require(self, name: str) -> FunctionRecord:
        record = self._functions.get(name)
        if record is None:
            raise self.not_found(name)
        return record

    def resolve(self, ref: FunctionRef, qualifier: str | None = None) -> Resolved:
        """Find the configuration `name[:qualifier]` refers to: $LATEST, a version or an alias."""
        qualifier = merge_qualifier(ref, qualifier)
        record = self._functions.get(ref.name)
        if record is None:
            raise self.not_found(ref.name, qualifier)
        if qualifier is None or qualifier == LATEST:
            return Resolved(record, record.latest, qualifier)
        if qualifier.isdigit():
            config = self._functions.get_version(ref.name, int(qualifier))
            if config is None:
                raise self.not_found(ref.name, qualifier)
            return Resolved(record, config, qualifier)
        alias = self._functions.get_alias(ref.name, qualifier)
        if alias is None:
            raise self.not_found(ref.name, qualifier)
        target = alias.function_version
        config = (
            record.latest
            if target == LATEST
            else self._functions.get_version(ref.name, int(target))
        )
        if config is None:
            raise self.not_found(ref.name, target)
        return Resolved(record, config, qualifier, alias)

    def unqualified(self, ref: FunctionRef, operation: str) -> FunctionRecord:
        if ref.qualifier:
            raise InvalidParameterValue(
                f"{operation} does not accept a qualified function name: "
                f"remove ':{ref.qualifier}' from {ref.name}:{ref.qualifier}"
            )
        return self.require(ref.name)

    # ------------------------------------------------------------------ create

    def create(
        self,
        name: str,
        settings: dict[str, Any],
        code: CodeSource,
        *,
        publish: bool = False,
        tags: dict[str, str] | None = None,
        code_signing_config_arn: str | None = None,
    ) -> FunctionConfig:
        if code_signing_config_arn:
            self._check_signing(code_signing_config_arn)
        check_tags(tags or {}, self._account.function_arn(name))
        archive = self._load_code(code)
        layer_arns = settings.pop("layer_arns", None) or ()
        layers = self._resolve_layers(layer_arns)
        with self._functions.transaction():
            if self._functions.get(name) is not None:
                raise ResourceConflict(f"Function already exist: {name}")
            blob = self._store_code(archive)
            config = FunctionConfig(
                function_name=name,
                code_sha256=archive.sha256,
                code_size=archive.size,
                code_blob=blob,
                unzipped_size=archive.unzipped_size,
                layers=layers,
                **settings,
            )
            check_config(config)
            self._check_unzipped(config)
            record = FunctionRecord(
                latest=config,
                tags=dict(tags or {}),
                code_signing_config_arn=code_signing_config_arn,
            )
            self._functions.put(record)
            if publish:
                return self._publish(record, description=None)
            return config

    # ------------------------------------------------------------------ update

    def update_configuration(
        self, ref: FunctionRef, settings: dict[str, Any], revision_id: str | None
    ) -> FunctionConfig:
        layer_arns = settings.pop("layer_arns", None)
        layers = self._resolve_layers(layer_arns) if layer_arns is not None else None
        with self._functions.transaction():
            record = self.unqualified(ref, "UpdateFunctionConfiguration")
            check_revision(revision_id, record.latest.revision_id)
            if layers is not None:
                settings["layers"] = layers
            config = record.latest.touched(**settings)
            check_config(config)
            self._check_unzipped(config)
            self._functions.put(replace(record, latest=config))
            return config

    def update_code(
        self,
        ref: FunctionRef,
        code: CodeSource,
        *,
        publish: bool = False,
        dry_run: bool = False,
        revision_id: str | None = None,
        architectures: Sequence[str] | None = None,
    ) -> FunctionConfig:
        record = self.unqualified(ref, "UpdateFunctionCode")
        if record.code_signing_config_arn:
            self._check_signing(record.code_signing_config_arn)
        archive = self._load_code(code)
        with self._functions.transaction():
            record = self.require(ref.name)
            check_revision(revision_id, record.latest.revision_id)
            changes: dict[str, Any] = {
                "code_sha256": archive.sha256,
                "code_size": archive.size,
                "unzipped_size": archive.unzipped_size,
            }
            if architectures:
                changes["architectures"] = tuple(architectures)
            if dry_run:
                return record.latest.touched(code_blob=record.latest.code_blob, **changes)
            config = record.latest.touched(code_blob=self._store_code(archive), **changes)
            self._check_unzipped(config)
            record = replace(record, latest=config)
            self._functions.put(record)
            if publish:
                return self._publish(record, description=None)
            return config

    # ------------------------------------------------------------------ delete

    def delete(self, ref: FunctionRef, qualifier: str | None) -> None:
        qualifier = merge_qualifier(ref, qualifier)
        with self._functions.transaction():
            record = self._functions.get(ref.name)
            if record is None:
                raise self.not_found(ref.name, qualifier)
            if qualifier is None:
                self._functions.delete(ref.name)
                return
            if qualifier == LATEST:
                raise InvalidParameterValue(
                    "$LATEST version cannot be deleted without deleting the function."
                )
            if not qualifier.isdigit():
                raise InvalidParameterValue(
                    "Deletion of aliases is not supported by DeleteFunction: use DeleteAlias "
                    f"to delete alias {qualifier}"
                )
            if self._functions.get_version(ref.name, int(qualifier)) is None:
                raise self.not_found(ref.name, qualifier)
            users = [
                alias.name
                for alias in self._functions.list_aliases(ref.name)
                if qualifier in {alias.function_version, *alias.additional_weights}
            ]
            if users:
                raise ResourceConflict(
                    f"Unable to delete version because the following aliases reference it: {users}"
                )
            self._functions.delete_version(ref.name, int(qualifier))
            for kind in ("policy", "url", "event-invoke", "provisioned", "runtime-management"):
                self._functions.delete_child(ref.name, kind, qualifier)

    # ----------------------------------------------------------------- listing

    def list_functions(
        self, marker: str | None, max_items: int | None, all_versions: bool
    ) -> tuple[list[FunctionConfig], str | None]:
        limit = page_size(max_items)
        position = decode_marker(marker)
        after_name, after_version = (position or [None, None]) if all_versions else (position, None)
        if all_versions:
            items, next_marker = take_page(
                self._all_versions(after_name, after_version), limit, lambda item: item[:2]
            )
            return [config for _, _, config in items], next_marker
        records, next_marker = take_page(
            self._functions.page(after_name, limit + 1), limit, lambda record: record.name
        )
        return [record.latest for record in records], next_marker

    def _all_versions(
        self, after_name: str | None, after_version: int | None
    ) -> Iterator[tuple[str, int, FunctionConfig]]:
        """$LATEST (as version 0) then each published version, function by function."""
        start = after_name
        if after_name is not None:
            # Resume inside the function the previous page stopped in.
            record = self._functions.get(after_name)
            if record is not None:
                yield from self._versions_of(record, after_version or 0)
        while True:
            batch = self._functions.page(start, 100)
            if not batch:
                return
            for record in batch:
                yield (record.name, 0, record.latest)
                yield from self._versions_of(record, 0)
            start = batch[-1].name

    def _versions_of(
        self, record: FunctionRecord, after: int
    ) -> Iterator[tuple[str, int, FunctionConfig]]:
        while True:
            batch = self._functions.list_versions(record.name, after, 100)
            if not batch:
                return
            for config in batch:
                yield (record.name, int(config.version), config)
            after = int(batch[-1].version)

    def list_versions(
        self, ref: FunctionRef, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionConfig], str | None]:
        record = self.unqualified(ref, "ListVersionsByFunction")
        limit = page_size(max_items)
        after = decode_marker(marker)
        configs: list[FunctionConfig] = []
        if after is None:
            configs.append(record.latest)
            after = 0
        configs.extend(self._functions.list_versions(record.name, int(after), limit + 1))
        configs, next_marker = take_page(
            configs, limit, lambda config: 0 if config.version == LATEST else int(config.version)
        )
        return configs, next_marker

    # -------------------------------------------------------------- publishing

    def publish_version(
        self,
        ref: FunctionRef,
        code_sha256: str | None,
        description: str | None,
        revision_id: str | None,
    ) -> FunctionConfig:
        with self._functions.transaction():
            record = self.unqualified(ref, "PublishVersion")
            check_revision(revision_id, record.latest.revision_id)
            if code_sha256 and code_sha256 != record.latest.code_sha256:
                raise InvalidParameterValue(
                    f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in "
                    f"$LATEST ({record.latest.code_sha256}). Please try again with the "
                    "CodeSHA256 in $LATEST."
                )
            return self._publish(record, description)

    def _publish(self, record: FunctionRecord, description: str | None) -> FunctionConfig:
        if record.last_published:
            previous = self._functions.get_version(record.name, record.last_published)
            if previous is not None and (
                previous.publishable_state() == record.latest.publishable_state()
            ):
                return previous
        number = record.last_published + 1
        version = replace(
            record.latest,
            version=str(number),
            description=record.latest.description if description is None else description,
            last_modified=aws_timestamp(),
            revision_id=new_revision_id(),
        )
        self._functions.put_version(version)
        self._functions.put(replace(record, last_published=number))
        return version

    # ----------------------------------------------------------------- helpers

    def _load_code(self, code: CodeSource) -> CodeArchive:
        return inspect_archive(code.read(self._domain.s3))

    def _store_code(self, archive: CodeArchive) -> str:
        stores = self._domain.stores
        if not stores.blobs.exists(archive.blob_key):
            used = stores.functions.total_code_size() + stores.layers.total_code_size()
            if used + archive.size > CODE_STORAGE_MAX_BYTES:
                raise CodeStorageExceeded("Code storage limit exceeded.")
        return stores.blobs.put(archive.data, archive.blob_key)

    def _resolve_layers(self, arns: Sequence[str]) -> tuple[LayerRef, ...]:
        if len(arns) > MAX_LAYERS:
            raise InvalidParameterValue(f"Cannot reference more than {MAX_LAYERS} layers.")
        refs: list[LayerRef] = []
        seen: set[str] = set()
        for arn in arns:
            parsed = parse_layer_arn(arn)
            if parsed is None or parsed.version is None:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            if parsed.name in seen:
                raise InvalidParameterValue(
                    "Two different versions of the same layer are not allowed to be referenced "
                    f"in the same function. {arn} references multiple layer versions."
                )
            seen.add(parsed.name)
            same_account = (
                parsed.account_id == self._account.account_id
                and parsed.region == self._account.region
            )
            layer = (
                self._domain.stores.layers.get_version(parsed.name, parsed.version)
                if same_account
                else None
            )
            if layer is None:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            refs.append(
                LayerRef(
                    arn=arn,
                    code_size=layer.code_size,
                    unzipped_size=layer.unzipped_size,
                    code_sha256=layer.code_sha256,
                )
            )
        return tuple(refs)

    @staticmethod
    def _check_unzipped(config: FunctionConfig) -> None:
        total = config.unzipped_size + sum(layer.unzipped_size for layer in config.layers)
        if total > UNZIPPED_CODE_MAX_BYTES:
            raise InvalidParameterValue(
                "Function code combined with layers exceeds the maximum allowed size of "
                f"{UNZIPPED_CODE_MAX_BYTES} bytes. The actual size is {total} bytes."
            )

    def _check_signing(self, config_arn: str) -> None:
        config_id = config_arn.rsplit(":", 1)[-1]
        ours = self._account.code_signing_config_arn(config_id) == config_arn
        config = self._domain.stores.code_signing.get(config_id) if ours else None
        if config is None:
            raise CodeSigningConfigNotFound(
                f"The code signing configuration {config_arn} does not exist. Check that it has "
                "not been deleted."
            )
        # Lamina has no signing service, so no archive it receives carries a trusted
        # signature: under Enforce every deployment is untrusted and refused, as on AWS.
        if config.untrusted_artifact_on_deployment == "Enforce":
            raise CodeVerificationFailed(
                "Lambda cannot deploy the function. The function or layer might be signed using "
                "a signature that the client is not configured to accept. Check the provided "
                f"signature for {config_arn}."
            )
