"""STS on Lamina's port (development mode): who the caller is, AssumeRole checked against the
role's trust policy, GetSessionToken, and calls made with the credentials they return."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws_cli import run_aws
from tests.support.aws_errors import refused
from tests.support.server import LaminaServer

ACCOUNT = "000000000000"
OTHER_ACCOUNT = "111111111111"


def trust(principal: dict[str, Any], effect: str = "Allow") -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": effect, "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


@pytest.fixture(scope="module")
def iam(server: LaminaServer) -> Iterator[Any]:
    client = server.client("iam")
    yield client
    client.close()


@pytest.fixture(scope="module")
def sts(server: LaminaServer) -> Iterator[Any]:
    client = server.client("sts")
    yield client
    client.close()


def sts_with(server: LaminaServer, credentials: dict[str, str]) -> Any:
    """An STS client signing with `credentials` (a key pair, or STS's Credentials)."""
    return server.client(
        "sts",
        access_key=credentials["AccessKeyId"],
        secret_key=credentials["SecretAccessKey"],
    )


@pytest.fixture
def make_role(iam: Any, unique_name: Callable[[str], str]) -> Callable[..., dict[str, Any]]:
    def make(trust_policy: str, **extra: Any) -> dict[str, Any]:
        role: dict[str, Any] = iam.create_role(
            RoleName=unique_name("role"), AssumeRolePolicyDocument=trust_policy, **extra
        )["Role"]
        return role

    return make


def test_caller_identity_defaults_to_the_account_root(sts: Any) -> None:
    found = sts.get_caller_identity()
    assert (found["Account"], found["Arn"], found["UserId"]) == (
        ACCOUNT,
        f"arn:aws:iam::{ACCOUNT}:root",
        ACCOUNT,
    )


def test_a_twelve_digit_key_names_the_account(server: LaminaServer) -> None:
    client = server.client("sts", access_key=OTHER_ACCOUNT)
    found = client.get_caller_identity()
    assert (found["Account"], found["Arn"]) == (
        OTHER_ACCOUNT,
        f"arn:aws:iam::{OTHER_ACCOUNT}:root",
    )


def test_a_users_key_is_the_user(
    server: LaminaServer, iam: Any, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("user")
    user = iam.create_user(UserName=name)["User"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    found = sts_with(server, key).get_caller_identity()
    assert (found["Account"], found["Arn"], found["UserId"]) == (
        ACCOUNT,
        user["Arn"],
        user["UserId"],
    )
    # IAM calls without UserName act on the caller.
    as_user = server.client("iam", access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"])
    assert as_user.get_user()["User"]["UserName"] == name
    second = as_user.create_access_key()["AccessKey"]
    assert second["UserName"] == name
    assert len(as_user.list_access_keys()["AccessKeyMetadata"]) == 2
    refused(
        iam.list_access_keys,
        "ValidationError",
        400,
        "Must specify userName when calling with non-User credentials",
    )


def test_assume_role_then_call_with_its_credentials(
    server: LaminaServer, sts: Any, make_role: Callable[..., dict[str, Any]]
) -> None:
    role = make_role(trust({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}), MaxSessionDuration=7200)
    before = time.time()
    assumed = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="build-42", DurationSeconds=7200)
    after = time.time()
    user = assumed["AssumedRoleUser"]
    expected_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/build-42"
    assert user == {"AssumedRoleId": f"{role['RoleId']}:build-42", "Arn": expected_arn}
    credentials = assumed["Credentials"]
    assert credentials["AccessKeyId"].startswith("ASIA") and len(credentials["AccessKeyId"]) == 20
    assert len(credentials["SecretAccessKey"]) == 40 and credentials["SessionToken"]
    assert before + 7200 <= credentials["Expiration"].timestamp() <= after + 7200

    session_client = sts_with(server, credentials)
    found = session_client.get_caller_identity()
    assert (found["Arn"], found["UserId"], found["Account"]) == (
        expected_arn,
        f"{role['RoleId']}:build-42",
        ACCOUNT,
    )
    # Role chaining is held to an hour.
    refused(
        lambda: session_client.assume_role(
            RoleArn=role["Arn"], RoleSessionName="chained", DurationSeconds=3601
        ),
        "ValidationError",
        400,
        "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
        "role chaining.",
    )
    refused(
        session_client.get_session_token,
        "AccessDenied",
        403,
        "Cannot call GetSessionToken with session credentials",
    )


def test_trust_policy_decides(
    server: LaminaServer, sts: Any, make_role: Callable[..., dict[str, Any]]
) -> None:
    lambda_only = make_role(trust({"Service": "lambda.amazonaws.com"}))
    refused(
        lambda: sts.assume_role(RoleArn=lambda_only["Arn"], RoleSessionName="s1"),
        "AccessDenied",
        403,
        f"User: arn:aws:iam::{ACCOUNT}:root is not authorized to perform: sts:AssumeRole on "
        f"resource: {lambda_only['Arn']}",
    )
    missing = f"arn:aws:iam::{ACCOUNT}:role/no-such-role"
    refused(
        lambda: sts.assume_role(RoleArn=missing, RoleSessionName="s1"),
        "AccessDenied",
        403,
        f"User: arn:aws:iam::{ACCOUNT}:root is not authorized to perform: sts:AssumeRole on "
        f"resource: {missing}",
    )
    # Another account may assume the role only when the trust policy names it.
    other = server.client("sts", access_key=OTHER_ACCOUNT)
    refused(
        lambda: other.assume_role(RoleArn=lambda_only["Arn"], RoleSessionName="s1"),
        "AccessDenied",
        403,
    )
    cross = make_role(trust({"AWS": OTHER_ACCOUNT}))
    assumed = other.assume_role(RoleArn=cross["Arn"], RoleSessionName="visitor")
    assert assumed["AssumedRoleUser"]["Arn"].endswith(f"/{cross['RoleName']}/visitor")
    denied = make_role(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
                    {
                        "Effect": "Deny",
                        "Principal": {"AWS": OTHER_ACCOUNT},
                        "Action": "sts:AssumeRole",
                    },
                ],
            }
        )
    )
    sts.assume_role(RoleArn=denied["Arn"], RoleSessionName="s1")
    refused(
        lambda: other.assume_role(RoleArn=denied["Arn"], RoleSessionName="s1"),
        "AccessDenied",
        403,
    )


def test_assume_role_refusals(
    server: LaminaServer, sts: Any, make_role: Callable[..., dict[str, Any]]
) -> None:
    role = make_role(trust({"AWS": ACCOUNT}))
    refused(
        lambda: sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=3601),
        "ValidationError",
        400,
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
    )
    unchecked = server.client("sts", parameter_validation=False)
    refused(
        lambda: unchecked.assume_role(
            RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=899
        ),
        "ValidationError",
        400,
        "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy "
        "constraint: Member must have value greater than or equal to 900",
    )
    refused(
        lambda: unchecked.assume_role(RoleArn=role["Arn"], RoleSessionName="has space"),
        "ValidationError",
        400,
    )
    unchecked.close()
    refused(
        lambda: sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", Policy="{nope"),
        "MalformedPolicyDocument",
        400,
    )
    narrowed = sts.assume_role(
        RoleArn=role["Arn"],
        RoleSessionName="narrow",
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "lambda:Get*", "Resource": "*"}],
            }
        ),
    )
    assert narrowed["PackedPolicySize"] > 0


def test_get_session_token(
    server: LaminaServer, sts: Any, iam: Any, unique_name: Callable[[str], str]
) -> None:
    root = sts.get_session_token(DurationSeconds=7200)["Credentials"]
    assert root["AccessKeyId"].startswith("ASIA")
    assert sts_with(server, root).get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"

    name = unique_name("user")
    user = iam.create_user(UserName=name)["User"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    session = sts_with(server, key).get_session_token(DurationSeconds=900)["Credentials"]
    found = sts_with(server, session).get_caller_identity()
    assert (found["Arn"], found["UserId"]) == (user["Arn"], user["UserId"])


def test_aws_cli(
    server: LaminaServer, tmp_path: Path, make_role: Callable[..., dict[str, Any]]
) -> None:
    def aws(*args: str) -> Any:
        result = run_aws(server.endpoint, tmp_path, "sts", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    assert aws("get-caller-identity")["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    role = make_role(trust({"AWS": ACCOUNT}))
    assumed = aws("assume-role", "--role-arn", role["Arn"], "--role-session-name", "cli")
    assert assumed["AssumedRoleUser"]["Arn"].endswith(f"/{role['RoleName']}/cli")
    assert aws("get-session-token")["Credentials"]["AccessKeyId"].startswith("ASIA")
