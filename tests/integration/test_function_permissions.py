"""A function's permissions in enforced mode: its code signs with its execution role's
session, so calling another function through Lamina works when the role allows it and is
refused with AWS's sentence when it does not."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.iam import LAMBDA_TRUST, client, enforced_env
from tests.support.server import LaminaServer

KEY, SECRET = "AKIAFUNCTIONSROOT", "functions-root-secret"
ACCOUNT = "000000000000"
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
TRUST = LAMBDA_TRUST
APP = """
import json

import boto3
from botocore.exceptions import ClientError


def caller(event, context):
    try:
        response = boto3.client("lambda").invoke(FunctionName=event["target"], Payload=b"{}")
    except ClientError as error:
        return {"error": error.response["Error"]}
    return {"payload": json.loads(response["Payload"].read())}


def echo(event, context):
    return "echoed"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    env = enforced_env(KEY, SECRET, python_runtime=RUNTIME)
    started = LaminaServer(tmp_path_factory.mktemp("permissions") / "data", env=env).start()
    yield started
    started.stop()


def make_function(lambda_client: Any, role_arn: str, handler: str) -> str:
    name = f"{handler}-{uuid.uuid4().hex[:8]}"
    lambda_client.create_function(
        FunctionName=name,
        Runtime=RUNTIME,
        Role=role_arn,
        Handler=f"app.{handler}",
        Code={"ZipFile": make_zip({"app.py": APP})},
        Timeout=30,
    )
    lambda_client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )
    return name


def call(lambda_client: Any, name: str, event: dict[str, Any]) -> Any:
    response = lambda_client.invoke(FunctionName=name, Payload=json.dumps(event))
    assert "FunctionError" not in response
    return json.loads(response["Payload"].read())


def test_a_function_may_invoke_what_its_role_allows_and_nothing_else(
    server: LaminaServer,
) -> None:
    iam = client(server, "iam", KEY, SECRET)
    lambda_client = client(server, "lambda", KEY, SECRET)
    role_name = f"caller-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=TRUST)["Role"]
    target = make_function(lambda_client, role["Arn"], "echo")
    other = make_function(lambda_client, role["Arn"], "echo")
    source = make_function(lambda_client, role["Arn"], "caller")
    target_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{target}"
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{source}"

    # No policy yet: AWS's refusal, naming the function's session.
    refused = call(lambda_client, source, {"target": target})["error"]
    assert refused["Code"] == "AccessDeniedException"
    assert refused["Message"] == (
        f"User: {session} is not authorized to perform: lambda:InvokeFunction on resource: "
        f"{target_arn} because no identity-based policy allows the lambda:InvokeFunction action"
    )

    iam.put_role_policy(
        RoleName=role_name,
        PolicyName="invoke-target",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": target_arn}
                ],
            }
        ),
    )
    assert call(lambda_client, source, {"target": target}) == {"payload": "echoed"}
    # Exactly what the role allows: another function stays out of reach.
    assert call(lambda_client, source, {"target": other})["error"]["Code"] == (
        "AccessDeniedException"
    )
