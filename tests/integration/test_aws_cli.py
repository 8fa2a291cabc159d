"""The AWS CLI works against Lamina with nothing but --endpoint-url."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.aws_cli import run_aws
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer


@pytest.fixture
def aws(server: LaminaServer, tmp_path: Path) -> Callable[..., Any]:
    def run(*args: str, expect_failure: bool = False) -> Any:
        result = run_aws(server.endpoint, tmp_path, "lambda", *args)
        if expect_failure:
            assert result.returncode != 0
            return result.stderr
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else None

    return run


def test_create_list_update_get_delete(
    aws: Callable[..., Any], tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    archive = tmp_path / "function.zip"
    archive.write_bytes(make_zip())
    name = unique_name("cli")
    created = aws(
        "create-function",
        "--function-name",
        name,
        "--runtime",
        "python3.12",
        "--role",
        ROLE,
        "--handler",
        "app.handler",
        "--zip-file",
        f"fileb://{archive}",
    )
    assert created["FunctionName"] == name
    listed = aws("list-functions")
    assert name in [f["FunctionName"] for f in listed["Functions"]]
    updated = aws("update-function-configuration", "--function-name", name, "--memory-size", "512")
    assert updated["MemorySize"] == 512
    assert aws("get-function", "--function-name", name)["Configuration"]["MemorySize"] == 512
    assert aws("publish-version", "--function-name", name)["Version"] == "1"
    aws("delete-function", "--function-name", name)
    stderr = aws("get-function", "--function-name", name, expect_failure=True)
    assert "ResourceNotFoundException" in stderr


def test_cli_shows_server_side_errors(aws: Callable[..., Any], tmp_path: Path) -> None:
    archive = tmp_path / "function.zip"
    archive.write_bytes(make_zip({"../../escape.py": "x = 1\n"}))
    stderr = aws(
        "create-function",
        "--function-name",
        "cli-bad-zip",
        "--runtime",
        "python3.12",
        "--role",
        ROLE,
        "--handler",
        "app.handler",
        "--zip-file",
        f"fileb://{archive}",
        expect_failure=True,
    )
    assert "InvalidParameterValueException" in stderr
    assert "escapes the archive root" in stderr
