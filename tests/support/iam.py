"""IAM set-up for servers in enforced mode: the role functions are created with must exist
and trust Lambda there."""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer

LAMBDA_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def client(
    server: LaminaServer,
    service: str,
    key: str,
    secret: str,
    token: str | None = None,
) -> Any:
    """A boto3 client signing with the given credentials (and session token)."""
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def ensure_lambda_role(server: LaminaServer, key: str, secret: str) -> str:
    """Create `tests.support.lambda_api.ROLE` (trusting Lambda) with the root key; its ARN."""
    iam = client(server, "iam", key, secret)
    try:
        iam.create_role(RoleName=ROLE.rsplit("/", 1)[-1], AssumeRolePolicyDocument=LAMBDA_TRUST)
    except ClientError as error:
        if error.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
    return ROLE


def enforced_env(key: str, secret: str, *, python_runtime: str | None = None) -> dict[str, str]:
    """A server's environment for enforced mode with this root key pair; with
    `python_runtime` (`python3.11`), that runtime runs on this interpreter."""
    env = {"LAMINA_ACCESS_KEY_ID": key, "LAMINA_SECRET_ACCESS_KEY": secret}
    if python_runtime is not None:
        env["LAMINA_RUNTIME_" + python_runtime.upper().replace(".", "_")] = sys.executable
    return env
