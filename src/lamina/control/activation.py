"""Settling a function's accepted change: Active and Successful, Failed, or withdrawn.

A create or update is written Pending or InProgress together with its `PendingChange`
(`lamina.control.states`). `FunctionService` then takes the change's code in (read from S3
when it came from there, publishing a version if asked) and `Activation` settles it: the
`Preparer` unpacks code and layers, and the change ends Active and Successful under a new
RevisionId, or Failed with a reason code. Each step checks that the change is still the
function's, so a delete (or a re-create) in between is never overwritten.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from lamina.control.code import CodeArchive, CodeSource, S3Reader, inspect_archive
from lamina.control.states import (
    INTERNAL_ERROR,
    INVALID_ZIP,
    PENDING,
    ActivationFailed,
    Preparer,
    creating,
    creation_failed,
    settled,
    snap_started,
    update_failed,
)
from lamina.errors import LaminaError
from lamina.model.functions import FunctionConfig, FunctionRecord, PendingChange
from lamina.store.protocols import FunctionStore

log = logging.getLogger("lamina.control")


class Snapshotter(Protocol):
    """Makes SnapStart versions' snapshots (the data plane); ends each with `snapshot_made`."""

    def requested(self, config: FunctionConfig) -> None:
        """Start making `config`'s snapshot (thread-safe; returns at once)."""
        ...


class Activation:
    """Ends accepted changes, once their code is in."""

    def __init__(self, functions: FunctionStore, s3: S3Reader, preparer: Preparer) -> None:
        self._functions = functions
        self._s3 = s3
        self._preparer = preparer
        # Set by the data plane when it runs here; without one a SnapStart version is
        # Active at once, as any other (it then runs without a snapshot).
        self.snapshotter: Snapshotter | None = None

    def published(self, version: FunctionConfig) -> FunctionConfig:
        """A version about to be stored as published: a SnapStart version stays Pending
        while its snapshot is made (requested once stored), the rest as they are."""
        if self.snapshotter is None or not snap_started(version):
            return version
        return creating(version)

    def request_snapshot(self, version: FunctionConfig) -> None:
        if self.snapshotter is not None and snap_started(version) and version.state == PENDING:
            self.snapshotter.requested(version)

    def snapshot_made(
        self, name: str, version: str, revision_id: str, failure: ActivationFailed | None
    ) -> None:
        """End a SnapStart version's Pending state: Active, or Failed with its init's error."""
        with self._functions.transaction():
            config = self._functions.get_version(name, int(version))
            if config is None or config.revision_id != revision_id or config.state != PENDING:
                return  # deleted or re-created meanwhile
            self._functions.put_version(
                settled(config) if failure is None else creation_failed(config, failure)
            )

    def unsettled(self, name: str, revision_id: str) -> FunctionRecord | None:
        """The function while the change accepted as `revision_id` is still unsettled."""
        record = self._functions.get(name)
        if record is None or record.change is None or record.change.revision_id != revision_id:
            return None
        return record

    def settle(self, name: str, revision_id: str) -> None:
        """Make the change's configuration runnable here, then end it Active or Failed."""
        record = self.unsettled(name, revision_id)
        if record is None:
            return
        failure = None
        try:
            self._preparer.prepare(record.latest)
        except ActivationFailed as error:
            failure = error
        except Exception as error:
            log.exception("activating %s failed", name)
            failure = ActivationFailed(INTERNAL_ERROR, f"Lamina could not prepare it: {error}")
        self.finish(name, revision_id, failure)

    def finish(self, name: str, revision_id: str, failure: ActivationFailed | None) -> None:
        """End the change: settled, or failed (a failed update keeps the previous `$LATEST`)."""
        with self._functions.transaction():
            record = self.unsettled(name, revision_id)
            if record is None:
                return
            change = record.change
            assert change is not None
            if failure is None:
                latest = settled(record.latest)
            elif change.previous is None:
                latest = creation_failed(record.latest, failure)
            else:
                latest = update_failed(change.previous, failure)
            self._functions.put(replace(record, latest=latest, change=None))
            version = self._functions.get_version(name, change.version) if change.version else None
            if version is not None:
                if failure is not None:
                    self._functions.put_version(creation_failed(version, failure))
                elif self.snapshotter is not None and snap_started(version):
                    # Its code is in: now its snapshot, which ends its Pending state.
                    self.request_snapshot(version)
                else:
                    self._functions.put_version(settled(version))

    def withdraw(self, name: str, revision_id: str) -> None:
        """Undo a change refused while its code was read: a create is gone, an update undone."""
        with self._functions.transaction():
            record = self.unsettled(name, revision_id)
            if record is None or record.change is None:
                return
            previous = record.change.previous
            if previous is None:
                self._functions.delete(name)
            else:
                self._functions.put(replace(record, latest=previous, change=None))

    def read_interrupted(self, change: PendingChange) -> CodeArchive | None:
        """The S3 code of a change a stop interrupted. No client waits for the answer any
        more, so what AWS would refuse synchronously fails the change instead."""
        if change.code is None:
            return None
        try:
            data = CodeSource.from_s3_location(change.code).read(self._s3)
        except LaminaError as error:
            raise ActivationFailed(INTERNAL_ERROR, error.message) from None
        try:
            return inspect_archive(data)
        except LaminaError as error:
            raise ActivationFailed(INVALID_ZIP, error.message) from None
