"""The state machine in the domain: accepted Pending/InProgress, settled Active/Successful or
Failed, withdrawn when S3 refuses, and finished at start after a crash."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from lamina.arns import FunctionRef
from lamina.control.code import CodeSource
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.control.states import INVALID_ZIP, ActivationFailed, check_invocable, creating
from lamina.errors import InvalidParameterValue, ResourceConflict
from lamina.model.functions import FunctionConfig, FunctionRecord, PendingChange
from tests.support.domain import S3Objects, archive, fails_with, function_settings, open_domain
from tests.support.domain import source as inline

ARN = "arn:aws:lambda:us-east-1:123456789012:function"


class FailingPreparer:
    """Refuses to prepare the configurations whose code hash is in `refused`."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.prepared: list[str] = []

    def prepare(self, config: FunctionConfig) -> None:
        self.prepared.append(config.code_sha256)
        if config.code_sha256 in self.refused:
            raise ActivationFailed(INVALID_ZIP, "Failed to unzip archive: bad;")


class RefusingS3(S3Objects):
    def read(self, bucket: str, key: str, version: str | None) -> bytes:
        if (bucket, key) not in self.objects:
            raise InvalidParameterValue(f"S3 Error Code: NoSuchKey ({key})")
        return super().read(bucket, key, version)


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    return replace(open_domain(tmp_path / "data"), s3=RefusingS3())


@pytest.fixture
def preparer() -> FailingPreparer:
    return FailingPreparer()


@pytest.fixture
def service(domain: Domain, preparer: FailingPreparer) -> FunctionService:
    return FunctionService(domain, preparer)


def ref(name: str) -> FunctionRef:
    return FunctionRef(name, None)


def s3_objects(domain: Domain) -> RefusingS3:
    assert isinstance(domain.s3, RefusingS3)
    return domain.s3


def test_a_create_is_answered_pending_and_stored_active(
    service: FunctionService, preparer: FailingPreparer
) -> None:
    answered = service.create("fn", function_settings(), inline())
    stored = service.require("fn")
    assert (answered.state, answered.state_reason_code, answered.last_update_status) == (
        "Pending",
        "Creating",
        None,
    )
    assert (stored.latest.state, stored.latest.last_update_status) == ("Active", "Successful")
    assert stored.latest.revision_id != answered.revision_id
    assert stored.change is None
    assert preparer.prepared == [answered.code_sha256]


def code_hash(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_a_create_whose_code_does_not_prepare_ends_failed(
    service: FunctionService, preparer: FailingPreparer
) -> None:
    bad = archive({"app.py": "bad = True\n"})
    preparer.refused.add(code_hash(bad))
    service.create("fn", function_settings(), CodeSource(zip_file=bad))
    latest = service.require("fn").latest
    assert (latest.state, latest.state_reason_code, latest.state_reason) == (
        "Failed",
        INVALID_ZIP,
        "Failed to unzip archive: bad;",
    )
    assert latest.last_update_status == "Failed"
    with fails_with(
        ResourceConflict,
        "The operation cannot be performed at this time. "
        "The function is currently in the following state: Failed",
    ):
        check_invocable(latest)


def test_a_failed_update_restores_the_previous_configuration(
    service: FunctionService, preparer: FailingPreparer
) -> None:
    service.create("fn", function_settings(timeout=5), inline())
    before = service.require("fn").latest
    bad = archive({"app.py": "bad = True\n"})
    preparer.refused.add(code_hash(bad))
    answered = service.update_code(ref("fn"), CodeSource(zip_file=bad))
    assert (answered.code_sha256, answered.last_update_status) == (code_hash(bad), "InProgress")
    after = service.require("fn").latest
    assert (after.code_sha256, after.last_update_status) == (before.code_sha256, "Failed")
    assert after.last_update_status_reason_code == INVALID_ZIP
    assert after.revision_id not in (before.revision_id, answered.revision_id)
    assert (after.state, after.timeout) == ("Active", 5)


def test_changes_wait_while_one_is_unsettled(service: FunctionService, domain: Domain) -> None:
    service.create("fn", function_settings(), inline())
    record = service.require("fn")
    store = domain.stores.functions
    # As a create in the middle of its activation leaves it.
    store.put(replace(record, latest=creating(record.latest), change=PendingChange("r")))
    pending = (
        "The operation cannot be performed at this time. "
        "The function is currently in the following state: Pending"
    )
    with fails_with(ResourceConflict, pending):
        service.update_configuration(ref("fn"), {"timeout": 9}, None)
    with fails_with(ResourceConflict, pending):
        service.publish_version(ref("fn"), None, None, None)
    # As an update in the middle of its activation leaves it.
    store.put(replace(record, change=PendingChange("r", previous=record.latest)))
    with fails_with(
        ResourceConflict,
        "The operation cannot be performed at this time. "
        f"An update is in progress for resource: {ARN}:fn",
    ):
        service.update_code(ref("fn"), inline())


def test_code_s3_refuses_withdraws_the_change(service: FunctionService, domain: Domain) -> None:
    missing = CodeSource(s3_bucket="bucket", s3_key="missing.zip")
    with fails_with(InvalidParameterValue, "S3 Error Code: NoSuchKey (missing.zip)"):
        service.create("fn", function_settings(), missing)
    assert domain.stores.functions.get("fn") is None
    service.create("kept", function_settings(), inline())
    before = service.require("kept")
    with fails_with(InvalidParameterValue, "S3 Error Code: NoSuchKey (missing.zip)"):
        service.update_code(ref("kept"), missing)
    assert service.require("kept") == before


def test_changes_a_crash_interrupted_are_finished_at_start(
    service: FunctionService, domain: Domain
) -> None:
    s3_objects(domain).objects[("bucket", "code.zip")] = archive()
    for name, key in (("found", "code.zip"), ("lost", "gone.zip")):
        config = creating(
            FunctionConfig(
                function_name=name,
                code_sha256="",
                code_size=0,
                code_blob="",
                unzipped_size=0,
                **function_settings(),
            )
        )
        code = {"S3Bucket": "bucket", "S3Key": key}
        # As a crash leaves a create accepted Pending, its code still to be read.
        domain.stores.functions.put(
            FunctionRecord(latest=config, change=PendingChange(config.revision_id, code=code))
        )
    assert service.finish_changes() == 2
    found, lost = service.require("found"), service.require("lost")
    assert (found.latest.state, found.latest.code_size, found.change) == (
        "Active",
        len(archive()),
        None,
    )
    assert (lost.latest.state, lost.latest.state_reason_code) == ("Failed", "InternalError")
    assert lost.latest.state_reason == "S3 Error Code: NoSuchKey (gone.zip)"
    assert service.finish_changes() == 0
