"""Layers over HTTP: publish, read, list, delete, permissions, and use by functions."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import error_of
from tests.support.ports import free_port
from tests.support.server import LaminaServer

ACCOUNT = "000000000000"
NOT_FOUND = "The resource you requested does not exist."


@pytest.fixture
def publish(lambda_client: Any, unique_name: Callable[[str], str]) -> Callable[..., Any]:
    """Publish a layer version (a fresh layer unless LayerName is given)."""

    def run(**overrides: Any) -> Any:
        params: dict[str, Any] = {
            "LayerName": unique_name("layer"),
            "Content": {"ZipFile": make_zip({"python/lib.py": "VALUE = 1\n"})},
        }
        params.update(overrides)
        return lambda_client.publish_layer_version(**params)

    return run


def layer_arn(name: str, version: int | None = None) -> str:
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:{name}"
    return f"{arn}:{version}" if version is not None else arn


# ------------------------------------------------------------------ publishing


def test_publish_returns_version_and_content(
    publish: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("layer")
    archive = make_zip({"python/lib.py": "VALUE = 42\n"})
    layer = publish(
        LayerName=name,
        Content={"ZipFile": archive},
        Description="shared code",
        CompatibleRuntimes=["python3.12", "python3.11"],
        CompatibleArchitectures=["arm64"],
        LicenseInfo="MIT",
    )
    assert layer["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert layer["Version"] == 1
    assert layer["LayerArn"] == layer_arn(name)
    assert layer["LayerVersionArn"] == layer_arn(name, 1)
    assert layer["Description"] == "shared code"
    assert layer["CompatibleRuntimes"] == ["python3.12", "python3.11"]
    assert layer["CompatibleArchitectures"] == ["arm64"]
    assert layer["LicenseInfo"] == "MIT"
    assert layer["CreatedDate"].endswith("+0000")
    content = layer["Content"]
    assert content["CodeSha256"] == base64.b64encode(hashlib.sha256(archive).digest()).decode()
    assert content["CodeSize"] == len(archive)
    with urllib.request.urlopen(content["Location"]) as response:
        assert response.read() == archive
    assert publish(LayerName=name)["Version"] == 2


def test_publish_accepts_layer_arn_as_name(
    publish: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("layer")
    publish(LayerName=name)
    layer = publish(LayerName=layer_arn(name))
    assert layer["LayerVersionArn"] == layer_arn(name, 2)


def test_publish_refuses_bad_content(publish: Callable[..., Any]) -> None:
    with pytest.raises(ClientError) as excinfo:
        publish(Content={"ZipFile": b"not a zip"})
    code, message, status = error_of(excinfo)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "Could not unzip uploaded file" in message
    with pytest.raises(ClientError) as excinfo:
        publish(Content={"S3Bucket": "code-bucket"})
    code, message, _ = error_of(excinfo)
    assert code == "InvalidParameterValueException"
    assert "S3Key" in message


def test_publish_refuses_layer_arn_of_another_account(publish: Callable[..., Any]) -> None:
    with pytest.raises(ClientError) as excinfo:
        publish(LayerName="arn:aws:lambda:us-east-1:111122223333:layer:elsewhere")
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_version_numbers_are_never_reused(
    lambda_client: Any, publish: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("layer")
    publish(LayerName=name)
    publish(LayerName=name)
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=2)
    assert publish(LayerName=name)["Version"] == 3
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=1)
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=3)
    assert publish(LayerName=name)["Version"] == 4


# --------------------------------------------------------------------- reading


def test_get_layer_version(lambda_client: Any, publish: Callable[..., Any]) -> None:
    published = publish(Description="v1")
    name = published["LayerArn"].rsplit(":", 1)[-1]
    for layer_name in (name, published["LayerArn"]):
        found = lambda_client.get_layer_version(LayerName=layer_name, VersionNumber=1)
        assert found["LayerVersionArn"] == published["LayerVersionArn"]
        assert found["Description"] == "v1"
        assert found["Content"]["CodeSha256"] == published["Content"]["CodeSha256"]


def test_get_unknown_layer_version_is_not_found(
    lambda_client: Any, publish: Callable[..., Any]
) -> None:
    name = publish()["LayerArn"].rsplit(":", 1)[-1]
    for layer_name, version in ((name, 2), ("no-such-layer-anywhere", 1)):
        with pytest.raises(ClientError) as excinfo:
            lambda_client.get_layer_version(LayerName=layer_name, VersionNumber=version)
        assert error_of(excinfo) == ("ResourceNotFoundException", NOT_FOUND, 404)


def test_get_layer_version_by_arn(lambda_client: Any, publish: Callable[..., Any]) -> None:
    published = publish(Description="by arn")
    found = lambda_client.get_layer_version_by_arn(Arn=published["LayerVersionArn"])
    assert found["Description"] == "by arn"
    assert found["Version"] == 1
    assert found["LayerArn"] == published["LayerArn"]


def test_get_layer_version_by_arn_errors(lambda_client: Any, publish: Callable[..., Any]) -> None:
    published = publish()
    # A layer ARN without a version is not a layer *version* ARN.
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_layer_version_by_arn(Arn=published["LayerArn"])
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert "arn" in message
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_layer_version_by_arn(Arn=published["LayerVersionArn"][:-1] + "9")
    assert error_of(excinfo) == ("ResourceNotFoundException", NOT_FOUND, 404)
    other_account = published["LayerVersionArn"].replace(ACCOUNT, "111122223333")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_layer_version_by_arn(Arn=other_account)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_delete_layer_version_is_idempotent(
    lambda_client: Any, publish: Callable[..., Any]
) -> None:
    name = publish()["LayerArn"].rsplit(":", 1)[-1]
    response = lambda_client.delete_layer_version(LayerName=name, VersionNumber=1)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_layer_version(LayerName=name, VersionNumber=1)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"
    again = lambda_client.delete_layer_version(LayerName=name, VersionNumber=1)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_with_malformed_layer_name_is_rejected(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_layer_version(LayerName="bad name!", VersionNumber=1)
    assert error_of(excinfo)[0] == "ValidationException"


# --------------------------------------------------------------------- listing


def all_layers(lambda_client: Any, **filters: Any) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = []
    params: dict[str, Any] = {"MaxItems": 2, **filters}
    while True:
        page = lambda_client.list_layers(**params)
        assert len(page["Layers"]) <= 2
        layers.extend(page["Layers"])
        if not page.get("NextMarker"):
            return layers
        params["Marker"] = page["NextMarker"]


def test_list_layers_shows_latest_matching_version(
    lambda_client: Any, publish: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("layer")
    publish(LayerName=name, CompatibleRuntimes=["nodejs20.x"], CompatibleArchitectures=["arm64"])
    publish(LayerName=name, CompatibleRuntimes=["python3.12"], CompatibleArchitectures=["x86_64"])
    other = publish(CompatibleRuntimes=["python3.12"])
    other_name = other["LayerArn"].rsplit(":", 1)[-1]

    everything = all_layers(lambda_client)
    names = [layer["LayerName"] for layer in everything]
    assert names == sorted(names)
    mine = next(layer for layer in everything if layer["LayerName"] == name)
    assert mine["LayerArn"] == layer_arn(name)
    assert mine["LatestMatchingVersion"]["Version"] == 2
    assert mine["LatestMatchingVersion"]["LayerVersionArn"] == layer_arn(name, 2)
    assert "Content" not in mine["LatestMatchingVersion"]

    by_runtime = {
        layer["LayerName"]: layer
        for layer in all_layers(lambda_client, CompatibleRuntime="nodejs20.x")
    }
    assert by_runtime[name]["LatestMatchingVersion"]["Version"] == 1
    assert other_name not in by_runtime
    by_arch = {
        layer["LayerName"]: layer
        for layer in all_layers(lambda_client, CompatibleArchitecture="x86_64")
    }
    assert by_arch[name]["LatestMatchingVersion"]["Version"] == 2
    assert other_name not in by_arch  # declares no architectures


def test_list_layers_rejects_bad_paging(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_layers(Marker="not-a-marker!")
    assert error_of(excinfo)[0] == "InvalidParameterValueException"


def test_list_layers_rejects_unknown_runtime_filter(server: LaminaServer) -> None:
    client = server.client("lambda", parameter_validation=False)
    with pytest.raises(ClientError) as excinfo:
        client.list_layers(CompatibleRuntime="cobol85", MaxItems=51)
    code, message, _ = error_of(excinfo)
    assert code == "ValidationException"
    assert message.startswith("2 validation errors detected")


def test_list_layer_versions_newest_first_with_paging(
    lambda_client: Any, publish: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("layer")
    for runtime in ("python3.11", "python3.12", "python3.11", "python3.12"):
        publish(LayerName=name, CompatibleRuntimes=[runtime])
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=3)

    first = lambda_client.list_layer_versions(LayerName=name, MaxItems=2)
    assert [v["Version"] for v in first["LayerVersions"]] == [4, 2]
    assert "Content" not in first["LayerVersions"][0]
    second = lambda_client.list_layer_versions(
        LayerName=layer_arn(name), MaxItems=2, Marker=first["NextMarker"]
    )
    assert [v["Version"] for v in second["LayerVersions"]] == [1]
    assert "NextMarker" not in second

    filtered = lambda_client.list_layer_versions(LayerName=name, CompatibleRuntime="python3.11")
    assert [v["Version"] for v in filtered["LayerVersions"]] == [1]
    assert lambda_client.list_layer_versions(LayerName=unique_name("none"))["LayerVersions"] == []


def test_list_layer_versions_rejects_out_of_range_max_items(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_layer_versions(LayerName="any", MaxItems=51)
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert "maxItems" in message


# ----------------------------------------------------------------- permissions


def test_layer_permissions_round_trip(lambda_client: Any, publish: Callable[..., Any]) -> None:
    published = publish()
    name = published["LayerArn"].rsplit(":", 1)[-1]
    version_arn = published["LayerVersionArn"]

    account = lambda_client.add_layer_version_permission(
        LayerName=name,
        VersionNumber=1,
        StatementId="one-account",
        Action="lambda:GetLayerVersion",
        Principal="111122223333",
    )
    assert account["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(account["Statement"]) == {
        "Sid": "one-account",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "lambda:GetLayerVersion",
        "Resource": version_arn,
    }
    org = lambda_client.add_layer_version_permission(
        LayerName=name,
        VersionNumber=1,
        StatementId="my-org",
        Action="lambda:GetLayerVersion",
        Principal="*",
        OrganizationId="o-abcdefghij",
        RevisionId=account["RevisionId"],
    )
    assert org["RevisionId"] != account["RevisionId"]
    assert json.loads(org["Statement"])["Principal"] == "*"
    assert json.loads(org["Statement"])["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}
    }

    policy = lambda_client.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert policy["RevisionId"] == org["RevisionId"]
    document = json.loads(policy["Policy"])
    assert document["Version"] == "2012-10-17"
    assert document["Id"] == "default"
    assert [s["Sid"] for s in document["Statement"]] == ["one-account", "my-org"]

    removed = lambda_client.remove_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="one-account"
    )
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    policy = lambda_client.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert [s["Sid"] for s in json.loads(policy["Policy"])["Statement"]] == ["my-org"]


def test_add_layer_permission_errors(lambda_client: Any, publish: Callable[..., Any]) -> None:
    name = publish()["LayerArn"].rsplit(":", 1)[-1]
    grant = {
        "LayerName": name,
        "VersionNumber": 1,
        "StatementId": "everyone",
        "Action": "lambda:GetLayerVersion",
        "Principal": "*",
    }
    lambda_client.add_layer_version_permission(**grant)

    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_layer_version_permission(**grant)
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceConflictException", 409)
    assert "everyone" in message

    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_layer_version_permission(
            **{**grant, "StatementId": "stale"}, RevisionId="not-the-revision"
        )
    assert error_of(excinfo)[::2] == ("PreconditionFailedException", 412)

    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_layer_version_permission(
            **{**grant, "StatementId": "org", "Principal": "111122223333"},
            OrganizationId="o-abcdefghij",
        )
    code, message, _ = error_of(excinfo)
    assert code == "InvalidParameterValueException"
    assert "OrganizationId" in message

    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_layer_version_permission(
            **{**grant, "StatementId": "invoke", "Action": "lambda:InvokeFunction"}
        )
    assert error_of(excinfo)[0] == "ValidationException"

    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_layer_version_permission(**{**grant, "VersionNumber": 7})
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Layer version {layer_arn(name, 7)} does not exist.",
        404,
    )


def test_layer_policy_not_found_cases(lambda_client: Any, publish: Callable[..., Any]) -> None:
    name = publish()["LayerArn"].rsplit(":", 1)[-1]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert error_of(excinfo)[::2] == ("ResourceNotFoundException", 404)

    with pytest.raises(ClientError) as excinfo:
        lambda_client.remove_layer_version_permission(
            LayerName=name, VersionNumber=1, StatementId="missing"
        )
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message == "Statement missing is not found in resource policy."

    lambda_client.add_layer_version_permission(
        LayerName=name,
        VersionNumber=1,
        StatementId="grant",
        Action="lambda:GetLayerVersion",
        Principal="*",
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.remove_layer_version_permission(
            LayerName=name, VersionNumber=1, StatementId="grant", RevisionId="stale"
        )
    assert error_of(excinfo)[0] == "PreconditionFailedException"


# ------------------------------------------------------------ use by functions


def test_function_uses_layer_until_version_is_deleted(
    lambda_client: Any, publish: Callable[..., Any], create_function: Callable[..., Any]
) -> None:
    published = publish()
    version_arn = published["LayerVersionArn"]
    config = create_function(Layers=[version_arn])
    assert config["Layers"] == [{"Arn": version_arn, "CodeSize": published["Content"]["CodeSize"]}]
    name = published["LayerArn"].rsplit(":", 1)[-1]
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=1)

    # A function that already uses the version keeps it ...
    kept = lambda_client.get_function_configuration(FunctionName=config["FunctionName"])
    assert [layer["Arn"] for layer in kept["Layers"]] == [version_arn]
    # ... but no new function can start using it.
    with pytest.raises(ClientError) as excinfo:
        create_function(Layers=[version_arn])
    code, message, _ = error_of(excinfo)
    assert code == "InvalidParameterValueException"
    assert version_arn in message


# ------------------------------------------------------------------ S3 content


@pytest.fixture(scope="module")
def s3_backed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LaminaServer, Any]]:
    """A Lamina server that reads code from a local S3-compatible server (moto)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3_server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    data_dir: Path = tmp_path_factory.mktemp("lamina-s3") / "data"
    lamina = LaminaServer(data_dir, env=env).start()
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        yield lamina, s3
    finally:
        lamina.stop()
        s3_server.stop()


def test_publish_from_s3(s3_backed: tuple[LaminaServer, Any]) -> None:
    lamina, s3 = s3_backed
    archive = make_zip({"python/from_s3.py": "X = 1\n"})
    s3.create_bucket(Bucket="layer-code")
    s3.put_object(Bucket="layer-code", Key="layer.zip", Body=archive)
    client = lamina.client("lambda")
    layer = client.publish_layer_version(
        LayerName="from-s3", Content={"S3Bucket": "layer-code", "S3Key": "layer.zip"}
    )
    assert layer["Content"]["CodeSize"] == len(archive)
    assert layer["Content"]["CodeSha256"] == (
        base64.b64encode(hashlib.sha256(archive).digest()).decode()
    )
    with pytest.raises(ClientError) as excinfo:
        client.publish_layer_version(
            LayerName="from-s3", Content={"S3Bucket": "layer-code", "S3Key": "missing.zip"}
        )
    code, message, _ = error_of(excinfo)
    assert code == "InvalidParameterValueException"
    assert "NoSuchKey" in message
