"""Code hosted in S3 is read through boto3 from any S3-compatible server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.server import LaminaServer


@pytest.fixture(scope="module")
def lamina_with_s3(
    tmp_path_factory: pytest.TempPathFactory, moto: MotoServer
) -> Iterator[LaminaServer]:
    server = LaminaServer(tmp_path_factory.mktemp("s3code") / "data", env=moto.env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bucket(moto: MotoServer) -> str:
    moto.client("s3").create_bucket(Bucket="lamina-code")
    return "lamina-code"


def test_create_and_update_from_s3(
    lamina_with_s3: LaminaServer, moto: MotoServer, bucket: str
) -> None:
    s3 = moto.client("s3")
    first, second = make_zip({"app.py": "v = 1\n"}), make_zip({"app.py": "v = 2\n"})
    s3.put_object(Bucket=bucket, Key="v1.zip", Body=first)
    s3.put_object(Bucket=bucket, Key="v2.zip", Body=second)
    client = lamina_with_s3.client()
    created = client.create_function(
        FunctionName="from-s3",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"S3Bucket": bucket, "S3Key": "v1.zip"},
    )
    assert created["CodeSize"] == len(first)
    updated = client.update_function_code(FunctionName="from-s3", S3Bucket=bucket, S3Key="v2.zip")
    assert updated["CodeSize"] == len(second)
    assert updated["CodeSha256"] != created["CodeSha256"]


def test_missing_s3_object_is_a_clear_error(lamina_with_s3: LaminaServer, bucket: str) -> None:
    client = lamina_with_s3.client()
    with pytest.raises(ClientError) as excinfo:
        client.create_function(
            FunctionName="missing-s3",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"S3Bucket": bucket, "S3Key": "nope.zip"},
        )
    error = excinfo.value.response["Error"]
    assert error["Code"] == "InvalidParameterValueException"
    assert "NoSuchKey" in error["Message"]


def test_unreachable_s3_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_MAX_ATTEMPTS": "1",
    }
    server = LaminaServer(tmp_path / "data", env=env).start()
    try:
        client: Any = server.client()
        with pytest.raises(ClientError) as excinfo:
            client.create_function(
                FunctionName="no-s3",
                Runtime="python3.12",
                Role=ROLE,
                Handler="app.handler",
                Code={"S3Bucket": "bucket", "S3Key": "k.zip"},
            )
        assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert "GetObject" in excinfo.value.response["Error"]["Message"]
    finally:
        server.stop()
