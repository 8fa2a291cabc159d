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

from lamina.control.code import CodeArchive, CodeSource, S3Reader, inspect_archive
from lamina.control.states import (
    INTERNAL_ERROR,
    INVALID_ZIP,
    ActivationFailed,
    Preparer,
    creation_failed,
    settled,
    update_failed,
)
from lamina.errors import LaminaError
from lamina.model.functions import FunctionRecord, PendingChange
from lamina.store.protocols import FunctionStore

log = logging.getLogger("lamina.control")


class Activation:
    """Ends accepted changes, once their code is in."""

    def __init__(self, functions: FunctionStore, s3: S3Reader, preparer: Preparer) -> None:
        self._functions = functions
        self._s3 = s3
        self._preparer = preparer

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
                self._functions.put_version(
                    settled(version) if failure is None else creation_failed(version, failure)
                )

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
