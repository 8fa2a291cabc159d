"""With credentials configured, every request must carry a valid SigV4 signature."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.server import LaminaServer

KEY, SECRET = "AKIALAMINATEST", "lamina-test-secret"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    env = {"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
    server = LaminaServer(tmp_path_factory.mktemp("auth") / "data", env=env).start()
    yield server
    server.stop()


def test_correctly_signed_requests_succeed(secured: LaminaServer) -> None:
    client = secured.client(access_key=KEY, secret_key=SECRET)
    assert client.list_functions()["Functions"] == []
    # A greedy, percent-encoded path and a query string are part of what is signed.
    with pytest.raises(ClientError) as excinfo:
        client.get_function(
            FunctionName="arn:aws:lambda:us-east-1:000000000000:function:nope", Qualifier="1"
        )
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_wrong_secret_is_rejected(secured: LaminaServer) -> None:
    client = secured.client(access_key=KEY, secret_key="not-the-secret")
    with pytest.raises(ClientError) as excinfo:
        client.list_functions()
    assert excinfo.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_key_is_rejected(secured: LaminaServer) -> None:
    client = secured.client(access_key="AKIAUNKNOWN", secret_key=SECRET)
    with pytest.raises(ClientError) as excinfo:
        client.list_functions()
    assert excinfo.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_unsigned_request_is_rejected(secured: LaminaServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(f"{secured.endpoint}/2015-03-31/functions")
    excinfo.value.close()
    assert excinfo.value.code == 403
    assert excinfo.value.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"


def test_public_address_without_credentials_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lamina",
            "serve",
            "--host",
            "0.0.0.0",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "without authentication" in result.stderr
    assert "--insecure" in result.stderr
