"""Domain records. Stores persist them with `to_doc`/`from_doc`; the API layer renders them."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Self

from lamina.constants import LATEST


def new_revision_id() -> str:
    return str(uuid.uuid4())


def aws_timestamp(moment: datetime | None = None) -> str:
    """Lambda's `LastModified` format, e.g. `2019-09-23T18:14:46.711+0000`."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


class Document:
    """Mixin for records stored as JSON documents."""

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class LayerRef(Document):
    """A layer version a function uses, as listed in its configuration."""

    arn: str
    code_size: int
    unzipped_size: int = 0
    code_sha256: str = ""


@dataclass(frozen=True)
class LoggingConfig(Document):
    log_format: str = "Text"
    application_log_level: str | None = None
    system_log_level: str | None = None
    log_group: str | None = None


@dataclass(frozen=True)
class FunctionConfig(Document):
    """The configuration of `$LATEST` or of one published version."""

    function_name: str
    role: str
    runtime: str | None
    handler: str | None
    code_sha256: str
    code_size: int
    code_blob: str
    unzipped_size: int
    description: str = ""
    timeout: int = 3
    memory_size: int = 128
    version: str = LATEST
    environment: dict[str, str] | None = None
    dead_letter_target: str | None = None
    kms_key_arn: str | None = None
    tracing_mode: str = "PassThrough"
    layers: tuple[LayerRef, ...] = ()
    ephemeral_storage: int = 512
    architectures: tuple[str, ...] = ("x86_64",)
    snap_start: str = "None"
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    vpc_config: dict[str, Any] | None = None
    file_system_configs: tuple[dict[str, Any], ...] = ()
    package_type: str = "Zip"
    last_modified: str = field(default_factory=aws_timestamp)
    revision_id: str = field(default_factory=new_revision_id)
    # The state machine (`lamina.control.states`): None is a field AWS leaves out.
    state: str = "Active"
    state_reason: str | None = None
    state_reason_code: str | None = None
    last_update_status: str | None = "Successful"
    last_update_status_reason: str | None = None
    last_update_status_reason_code: str | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        doc = dict(doc)
        doc["layers"] = tuple(LayerRef.from_doc(layer) for layer in doc.get("layers", ()))
        doc["logging"] = LoggingConfig.from_doc(doc.get("logging") or {})
        doc["architectures"] = tuple(doc.get("architectures") or ("x86_64",))
        doc["file_system_configs"] = tuple(doc.get("file_system_configs") or ())
        return super().from_doc(doc)

    def touched(self, **changes: Any) -> FunctionConfig:
        """A copy with `changes`, a new revision and a new modification time."""
        return replace(
            self, **changes, last_modified=aws_timestamp(), revision_id=new_revision_id()
        )

    def publishable_state(self) -> tuple[Any, ...]:
        """What PublishVersion compares to decide whether anything changed."""
        return (
            self.code_sha256,
            self.description,
            self.runtime,
            self.handler,
            self.role,
            self.timeout,
            self.memory_size,
            self.environment,
            self.dead_letter_target,
            self.kms_key_arn,
            self.tracing_mode,
            self.layers,
            self.ephemeral_storage,
            self.architectures,
            self.snap_start,
            self.logging,
            self.vpc_config,
            self.file_system_configs,
        )


@dataclass(frozen=True)
class PendingChange(Document):
    """A create or update of `$LATEST` accepted but not yet settled (Pending or InProgress).

    Kept in the record, so a change a crash interrupted is finished when Lamina starts.
    """

    # The RevisionId `$LATEST` was accepted with: which change this is.
    revision_id: str
    # Code still to be read from S3 (S3Bucket, S3Key, S3ObjectVersion), once accepted.
    code: dict[str, str] | None = None
    publish: bool = False
    # The version published with the change, once the code is in.
    version: int | None = None
    # `$LATEST` before an update, restored if the update fails; None for a create.
    previous: FunctionConfig | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        doc = dict(doc)
        if doc.get("previous") is not None:
            doc["previous"] = FunctionConfig.from_doc(doc["previous"])
        return super().from_doc(doc)


@dataclass(frozen=True)
class FunctionRecord(Document):
    """The function aggregate's root: `$LATEST` plus function-wide settings."""

    latest: FunctionConfig
    last_published: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None
    recursive_loop: str = "Terminate"
    code_signing_config_arn: str | None = None
    change: PendingChange | None = None

    @property
    def name(self) -> str:
        return self.latest.function_name

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        doc = dict(doc)
        doc["latest"] = FunctionConfig.from_doc(doc["latest"])
        if doc.get("change") is not None:
            doc["change"] = PendingChange.from_doc(doc["change"])
        return super().from_doc(doc)


@dataclass(frozen=True)
class Alias(Document):
    function_name: str
    name: str
    function_version: str
    description: str = ""
    additional_weights: dict[str, float] = field(default_factory=dict)
    revision_id: str = field(default_factory=new_revision_id)


@dataclass(frozen=True)
class LayerVersion(Document):
    name: str
    version: int
    code_sha256: str
    code_size: int
    code_blob: str
    unzipped_size: int
    description: str = ""
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()
    license_info: str | None = None
    created_date: str = field(default_factory=aws_timestamp)
    # Statement id -> statement document, in AWS's policy format.
    statements: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy_revision_id: str = field(default_factory=new_revision_id)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        doc = dict(doc)
        doc["compatible_runtimes"] = tuple(doc.get("compatible_runtimes") or ())
        doc["compatible_architectures"] = tuple(doc.get("compatible_architectures") or ())
        return super().from_doc(doc)


@dataclass(frozen=True)
class Policy(Document):
    """A function's resource-based policy for one qualifier ("" is the unqualified one)."""

    statements: dict[str, dict[str, Any]] = field(default_factory=dict)
    revision_id: str = field(default_factory=new_revision_id)


@dataclass(frozen=True)
class CodeSigningConfig(Document):
    config_id: str
    arn: str
    description: str
    signing_profile_version_arns: tuple[str, ...]
    untrusted_artifact_on_deployment: str = "Warn"
    last_modified: str = field(default_factory=aws_timestamp)
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        doc = dict(doc)
        doc["signing_profile_version_arns"] = tuple(doc.get("signing_profile_version_arns") or ())
        return super().from_doc(doc)
