"""The audit trail over HTTP: boto3 calls in, `lamina audit` out, across a restart.

`lamina audit` asks the server, which first writes everything recorded so far: an entry is
there as soon as the call that made it has returned, so nothing here polls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.iam import ensure_lambda_role
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer

KEY, SECRET = "AKIALAMINAAUDIT", "lamina-audit-secret"


def lamina_audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # No credentials but the ones a test gives: the command must not pick up the caller's.
    clean = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "LAMINA_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "lamina", "audit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **(env or {})},
    )


def events(*args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = lamina_audit(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)["Events"]
    return found


def create(client: Any, name: str) -> None:
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip()},
    )


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    server = LaminaServer(tmp_path_factory.mktemp("audit") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def client(audited: LaminaServer) -> Iterator[Any]:
    lambda_client = audited.client()
    yield lambda_client
    lambda_client.close()


def test_control_plane_calls_are_recorded_and_invokes_are_not(
    audited: LaminaServer, client: Any, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("audit")
    create(client, name)
    client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"API_TOKEN": "hunter2-secret"}}
    )
    assert client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    with pytest.raises(ClientError):
        client.get_function(FunctionName=f"{name}-missing")

    found = events("--endpoint", audited.endpoint, "--function", name)
    assert [(item["Operation"], item["Status"], item["ErrorCode"]) for item in found] == [
        ("CreateFunction", 201, None),
        ("UpdateFunctionConfiguration", 200, None),
    ]
    created = found[0]
    assert created["Caller"] == "anonymous"  # this server checks no signatures
    assert created["SourceIp"] == "127.0.0.1"
    assert created["Resource"] == name
    assert created["Service"] == "lambda"
    assert "Boto3" in created["UserAgent"]
    assert created["RequestId"] and created["Time"].endswith("Z")

    failed = events("--endpoint", audited.endpoint, "--failed", "--operation", "GetFunction")
    assert [(item["Resource"], item["Status"], item["ErrorCode"]) for item in failed][-1] == (
        f"{name}-missing",
        404,
        "ResourceNotFoundException",
    )
    assert all(item["Status"] >= 400 for item in failed)

    # Only names are kept: no environment variables, no code.
    log = "".join(path.read_text() for path in (audited.data_dir / "audit").iterdir())
    assert "hunter2-secret" not in log
    assert "def handler" not in log

    table = lamina_audit("--endpoint", audited.endpoint, "--function", name, "--since", "1h")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "CALLER", "SOURCE", "OPERATION", "STATUS", "RESOURCE"]
    assert "CreateFunction" in lines[1] and name in lines[1] and "201" in lines[1]
    future = lamina_audit("--endpoint", audited.endpoint, "--since", "2999-01-01T00:00:00")
    assert future.stdout.strip() == "No audited calls match."


def test_eventbridge_and_logs_calls_are_recorded_and_log_data_calls_are_not(
    audited: LaminaServer, unique_name: Callable[[str], str]
) -> None:
    rule, group = unique_name("rule"), f"/audit/{unique_name('group')}"
    events_client, logs_client = audited.client("events"), audited.client("logs")
    events_client.put_rule(Name=rule, ScheduleExpression="rate(5 minutes)", State="DISABLED")
    logs_client.create_log_group(logGroupName=group)
    logs_client.create_log_stream(logGroupName=group, logStreamName="s")
    logs_client.put_log_events(
        logGroupName=group, logStreamName="s", logEvents=[{"timestamp": 1, "message": "m"}]
    )
    logs_client.filter_log_events(logGroupName=group)

    put = events("--endpoint", audited.endpoint, "--operation", "PutRule")
    assert (put[-1]["Service"], put[-1]["Resource"], put[-1]["Status"]) == ("events", rule, 200)
    recorded = [
        item["Operation"]
        for item in events("--endpoint", audited.endpoint)
        if item["Resource"] == group
    ]
    # Reading and writing log events are data events, as in CloudTrail: off by default.
    assert recorded == ["CreateLogGroup", "CreateLogStream"]
    events_client.close()
    logs_client.close()


def test_entries_survive_a_restart(
    audited: LaminaServer, client: Any, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("audit")
    create(client, name)
    client.delete_function(FunctionName=name)
    # Stopped right after the call: a clean shutdown writes whatever is still queued.
    audited.stop()
    offline = events("--data-dir", str(audited.data_dir), "--function", name)
    assert [item["Operation"] for item in offline] == ["CreateFunction", "DeleteFunction"]
    unreachable = lamina_audit("--endpoint", audited.endpoint)
    assert unreachable.returncode == 1
    assert "no Lamina server answers" in unreachable.stderr

    audited.start()
    online = events("--endpoint", audited.endpoint, "--function", name)
    assert online == offline


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    env = {
        "LAMINA_ACCESS_KEY_ID": KEY,
        "LAMINA_SECRET_ACCESS_KEY": SECRET,
        "LAMINA_AUDIT_INVOKES": "on",
    }
    server = LaminaServer(tmp_path_factory.mktemp("audit-auth") / "data", env=env).start()
    ensure_lambda_role(server, KEY, SECRET)  # enforced mode: the role must trust Lambda
    yield server
    server.stop()


def test_with_credentials_the_caller_is_the_key(
    secured: LaminaServer, unique_name: Callable[[str], str]
) -> None:
    signed = secured.client(access_key=KEY, secret_key=SECRET)
    forged = secured.client(access_key=KEY, secret_key="not-the-secret")
    try:
        name = unique_name("audit")
        create(signed, name)
        assert signed.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
        with pytest.raises(ClientError):
            forged.delete_function(FunctionName=name)
    finally:
        signed.close()
        forged.close()

    # The log names callers and their addresses: reading it takes the key too.
    refused = lamina_audit("--endpoint", secured.endpoint)
    assert refused.returncode == 1
    assert "UnrecognizedClientException" in refused.stderr
    credentials = {"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
    found = events("--endpoint", secured.endpoint, "--function", name, env=credentials)
    assert [(item["Operation"], item["Caller"], item["Status"]) for item in found] == [
        ("CreateFunction", KEY, 201),
        ("Invoke", KEY, 200),  # LAMINA_AUDIT_INVOKES=on: data events too
        ("DeleteFunction", "anonymous", 403),  # a bad signature proves no identity
    ]
    assert found[-1]["ErrorCode"] == "InvalidSignatureException"
    # The standard AWS variables work as well.
    aws = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    assert events("--endpoint", secured.endpoint, "--function", name, env=aws) == found


def test_bad_arguments(tmp_path: Path) -> None:
    result = lamina_audit("--since", "last tuesday", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--since takes a duration" in result.stderr
    result = lamina_audit("--data-dir", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "no audit log in" in result.stderr
