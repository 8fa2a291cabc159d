"""Execution-role credentials on a real server (development mode): a function's code runs
boto3 with no endpoint and no credentials of its own, and reaches Lamina as its role's
session: STS names it, and it invokes another function through Lamina."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.iam import LAMBDA_TRUST
from tests.support.lambda_api import invoke
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

ACCOUNT = "000000000000"
# Functions run on this interpreter (the test's own: boto3 is installed with Lamina), as
# Lambda's Python runtimes come with boto3.
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
TRUST = LAMBDA_TRUST
APP = """
import json
import os
import time

import boto3


def whoami(event, context):
    identity = boto3.client("sts").get_caller_identity()
    return {"Arn": identity["Arn"], "UserId": identity["UserId"],
            "Account": identity["Account"], "key": os.environ["AWS_ACCESS_KEY_ID"],
            "init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}


def caller(event, context):
    response = boto3.client("lambda").invoke(
        FunctionName=event["target"], Payload=json.dumps({"from": context.function_name})
    )
    return json.loads(response["Payload"].read())


def echo(event, context):
    return {"echo": event}


def napper(event, context):
    time.sleep(1)
    # The log stream names the environment (a sandbox's pid may be 1 in each).
    return {"key": os.environ["AWS_ACCESS_KEY_ID"],
            "environment": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    runtime = "LAMINA_RUNTIME_" + RUNTIME.upper().replace(".", "_")
    instance = LaminaServer(
        tmp_path_factory.mktemp("execution-role") / "data", env={runtime: sys.executable}
    ).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def lambda_client(server: LaminaServer) -> Iterator[Any]:
    client = server.client("lambda", read_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def role(server: LaminaServer) -> dict[str, Any]:
    iam = server.client("iam")
    try:
        created: dict[str, Any] = iam.create_role(
            RoleName="function-role", AssumeRolePolicyDocument=TRUST
        )["Role"]
    finally:
        iam.close()
    return created


@pytest.fixture
def make_function(
    lambda_client: Any, role: dict[str, Any], unique_name: Callable[[str], str]
) -> Callable[..., str]:
    def make(handler: str, **extra: Any) -> str:
        name = unique_name("fn")
        lambda_client.create_function(
            FunctionName=name,
            Runtime=RUNTIME,
            Role=role["Arn"],
            Handler=f"app.{handler}",
            Code={"ZipFile": make_zip({"app.py": APP})},
            Timeout=30,
            **extra,
        )
        return name

    return make


def test_a_function_is_its_roles_session(
    lambda_client: Any, make_function: Callable[..., str], role: dict[str, Any]
) -> None:
    name = make_function("whoami")
    identity = invoke(lambda_client, name)
    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/function-role/{name}"
    assert identity["UserId"] == f"{role['RoleId']}:{name}"
    assert identity["Account"] == ACCOUNT
    assert identity["key"].startswith("ASIA")
    # Warm: the same environment, the same session.
    assert invoke(lambda_client, name) == identity


def test_a_function_invokes_another_through_lamina(
    lambda_client: Any, make_function: Callable[..., str]
) -> None:
    target = make_function("echo")
    source = make_function("caller")
    assert invoke(lambda_client, source, {"target": target}) == {"echo": {"from": source}}


def test_two_cold_environments_get_different_keys(
    lambda_client: Any, make_function: Callable[..., str]
) -> None:
    name = make_function("napper")
    # Two calls at once: each needs an environment of its own.
    with ThreadPoolExecutor(2) as threads:
        first, second = threads.map(lambda _: invoke(lambda_client, name), range(2))
    assert first["environment"] != second["environment"]
    assert first["key"] != second["key"]


def test_the_functions_own_endpoint_wins(
    lambda_client: Any, make_function: Callable[..., str]
) -> None:
    # Nothing listens there: the SDK's call fails, which shows where it went.
    name = make_function(
        "whoami",
        Environment={"Variables": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}},
    )
    response = lambda_client.invoke(FunctionName=name, Payload=b"{}")
    error = json.loads(response["Payload"].read())
    assert response["FunctionError"] == "Unhandled"
    assert "127.0.0.1:9" in error["errorMessage"]


def test_a_provisioned_environment_is_its_roles_session_too(
    lambda_client: Any, make_function: Callable[..., str]
) -> None:
    name = make_function("whoami", Publish=True)
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )

    def ready() -> bool:
        config = lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
        assert config["Status"] != "FAILED", config
        return bool(config["Status"] == "READY")

    wait_until(ready, timeout=30, message=f"{name}:1 never became READY")
    identity = invoke(lambda_client, name, Qualifier="1")
    assert identity["init"] == "provisioned-concurrency"
    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/function-role/{name}"
    lambda_client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
