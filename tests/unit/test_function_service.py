"""FunctionService on real SQLite stores: create, read, update, publish, delete, list."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from lamina.arns import FunctionRef
from lamina.constants import LATEST, MAX_LAYERS
from lamina.control.code import CodeSource
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.control.states import settled
from lamina.errors import (
    CodeSigningConfigNotFound,
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.model.functions import Alias, FunctionConfig, LoggingConfig
from tests.support.domain import (
    S3Objects,
    archive,
    fails_with,
    function_settings,
    open_domain,
    source,
)

STALE = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)
ARN = "arn:aws:lambda:us-east-1:123456789012:function"


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    return open_domain(tmp_path / "data")


@pytest.fixture
def service(domain: Domain) -> FunctionService:
    return FunctionService(domain)


def ref(name: str, qualifier: str | None = None) -> FunctionRef:
    return FunctionRef(name, qualifier)


def create(service: FunctionService, name: str = "fn", **settings: object) -> str:
    """Create a function; its RevisionId once Active (what GetFunction then shows)."""
    service.create(name, function_settings(**settings), source())
    return service.require(name).latest.revision_id


def assert_settled(answered: FunctionConfig, stored: FunctionConfig | None) -> None:
    """`stored` is the configuration as answered, activated: Active and Successful under a
    new RevisionId."""
    assert stored is not None
    assert stored.revision_id != answered.revision_id
    assert stored == replace(settled(answered), revision_id=stored.revision_id)


# ------------------------------------------------------------------------------- create


def test_create_stores_latest_with_the_code_hash_and_sizes(
    service: FunctionService, domain: Domain
) -> None:
    code = archive()
    config = service.create("fn", function_settings(timeout=9), CodeSource(zip_file=code))
    assert config.version == LATEST
    assert config.code_sha256 == base64.b64encode(hashlib.sha256(code).digest()).decode()
    assert config.code_size == len(code)
    assert config.unzipped_size == len(b"def handler(event, context):\n    return event\n")
    assert config.timeout == 9
    # The archive is kept under its content hash, and the record under the name.
    assert domain.stores.blobs.exists(config.code_blob)
    # Answered Pending; stored Active once activated.
    assert config.state == "Pending"
    assert_settled(config, service.require("fn").latest)
    assert service.require("fn").last_published == 0


def test_create_reads_code_from_s3(service: FunctionService, domain: Domain) -> None:
    s3 = domain.s3
    assert isinstance(s3, S3Objects)
    s3.objects[("bucket", "code.zip")] = archive({"app.py": "x = 1\n"})
    code = CodeSource(s3_bucket="bucket", s3_key="code.zip", s3_object_version="v7")
    config = service.create("fn", function_settings(), code)
    assert s3.reads == [("bucket", "code.zip", "v7")]
    assert config.code_size == len(s3.objects[("bucket", "code.zip")])


def test_create_with_publish_returns_version_1(service: FunctionService) -> None:
    config = service.create("fn", function_settings(), source(), publish=True)
    assert config.version == "1"
    assert service.require("fn").last_published == 1
    assert_settled(config, service.resolve(ref("fn"), "1").config)


def test_create_refuses_an_existing_name(service: FunctionService) -> None:
    create(service)
    with fails_with(ResourceConflict, "Function already exist: fn"):
        create(service)


def test_create_refuses_a_zip_function_without_a_handler(service: FunctionService) -> None:
    message = (
        "Runtime and Handler are mandatory parameters for functions created with "
        "deployment packages."
    )
    with fails_with(InvalidParameterValue, message):
        create(service, handler=None)
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:fn"):
        service.require("fn")


def test_create_refuses_an_archive_that_is_not_a_zip(
    service: FunctionService, domain: Domain
) -> None:
    message = "Could not unzip uploaded file. Please check your file, then try to upload again."
    with fails_with(InvalidParameterValue, message):
        service.create("fn", function_settings(), CodeSource(zip_file=b"not a zip"))
    assert domain.stores.functions.get("fn") is None


def test_create_refuses_reserved_environment_variables(service: FunctionService) -> None:
    with pytest.raises(InvalidParameterValue) as raised:
        create(service, environment={"AWS_REGION": "eu-west-1", "OK_NAME": "1"})
    assert raised.value.message.endswith("Reserved keys used in this request: AWS_REGION")


def test_create_checks_layers_before_storing_anything(
    service: FunctionService, domain: Domain
) -> None:
    missing = "arn:aws:lambda:us-east-1:123456789012:layer:absent:1"
    with fails_with(InvalidParameterValue, f"Layer version {missing} does not exist."):
        create(service, layer_arns=[missing])
    too_many = [f"arn:aws:lambda:us-east-1:123456789012:layer:l{n}:1" for n in range(6)]
    with fails_with(InvalidParameterValue, f"Cannot reference more than {MAX_LAYERS} layers."):
        create(service, layer_arns=too_many)
    assert domain.stores.functions.get("fn") is None


def test_create_with_an_unknown_code_signing_config(service: FunctionService) -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:code-signing-config:csc-0123456789abcdef0"
    message = (
        "The code signing configuration cannot be found. Check that the provided configuration "
        f"is not deleted: {arn}."
    )
    with fails_with(CodeSigningConfigNotFound, message):
        service.create("fn", function_settings(), source(), code_signing_config_arn=arn)


# ------------------------------------------------------------------------------ resolve


def test_resolve_latest_version_and_alias(service: FunctionService, domain: Domain) -> None:
    create(service)
    published = service.publish_version(ref("fn"), None, None, None)
    domain.stores.functions.put_alias(Alias("fn", "live", "1"))
    service.update_configuration(ref("fn"), {"timeout": 30}, None)

    latest = service.resolve(ref("fn"))
    assert (latest.config.timeout, latest.qualifier, latest.alias) == (30, None, None)
    assert service.resolve(ref("fn"), LATEST).config.timeout == 30
    assert service.resolve(ref("fn", "1")).config == published
    via_alias = service.resolve(ref("fn", "live"))
    assert via_alias.config == published
    assert via_alias.qualifier == "live"
    assert via_alias.alias is not None and via_alias.alias.function_version == "1"


def test_resolve_names_the_missing_qualifier(service: FunctionService) -> None:
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:nope"):
        service.resolve(ref("nope"))
    create(service)
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:fn:5"):
        service.resolve(ref("fn"), "5")
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:fn:missing-alias"):
        service.resolve(ref("fn", "missing-alias"))


def test_resolve_refuses_two_different_qualifiers(service: FunctionService) -> None:
    create(service)
    message = "The derived qualifier from the function name does not match the specified qualifier."
    with fails_with(InvalidParameterValue, message):
        service.resolve(ref("fn", "1"), "2")
    # The same qualifier twice is fine.
    assert service.resolve(ref("fn", LATEST), LATEST).config.version == LATEST


# ------------------------------------------------------------------------------- update


def test_update_configuration_changes_latest_and_its_revision(service: FunctionService) -> None:
    first = create(service)
    updated = service.update_configuration(ref("fn"), {"timeout": 20, "memory_size": 512}, first)
    assert (updated.timeout, updated.memory_size) == (20, 512)
    assert updated.revision_id != first
    assert_settled(updated, service.require("fn").latest)


def test_update_configuration_with_a_stale_revision(service: FunctionService) -> None:
    first = create(service)
    service.update_configuration(ref("fn"), {"timeout": 20}, None)
    with fails_with(PreconditionFailed, STALE):
        service.update_configuration(ref("fn"), {"timeout": 40}, first)
    assert service.require("fn").latest.timeout == 20


def test_update_configuration_refuses_a_qualified_name(service: FunctionService) -> None:
    create(service)
    message = (
        "UpdateFunctionConfiguration does not accept a qualified function name: "
        "remove ':1' from fn:1"
    )
    with fails_with(InvalidParameterValue, message):
        service.update_configuration(ref("fn", "1"), {"timeout": 20}, None)


def test_update_configuration_validates_the_result(service: FunctionService) -> None:
    create(service)
    with fails_with(
        InvalidParameterValue,
        "ApplicationLogLevel and SystemLogLevel can only be set when LogFormat is JSON.",
    ):
        service.update_configuration(
            ref("fn"), {"logging": LoggingConfig(application_log_level="DEBUG")}, None
        )
    assert service.require("fn").latest.logging == LoggingConfig()


def test_update_code_replaces_the_code(service: FunctionService, domain: Domain) -> None:
    first = create(service)
    new_code = archive({"app.py": "def handler(e, c):\n    return 2\n"})
    updated = service.update_code(
        ref("fn"), CodeSource(zip_file=new_code), revision_id=first, architectures=["arm64"]
    )
    assert updated.code_sha256 == base64.b64encode(hashlib.sha256(new_code).digest()).decode()
    assert updated.architectures == ("arm64",)
    assert updated.revision_id != first
    assert domain.stores.blobs.exists(updated.code_blob)
    assert_settled(updated, service.require("fn").latest)


def test_update_code_dry_run_changes_nothing(service: FunctionService) -> None:
    create(service)
    before = service.require("fn").latest
    answer = service.update_code(ref("fn"), source({"app.py": "changed = True\n"}), dry_run=True)
    assert answer.code_sha256 != before.code_sha256
    assert service.require("fn").latest == before


def test_update_code_with_a_stale_revision(service: FunctionService) -> None:
    create(service)
    with fails_with(PreconditionFailed, STALE):
        service.update_code(ref("fn"), source({"app.py": "x = 2\n"}), revision_id="stale")


def test_update_code_and_publish(service: FunctionService) -> None:
    create(service)
    config = service.update_code(ref("fn"), source({"app.py": "x = 3\n"}), publish=True)
    assert config.version == "1"
    assert config.code_sha256 == service.require("fn").latest.code_sha256


# ------------------------------------------------------------------------------ publish


def test_publish_numbers_versions_and_skips_unchanged_ones(service: FunctionService) -> None:
    create(service)
    one = service.publish_version(ref("fn"), None, None, None)
    again = service.publish_version(ref("fn"), None, None, None)
    service.update_configuration(ref("fn"), {"timeout": 11}, None)
    two = service.publish_version(ref("fn"), None, "eleven seconds", None)
    assert one.version == "1"
    # Nothing changed since version 1: publishing returns it instead of a copy.
    assert again == one
    assert (two.version, two.timeout, two.description) == ("2", 11, "eleven seconds")
    assert service.require("fn").last_published == 2
    # A version is a snapshot with a revision of its own; $LATEST keeps its description.
    assert two.revision_id != service.require("fn").latest.revision_id
    assert service.require("fn").latest.description == ""


def test_publish_checks_the_code_hash_and_the_revision(service: FunctionService) -> None:
    first = create(service)
    sha = service.require("fn").latest.code_sha256
    message = (
        f"CodeSHA256 (abc) is different from current CodeSHA256 in $LATEST ({sha}). "
        "Please try again with the CodeSHA256 in $LATEST."
    )
    with fails_with(InvalidParameterValue, message):
        service.publish_version(ref("fn"), "abc", None, None)
    with fails_with(PreconditionFailed, STALE):
        service.publish_version(ref("fn"), None, None, "other-revision")
    assert service.publish_version(ref("fn"), sha, None, first).version == "1"


def test_publish_refuses_a_qualified_name(service: FunctionService) -> None:
    create(service)
    message = "PublishVersion does not accept a qualified function name: remove ':2' from fn:2"
    with fails_with(InvalidParameterValue, message):
        service.publish_version(ref("fn", "2"), None, None, None)


# ------------------------------------------------------------------------------- delete


def test_delete_the_function(service: FunctionService) -> None:
    create(service)
    service.publish_version(ref("fn"), None, None, None)
    service.delete(ref("fn"), None)
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:fn"):
        service.require("fn")
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:fn"):
        service.delete(ref("fn"), None)


def test_delete_one_version(service: FunctionService) -> None:
    create(service)
    service.publish_version(ref("fn"), None, None, None)
    service.update_configuration(ref("fn"), {"timeout": 5}, None)
    service.publish_version(ref("fn"), None, None, None)
    service.delete(ref("fn"), "1")
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:fn:1"):
        service.resolve(ref("fn"), "1")
    assert service.resolve(ref("fn"), "2").config.timeout == 5
    with fails_with(ResourceNotFound, f"Function not found: {ARN}:fn:1"):
        service.delete(ref("fn"), "1")


def test_delete_refuses_latest_and_aliases(service: FunctionService, domain: Domain) -> None:
    create(service)
    domain.stores.functions.put_alias(Alias("fn", "live", LATEST))
    with fails_with(
        InvalidParameterValue, "$LATEST version cannot be deleted without deleting the function."
    ):
        service.delete(ref("fn"), LATEST)
    with fails_with(
        InvalidParameterValue,
        "Deletion of aliases is not supported by DeleteFunction: use DeleteAlias to delete "
        "alias live",
    ):
        service.delete(ref("fn", "live"), None)


def test_delete_refuses_a_version_an_alias_routes_to(
    service: FunctionService, domain: Domain
) -> None:
    create(service)
    service.publish_version(ref("fn"), None, None, None)
    service.update_configuration(ref("fn"), {"timeout": 5}, None)
    service.publish_version(ref("fn"), None, None, None)
    domain.stores.functions.put_alias(Alias("fn", "canary", "2", additional_weights={"1": 0.1}))
    message = "Unable to delete version because the following aliases reference it: [canary]"
    with fails_with(ResourceConflict, message):
        service.delete(ref("fn"), "1")
    with fails_with(ResourceConflict, message):
        service.delete(ref("fn"), "2")


# ------------------------------------------------------------------------------ listing


def test_list_functions_in_pages(service: FunctionService) -> None:
    for name in ("c", "a", "b"):
        create(service, name)
    first, marker = service.list_functions(None, 2, all_versions=False)
    assert [config.function_name for config in first] == ["a", "b"]
    assert marker is not None
    rest, end = service.list_functions(marker, 2, all_versions=False)
    assert [config.function_name for config in rest] == ["c"]
    assert end is None


def test_list_functions_with_every_version(service: FunctionService) -> None:
    create(service, "a")
    service.publish_version(ref("a"), None, None, None)
    create(service, "b")
    listed: list[tuple[str, str]] = []
    marker = None
    while True:
        page, marker = service.list_functions(marker, 1, all_versions=True)
        listed += [(config.function_name, config.version) for config in page]
        if marker is None:
            break
    assert listed == [("a", LATEST), ("a", "1"), ("b", LATEST)]


def test_list_versions_starts_with_latest(service: FunctionService) -> None:
    create(service)
    service.publish_version(ref("fn"), None, None, None)
    service.update_configuration(ref("fn"), {"timeout": 8}, None)
    service.publish_version(ref("fn"), None, None, None)
    first, marker = service.list_versions(ref("fn"), None, 2)
    assert [config.version for config in first] == [LATEST, "1"]
    rest, end = service.list_versions(ref("fn"), marker, 2)
    assert [config.version for config in rest] == ["2"]
    assert end is None
    with fails_with(InvalidParameterValue, "Invalid Marker: !!"):
        service.list_versions(ref("fn"), "!!", 2)
