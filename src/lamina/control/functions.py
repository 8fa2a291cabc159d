"""Functions and their published versions."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lamina.arns import FunctionRef
from lamina.constants import (
    LATEST,
)
from lamina.control.activation import Activation, Snapshotter
from lamina.control.code import CodeArchive, CodeSource
from lamina.control.context import Domain
from lamina.control.function_networks import FunctionNetworks
from lamina.control.kms import check_function_key
from lamina.control.networks import NetworkCatalog
from lamina.control.packages import Packages
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.control.rules import check_config
from lamina.control.states import (
    ACTIVE,
    INTERNAL_ERROR,
    PENDING,
    ActivationFailed,
    NoPreparation,
    Preparer,
    check_modifiable,
    creating,
    runnable,
    settled,
    snap_started,
    updating,
)
from lamina.control.tags import check_tags
from lamina.errors import (
    InvalidParameterValue,
    LaminaError,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.model.functions import (
    Alias,
    FunctionConfig,
    FunctionRecord,
    PendingChange,
    aws_timestamp,
    new_revision_id,
)

log = logging.getLogger("lamina.control")

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

    @property
    def runnable(self) -> FunctionConfig:
        """What an invocation runs (the previous `$LATEST` while an update is InProgress)."""
        return runnable(self.record, self.config)


class FunctionNotFound(ResourceNotFound):
    """`Function not found: <arn>`, remembering the name and qualifier that were looked up, so
    that operations AWS answers in other words can say theirs (see `alias_not_found`)."""

    def __init__(self, arn: str, name: str, qualifier: str | None) -> None:
        super().__init__(f"Function not found: {arn}")
        self.arn = arn
        self.name = name
        self.qualifier = qualifier

    @property
    def names_alias(self) -> bool:
        """Whether the qualifier that was not found reads as an alias name."""
        return self.qualifier is not None and _ALIAS_NAME.fullmatch(self.qualifier) is not None


_ALIAS_NAME = re.compile(r"(?!^[0-9]+$)[a-zA-Z0-9_-]+")
_QUALIFIED_ONLY = (
    "This operation is permitted on Lambda functions only. Aliases and versions do not "
    "support this operation. Please specify either a function name or an unqualified "
    "function ARN."
)
# Operations that refuse a qualified name in AWS's words (the rest keep Lamina's), and those
# whose `Function not found` names the function's $LATEST (recorded on AWS).
_UNQUALIFIED_ONLY_OPERATIONS = frozenset(
    {"PutFunctionConcurrency", "GetFunctionConcurrency", "DeleteFunctionConcurrency"}
)
_NOT_FOUND_AT_LATEST = frozenset({"PutFunctionConcurrency", "DeleteFunctionConcurrency"})


def alias_not_found(error: FunctionNotFound) -> ResourceNotFound:
    """How operations on an alias's settings (permissions, provisioned concurrency) answer a
    missing alias: `Cannot find alias arn: <arn>`; other misses keep `Function not found`."""
    if error.names_alias:
        return ResourceNotFound(f"Cannot find alias arn: {error.arn}")
    return error


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

    def __init__(
        self,
        domain: Domain,
        preparer: Preparer | None = None,
        networks: FunctionNetworks | None = None,
    ) -> None:
        self._domain = domain
        # The operator's networks file (VpcConfig, FileSystemConfigs); none: no VPC exists.
        self.networks = networks or FunctionNetworks(NetworkCatalog(), domain.account)
        self._functions = domain.stores.functions
        self._account = domain.account
        self._packages = Packages(domain)
        self._activation = Activation(self._functions, domain.s3, preparer or NoPreparation())

    # ----------------------------------------------------------------- lookups

    def not_found(self, name: str, qualifier: str | None = None) -> FunctionNotFound:
        return FunctionNotFound(self._account.function_arn(name, qualifier), name, qualifier)

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
            if operation in _UNQUALIFIED_ONLY_OPERATIONS:
                raise InvalidParameterValue(_QUALIFIED_ONLY)
            raise InvalidParameterValue(
                f"{operation} does not accept a qualified function name: "
                f"remove ':{ref.qualifier}' from {ref.name}:{ref.qualifier}"
            )
        record = self._functions.get(ref.name)
        if record is None:
            implied = LATEST if operation in _NOT_FOUND_AT_LATEST else None
            raise self.not_found(ref.name, implied)
        return record

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
            self._packages.check_signing(code_signing_config_arn)
        check_tags(tags or {}, self._account.function_arn(name))
        # Code in S3 is read during activation, after the function is accepted Pending.
        staged = code.s3_location()
        archive = None if staged else self._packages.load(code)
        layer_arns = settings.pop("layer_arns", None) or ()
        layers = self._packages.resolve_layers(layer_arns)
        with self._functions.transaction():
            if self._functions.get(name) is not None:
                raise ResourceConflict(f"Function already exist: {name}")
            config = FunctionConfig(
                function_name=name,
                code_sha256="",
                code_size=0,
                code_blob="",
                unzipped_size=0,
                layers=layers,
                **settings,
            )
            check_config(config)
            config = self.networks.checked(config, settings)
            check_function_key(self._domain.stores.kms, config.kms_key_arn)
            if archive is not None:
                config = self._packages.with_code(config, archive)
            config = creating(config)
            change = PendingChange(config.revision_id, code=staged, publish=publish)
            record = FunctionRecord(
                latest=config,
                tags=dict(tags or {}),
                code_signing_config_arn=code_signing_config_arn,
                change=change,
            )
            self._functions.put(record)
        return self._activate(name, change)

    # ------------------------------------------------------------------ update

    def update_configuration(
        self, ref: FunctionRef, settings: dict[str, Any], revision_id: str | None
    ) -> FunctionConfig:
        layer_arns = settings.pop("layer_arns", None)
        layers = self._packages.resolve_layers(layer_arns) if layer_arns is not None else None
        with self._functions.transaction():
            record = self.unqualified(ref, "UpdateFunctionConfiguration")
            check_revision(revision_id, record.latest.revision_id)
            check_modifiable(record, self._account.function_arn(record.name))
            if layers is not None:
                settings["layers"] = layers
            config = record.latest.touched(**settings)
            check_config(config)
            config = self.networks.checked(config, settings)
            if "kms_key_arn" in settings:
                check_function_key(self._domain.stores.kms, config.kms_key_arn)
            self._packages.check_unzipped(config)
            config = updating(config)
            change = PendingChange(config.revision_id, previous=record.latest)
            self._functions.put(replace(record, latest=config, change=change))
        return self._activate(record.name, change)

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
            self._packages.check_signing(record.code_signing_config_arn)
        changes: dict[str, Any] = {}
        if architectures:
            changes["architectures"] = tuple(architectures)
        if dry_run:
            checked = self._packages.load(code)
            check_revision(revision_id, record.latest.revision_id)
            return record.latest.touched(
                code_sha256=checked.sha256,
                code_size=checked.size,
                unzipped_size=checked.unzipped_size,
                **changes,
            )
        # Code in S3 is read during activation, after the update is accepted InProgress.
        staged = code.s3_location()
        archive = None if staged else self._packages.load(code)
        with self._functions.transaction():
            record = self.require(ref.name)
            check_revision(revision_id, record.latest.revision_id)
            check_modifiable(record, self._account.function_arn(record.name))
            config = record.latest.touched(**changes)
            if archive is not None:
                config = self._packages.with_code(config, archive)
            config = updating(config)
            change = PendingChange(
                config.revision_id, code=staged, publish=publish, previous=record.latest
            )
            self._functions.put(replace(record, latest=config, change=change))
        return self._activate(record.name, change)

    # ------------------------------------------------------------------ delete

    def delete(self, ref: FunctionRef, qualifier: str | None) -> None:
        qualifier = merge_qualifier(ref, qualifier)
        if qualifier == LATEST:
            # Refused before the function is looked up, as AWS refuses it.
            raise InvalidParameterValue(
                "$LATEST version cannot be deleted without deleting the function."
            )
        with self._functions.transaction():
            record = self._functions.get(ref.name)
            if record is None:
                # AWS names the function, not the version asked for.
                raise self.not_found(ref.name)
            if qualifier is None:
                self._functions.delete(ref.name)
                return
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
                    "Unable to delete version because the following aliases reference it: "
                    f"[{', '.join(users)}]"
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
            check_modifiable(record, self._account.function_arn(record.name))
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
        if record.change is not None:
            # Published with a create or an update: Pending until the change is activated.
            version = creating(version)
        elif version.state == ACTIVE:
            version = settled(version)  # no update behind it, even if $LATEST's last one failed
            # SnapStart: Pending until its snapshot is made (its init runs now, once).
            version = self._activation.published(version)
        self._functions.put_version(version)
        self._functions.put(replace(record, last_published=number))
        if record.change is None:
            self._activation.request_snapshot(version)
        return version

    # -------------------------------------------------------------- SnapStart

    def use_snapshotter(self, snapshotter: Snapshotter) -> None:
        """Make published SnapStart versions' snapshots with `snapshotter` (the data plane)."""
        self._activation.snapshotter = snapshotter

    def snapshot_made(
        self, name: str, version: str, revision_id: str, failure: ActivationFailed | None
    ) -> None:
        self._activation.snapshot_made(name, version, revision_id, failure)

    def finish_snapshots(self) -> int:
        """Make again the snapshots a stop interrupted (versions left Pending by SnapStart
        alone, at start); how many there were."""
        if self._activation.snapshotter is None:
            return 0
        pending = [
            config
            for _, number, config in self._all_versions(None, None)
            if number and config.state == PENDING and snap_started(config)
        ]
        for config in pending:
            record = self._functions.get(config.function_name)
            if record is not None and record.change is None:
                self._activation.request_snapshot(config)
        return len(pending)

    # -------------------------------------------------------------- activation

    def _activate(self, name: str, change: PendingChange) -> FunctionConfig:
        """Activate an accepted change before answering, and answer the configuration as
        accepted: Pending or InProgress, or the version published with it.

        Reading code from S3 fails as on AWS, synchronously, and withdraws the change;
        what fails later (unpacking) ends it Failed instead.
        """
        try:
            archive = None
            if change.code is not None:
                archive = self._packages.load(CodeSource.from_s3_location(change.code))
            accepted = self._take_code(name, change.revision_id, archive)
        except Exception:
            self._activation.withdraw(name, change.revision_id)
            raise
        self._activation.settle(name, change.revision_id)
        return accepted

    def finish_changes(self) -> int:
        """Activate every change a stop interrupted (at start); how many there were."""
        unfinished: list[tuple[str, PendingChange]] = []
        after: str | None = None
        while batch := self._functions.page(after, 100):
            unfinished += [(record.name, record.change) for record in batch if record.change]
            after = batch[-1].name
        for name, change in unfinished:
            try:
                self._finish_interrupted(name, change)
            except Exception:
                log.exception("finishing the interrupted change of function %s failed", name)
        return len(unfinished)

    def _finish_interrupted(self, name: str, change: PendingChange) -> None:
        try:
            archive = self._activation.read_interrupted(change)
            self._take_code(name, change.revision_id, archive)
        except (ActivationFailed, LaminaError) as error:
            failure = (
                error
                if isinstance(error, ActivationFailed)
                else ActivationFailed(INTERNAL_ERROR, error.message)
            )
            self._activation.finish(name, change.revision_id, failure)
            return
        self._activation.settle(name, change.revision_id)

    def _take_code(
        self, name: str, revision_id: str, archive: CodeArchive | None
    ) -> FunctionConfig:
        """The change's code is in (`archive`, when read from S3): store it, publish if asked."""
        with self._functions.transaction():
            record = self._activation.unsettled(name, revision_id)
            if record is None or record.change is None:
                raise self.not_found(name)
            if archive is None and not record.change.publish:
                return record.latest  # nothing to write: the code came with the request
            change = replace(record.change, code=None)
            latest = (
                record.latest
                if archive is None
                else self._packages.with_code(record.latest, archive)
            )
            record = replace(record, latest=latest, change=change)
            self._functions.put(record)
            if not change.publish:
                return latest
            version = self._publish(record, description=None)
            number = int(version.version)
            if number > record.last_published:
                change = replace(change, version=number)
                self._functions.put(replace(record, last_published=number, change=change))
            return version
