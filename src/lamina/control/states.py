"""The function state machine: Pending and InProgress while a change is activated, then
Active and Successful, or Failed with a reason code, in AWS's words.

A create leaves `$LATEST` Pending ("The function is being created.", Creating) with no
LastUpdateStatus; an update leaves it InProgress with the same reason, as AWS words it.
Activation is the work that makes the accepted configuration runnable here: reading code
from S3 when it came from there, and unpacking code and layers (`Preparer`). It ends the
change Active and Successful under a new RevisionId, or Failed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from lamina.constants import LATEST
from lamina.errors import ResourceConflict, SnapStartNotReady
from lamina.model.functions import FunctionConfig, FunctionRecord, new_revision_id

PENDING = "Pending"
ACTIVE = "Active"
FAILED = "Failed"
IN_PROGRESS = "InProgress"
SUCCESSFUL = "Successful"

# AWS's reason for both a create and an update in progress (it says "created" for both).
CREATING_REASON = "The function is being created."
CREATING = "Creating"

INVALID_ZIP = "InvalidZipFileException"
INTERNAL_ERROR = "InternalError"


class ActivationFailed(Exception):
    """Activation could not make the configuration runnable: the reason code and text that
    StateReasonCode/LastUpdateStatusReasonCode and their reasons report."""

    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason


class Preparer(Protocol):
    """Readies a configuration to run on this host (its code and layers unpacked)."""

    def prepare(self, config: FunctionConfig) -> None:
        """Raise ActivationFailed when the configuration cannot run here."""
        ...


class NoPreparation:
    """For a control plane without an engine (unit tests): nothing to unpack."""

    def prepare(self, config: FunctionConfig) -> None:
        return None


# ------------------------------------------------------------------- transitions


def creating(config: FunctionConfig) -> FunctionConfig:
    """A configuration just created: Pending, without LastUpdateStatus (AWS's create answer)."""
    return replace(
        config,
        state=PENDING,
        state_reason=CREATING_REASON,
        state_reason_code=CREATING,
        last_update_status=None,
        last_update_status_reason=None,
        last_update_status_reason_code=None,
    )


def updating(config: FunctionConfig) -> FunctionConfig:
    """A configuration whose update is accepted: its state kept, its last update InProgress."""
    return replace(
        config,
        last_update_status=IN_PROGRESS,
        last_update_status_reason=CREATING_REASON,
        last_update_status_reason_code=CREATING,
    )


def settled(config: FunctionConfig) -> FunctionConfig:
    """Activation done: Active and Successful, under a new RevisionId, as AWS shows it."""
    return replace(
        config,
        state=ACTIVE,
        state_reason=None,
        state_reason_code=None,
        last_update_status=SUCCESSFUL,
        last_update_status_reason=None,
        last_update_status_reason_code=None,
        revision_id=new_revision_id(),
    )


def creation_failed(config: FunctionConfig, failure: ActivationFailed) -> FunctionConfig:
    """A create whose activation failed: Failed, and so is its last update."""
    return replace(
        config,
        state=FAILED,
        state_reason=failure.reason,
        state_reason_code=failure.reason_code,
        last_update_status=FAILED,
        last_update_status_reason=failure.reason,
        last_update_status_reason_code=failure.reason_code,
        revision_id=new_revision_id(),
    )


def update_failed(previous: FunctionConfig, failure: ActivationFailed) -> FunctionConfig:
    """An update whose activation failed: AWS keeps the previous code and configuration, and
    reports the failure in LastUpdateStatus."""
    return replace(
        previous,
        last_update_status=FAILED,
        last_update_status_reason=failure.reason,
        last_update_status_reason_code=failure.reason_code,
        revision_id=new_revision_id(),
    )


# ------------------------------------------------------------------------ guards


def not_now(state: str) -> str:
    return (
        "The operation cannot be performed at this time. "
        f"The function is currently in the following state: {state}"
    )


def update_in_progress(function_arn: str) -> str:
    return (
        "The operation cannot be performed at this time. "
        f"An update is in progress for resource: {function_arn}"
    )


def check_modifiable(record: FunctionRecord, function_arn: str) -> None:
    """UpdateFunctionCode, UpdateFunctionConfiguration and PublishVersion wait for the
    function's change to settle: refused while it is Pending or its update InProgress."""
    if record.change is None:
        return
    if record.latest.state == PENDING:
        raise ResourceConflict(not_now(PENDING))
    raise ResourceConflict(update_in_progress(function_arn))


# AWS's answer to an invocation of a SnapStart version whose snapshot is not ready.
SNAPSTART_NOT_READY = (
    "Lambda is initializing your function. It will be ready to invoke once your function "
    "state becomes ACTIVE."
)
SNAPSTART_APPLY_ON = "PublishedVersions"
# AWS: "You cannot use both SnapStart and provisioned concurrency on the same function
# version." Its error text for trying is not published; this one follows the wording of
# "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
SNAPSTART_PROVISIONED = (
    "Provisioned Concurrency Configs cannot be applied to function versions with SnapStart enabled."
)


def snap_started(config: FunctionConfig) -> bool:
    """Whether `config` runs from a snapshot: a published version of a Python function with
    SnapStart on. (AWS also offers it for Java and .NET, which Lamina does not run: their
    versions are published Active, as without the setting.)"""
    return (
        config.snap_start == SNAPSTART_APPLY_ON
        and config.version != LATEST
        and (config.runtime or "").startswith("python")
    )


def check_invocable(config: FunctionConfig) -> None:
    """Invocations need an Active configuration: Pending and Failed ones are refused (a
    SnapStart version still being snapshotted with SnapStartNotReadyException)."""
    if config.state == PENDING and snap_started(config):
        raise SnapStartNotReady(SNAPSTART_NOT_READY)
    if config.state in (PENDING, FAILED):
        raise ResourceConflict(not_now(config.state))


def runnable(record: FunctionRecord, config: FunctionConfig) -> FunctionConfig:
    """What an invocation of `config` runs: while an update of `$LATEST` is InProgress, the
    previous code and configuration, as on AWS."""
    change = record.change
    if config.version == LATEST and change is not None and change.previous is not None:
        return change.previous
    return config
