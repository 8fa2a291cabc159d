"""Functions over HTTP: create, read, update, delete, list."""

from __future__ import annotations

import base64
import hashlib
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import error_of


def test_create_function_returns_configuration(create_function: Callable[..., Any]) -> None:
    archive = make_zip()
    config = create_function(
        Code={"ZipFile": archive},
        Description="hello",
        MemorySize=256,
        Timeout=10,
        Environment={"Variables": {"STAGE": "test"}},
        EphemeralStorage={"Size": 1024},
        Architectures=["arm64"],
        TracingConfig={"Mode": "Active"},
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG"},
    )
    assert config["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert config["CodeSha256"] == base64.b64encode(hashlib.sha256(archive).digest()).decode()
    assert config["CodeSize"] == len(archive)
    assert config["Version"] == "$LATEST"
    assert config["MemorySize"] == 256
    assert config["Timeout"] == 10
    assert config["Environment"] == {"Variables": {"STAGE": "test"}}
    assert config["EphemeralStorage"] == {"Size": 1024}
    assert config["Architectures"] == ["arm64"]
    assert config["TracingConfig"] == {"Mode": "Active"}
    assert config["LoggingConfig"]["LogFormat"] == "JSON"
    assert config["LoggingConfig"]["LogGroup"] == f"/aws/lambda/{config['FunctionName']}"
    # As AWS answers a create (the transitions: tests/integration/test_function_states.py).
    assert config["State"] == "Pending"
    assert "LastUpdateStatus" not in config
    assert config["FunctionArn"] == (
        f"arn:aws:lambda:us-east-1:000000000000:function:{config['FunctionName']}"
    )
    assert len(config["LastModified"]) == 28 and config["LastModified"].endswith("+0000")


def test_create_with_publish_returns_version_one(create_function: Callable[..., Any]) -> None:
    config = create_function(Publish=True)
    assert config["Version"] == "1"
    assert config["FunctionArn"].endswith(":1")


def test_duplicate_function_is_a_conflict(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    config = create_function()
    with pytest.raises(ClientError) as excinfo:
        create_function(FunctionName=config["FunctionName"])
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceConflictException", 409)
    assert config["FunctionName"] in message


def test_get_function_downloads_code(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    archive = make_zip({"app.py": "def handler(e, c):\n    return 1\n"})
    config = create_function(Code={"ZipFile": archive}, Tags={"team": "core"})
    found = lambda_client.get_function(FunctionName=config["FunctionName"])
    assert found["Configuration"]["CodeSha256"] == config["CodeSha256"]
    assert found["Tags"] == {"team": "core"}
    with urllib.request.urlopen(found["Code"]["Location"]) as response:
        assert response.read() == archive


def test_code_location_rejects_tampered_signature(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    config = create_function()
    location = lambda_client.get_function(FunctionName=config["FunctionName"])["Code"]["Location"]
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(location[:-4] + "0000")
    excinfo.value.close()
    assert excinfo.value.code == 403


@pytest.mark.parametrize(
    "form",
    [
        "{name}",
        "000000000000:function:{name}",
        "arn:aws:lambda:us-east-1:000000000000:function:{name}",
    ],
)
def test_function_name_forms(
    lambda_client: Any, create_function: Callable[..., Any], form: str
) -> None:
    name = create_function()["FunctionName"]
    found = lambda_client.get_function_configuration(FunctionName=form.format(name=name))
    assert found["FunctionName"] == name


def test_unknown_function_is_not_found(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function(FunctionName="does-not-exist")
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert (
        message
        == "Function not found: arn:aws:lambda:us-east-1:000000000000:function:does-not-exist"
    )
    assert excinfo.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == (
        "ResourceNotFoundException"
    )


def test_update_configuration_and_revision_guard(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    # The RevisionId once Active: activation gives the function a new one, as on AWS.
    config = lambda_client.get_function_configuration(FunctionName=name)
    updated = lambda_client.update_function_configuration(
        FunctionName=name, MemorySize=512, Description="bigger", RevisionId=config["RevisionId"]
    )
    assert updated["MemorySize"] == 512
    assert updated["RevisionId"] != config["RevisionId"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_configuration(
            FunctionName=name, Timeout=5, RevisionId=config["RevisionId"]
        )
    assert error_of(excinfo)[0::2] == ("PreconditionFailedException", 412)
    assert lambda_client.get_function_configuration(FunctionName=name)["Timeout"] == 3


def test_update_code_changes_hash(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    config = create_function()
    archive = make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"})
    updated = lambda_client.update_function_code(
        FunctionName=config["FunctionName"], ZipFile=archive
    )
    assert updated["CodeSha256"] == base64.b64encode(hashlib.sha256(archive).digest()).decode()
    assert updated["CodeSha256"] != config["CodeSha256"]


def test_update_code_with_publish(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    config = create_function()
    archive = make_zip({"app.py": "x = 2\n"})
    published = lambda_client.update_function_code(
        FunctionName=config["FunctionName"], ZipFile=archive, Publish=True
    )
    assert published["Version"] == "1"


def test_update_code_dry_run_changes_nothing(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    config = create_function()
    lambda_client.update_function_code(
        FunctionName=config["FunctionName"], ZipFile=make_zip({"other.py": ""}), DryRun=True
    )
    after = lambda_client.get_function_configuration(FunctionName=config["FunctionName"])
    assert after["CodeSha256"] == config["CodeSha256"]


def test_delete_function(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    name = create_function()["FunctionName"]
    response = lambda_client.delete_function(FunctionName=name)
    assert response["ResponseMetadata"]["HTTPStatusCode"] in {200, 204}
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function(FunctionName=name)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function(FunctionName=name)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_delete_version_keeps_function(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    lambda_client.delete_function(FunctionName=name, Qualifier="1")
    versions = lambda_client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function(FunctionName=name, Qualifier="$LATEST")
    assert error_of(excinfo)[0] == "InvalidParameterValueException"


def test_delete_version_used_by_alias_is_refused(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function(FunctionName=name, Qualifier="1")
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceConflictException", 409)
    assert "live" in message


def test_list_functions_pages_with_marker(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    created = {create_function()["FunctionName"] for _ in range(5)}
    seen: list[str] = []
    kwargs: dict[str, Any] = {"MaxItems": 2}
    while True:
        page = lambda_client.list_functions(**kwargs)
        assert len(page["Functions"]) <= 2
        seen.extend(f["FunctionName"] for f in page["Functions"])
        if "NextMarker" not in page:
            break
        kwargs["Marker"] = page["NextMarker"]
    assert created <= set(seen)
    assert len(seen) == len(set(seen))


def test_list_functions_all_versions(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    paginator = lambda_client.get_paginator("list_functions")
    versions = [
        f["Version"]
        for page in paginator.paginate(FunctionVersion="ALL", PaginationConfig={"PageSize": 3})
        for f in page["Functions"]
        if f["FunctionName"] == name
    ]
    assert versions == ["$LATEST", "1"]


def test_list_functions_rejects_bad_version_filter(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_functions(FunctionVersion="SOME")
    assert error_of(excinfo)[0] in {"ValidationException", "InvalidParameterValueException"}


def test_concurrent_updates_are_serialised_by_revision(
    server: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    revision = server.client().get_function_configuration(FunctionName=name)["RevisionId"]
    outcomes: list[str] = []

    def update(index: int) -> None:
        client = server.client()
        try:
            client.update_function_configuration(
                FunctionName=name, Description=f"writer {index}", RevisionId=revision
            )
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
        finally:
            client.close()

    threads = [threading.Thread(target=update, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Exactly one writer saw the revision it read; every other one is told it is stale.
    assert sorted(outcomes) == ["PreconditionFailedException"] * 7 + ["ok"]
