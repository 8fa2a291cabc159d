"""Enforced mode: a KMS key is reachable only through its key policy, as on AWS.

The default key policy names the account, so IAM policies decide; a policy naming someone
else shuts out even the account's root user; a Decrypt without KeyId is judged on the key its
ciphertext names.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.iam import LAMBDA_TRUST, client, enforced_env
from tests.support.server import LaminaServer

KEY, SECRET = "AKIAKEYPOLICYROOT", "key-policy-root-secret"
ACCOUNT = "000000000000"
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
HANDLER = "import os\ndef handler(event, context):\n    return os.environ['SECRET']\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    env = enforced_env(KEY, SECRET, python_runtime=RUNTIME)
    started = LaminaServer(tmp_path_factory.mktemp("key-policies") / "data", env=env).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def root_kms(server: LaminaServer) -> Any:
    return client(server, "kms", KEY, SECRET)


def _user(server: LaminaServer, policy: dict[str, Any] | None = None) -> tuple[str, Any]:
    """A new IAM user (with an inline policy if given): its ARN and a KMS client for it."""
    iam = client(server, "iam", KEY, SECRET)
    name = f"kms-user-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="kms", PolicyDocument=json.dumps(policy))
    pair = iam.create_access_key(UserName=name)["AccessKey"]
    return arn, client(server, "kms", pair["AccessKeyId"], pair["SecretAccessKey"])


def _allow(actions: list[str], resource: str = "*") -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}],
    }


def _denied(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    return str(error["Message"])


def test_the_default_key_policy_delegates_to_iam(server: LaminaServer, root_kms: Any) -> None:
    key = root_kms.create_key()["KeyMetadata"]
    user_arn, user_kms = _user(server)
    message = _denied(lambda: user_kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x"))
    assert message == (
        f"User: {user_arn} is not authorized to perform: kms:Encrypt on resource: "
        f"{key['Arn']} because no identity-based policy allows the kms:Encrypt action"
    )
    _, allowed_kms = _user(server, _allow(["kms:Encrypt", "kms:Decrypt"], key["Arn"]))
    blob = allowed_kms.encrypt(KeyId=key["KeyId"], Plaintext=b"secret")["CiphertextBlob"]
    # No KeyId: the key the blob names is the resource, so a key-scoped policy allows it.
    assert allowed_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
    message = _denied(lambda: user_kms.decrypt(CiphertextBlob=blob))
    assert f"kms:Decrypt on resource: {key['Arn']} because no identity-based" in message


def test_a_key_policy_naming_one_user_shuts_out_root_and_others(
    server: LaminaServer, root_kms: Any
) -> None:
    named_arn, named_kms = _user(server)
    other_arn, other_kms = _user(server, _allow(["kms:*"]))
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": named_arn},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
                "Resource": "*",
            }
        ],
    }
    key = root_kms.create_key(Policy=json.dumps(policy), BypassPolicyLockoutSafetyCheck=True)[
        "KeyMetadata"
    ]
    # Named in the key policy: no identity policy needed.
    blob = named_kms.encrypt(KeyId=key["Arn"], Plaintext=b"only-me")["CiphertextBlob"]
    assert named_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"only-me"
    # kms:* in an identity policy does not reach a key whose policy leaves the account out.
    message = _denied(lambda: other_kms.decrypt(CiphertextBlob=blob))
    assert message == (
        f"User: {other_arn} is not authorized to perform: kms:Decrypt on resource: "
        f"{key['Arn']} because no resource-based policy allows the kms:Decrypt action"
    )
    # Nor does the account's root user.
    message = _denied(lambda: root_kms.describe_key(KeyId=key["KeyId"]))
    assert message == (
        f"User: arn:aws:iam::{ACCOUNT}:root is not authorized to perform: kms:DescribeKey "
        f"on resource: {key['Arn']} because no resource-based policy allows the "
        "kms:DescribeKey action"
    )


def test_an_explicit_deny_in_the_key_policy_wins(server: LaminaServer, root_kms: Any) -> None:
    user_arn, user_kms = _user(server, _allow(["kms:*"]))
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": user_arn},
                "Action": "kms:Encrypt",
                "Resource": "*",
            },
        ],
    }
    key = root_kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]
    message = _denied(lambda: user_kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x"))
    assert message.endswith("with an explicit deny in a resource-based policy")
    # The account still reaches the key through IAM for what the key policy does not deny.
    assert user_kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Arn"] == key["Arn"]
    assert root_kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["KeyId"] == key["Arn"]


def _role(server: LaminaServer, policy: dict[str, Any] | None = None) -> str:
    iam = client(server, "iam", KEY, SECRET)
    name = f"kms-role-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return str(arn)


def _function(server: LaminaServer, role: str, key_arn: str, **extra: Any) -> str:
    lambda_client = client(server, "lambda", KEY, SECRET)
    name = f"kms-fn-{uuid.uuid4().hex[:8]}"
    lambda_client.create_function(
        FunctionName=name,
        Runtime=RUNTIME,
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
        Environment={"Variables": {"SECRET": "s3cr3t"}},
        KMSKeyArn=key_arn,
        **extra,
    )
    lambda_client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )
    return name


def _invoke_error(server: LaminaServer, name: str) -> tuple[int, dict[str, Any]]:
    lambda_client = client(server, "lambda", KEY, SECRET)
    with pytest.raises(ClientError) as caught:
        lambda_client.invoke(FunctionName=name, Payload=b"{}")
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]


def test_a_cold_start_needs_a_role_the_key_lets_decrypt(
    server: LaminaServer, root_kms: Any
) -> None:
    allowed_role = _role(server, _allow(["kms:Decrypt"]))
    bare_role = _role(server)
    key = root_kms.create_key()["KeyMetadata"]
    lambda_client = client(server, "lambda", KEY, SECRET)
    allowed = _function(server, allowed_role, key["Arn"])
    response = lambda_client.invoke(FunctionName=allowed, Payload=b"{}")
    assert json.loads(response["Payload"].read()) == "s3cr3t"
    refused = _function(server, bare_role, key["Arn"])
    status, error = _invoke_error(server, refused)
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{bare_role.rsplit('/', 1)[-1]}/{refused}"
    assert (status, error["Code"]) == (502, "KMSAccessDeniedException")
    assert error["Message"] == (
        "Lambda was unable to decrypt the environment variables because KMS access was denied. "
        "Please check the function's KMS key settings. KMS Exception: "
        f"AccessDeniedExceptionKMS Message: User: {session} is not authorized to perform: "
        f"kms:Decrypt on resource: {key['Arn']} because no identity-based policy allows the "
        "kms:Decrypt action"
    )


def test_a_cold_start_under_a_disabled_key_fails(server: LaminaServer, root_kms: Any) -> None:
    key = root_kms.create_key()["KeyMetadata"]
    name = _function(server, _role(server, _allow(["kms:Decrypt"])), key["Arn"])
    root_kms.disable_key(KeyId=key["KeyId"])
    status, error = _invoke_error(server, name)
    assert (status, error["Code"]) == (502, "KMSDisabledException")
    assert error["Message"].startswith(
        "Lambda was unable to decrypt the environment variables because the KMS key used is "
        "disabled. Please check the function's KMS key settings."
    )
    root_kms.enable_key(KeyId=key["KeyId"])
    response = client(server, "lambda", KEY, SECRET).invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(response["Payload"].read()) == "s3cr3t"


def test_a_dead_letter_queue_needs_a_role_that_may_send_to_it(server: LaminaServer) -> None:
    lambda_client = client(server, "lambda", KEY, SECRET)
    queue = f"arn:aws:sqs:us-east-1:{ACCOUNT}:dead-letters"
    topic = f"arn:aws:sns:us-east-1:{ACCOUNT}:dead-letters"
    bare_role = _role(server)
    name = f"dlq-fn-{uuid.uuid4().hex[:8]}"
    create = {
        "FunctionName": name,
        "Runtime": RUNTIME,
        "Role": bare_role,
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip({"app.py": HANDLER})},
    }
    for target, sentence in (
        (queue, "The provided execution role does not have permissions to call SendMessage on SQS"),
        (topic, "The provided execution role does not have permissions to call Publish on SNS"),
    ):
        with pytest.raises(ClientError) as caught:
            lambda_client.create_function(**create, DeadLetterConfig={"TargetArn": target})
        error = caught.value.response["Error"]
        assert (error["Code"], error["Message"]) == ("InvalidParameterValueException", sentence)
    lambda_client.create_function(**create)
    # Only the target changes: the function's current role is the one checked.
    with pytest.raises(ClientError) as caught:
        lambda_client.update_function_configuration(
            FunctionName=name, DeadLetterConfig={"TargetArn": queue}
        )
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValueException"
    sender = _role(server, _allow(["sqs:SendMessage"], queue))
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
    lambda_client.update_function_configuration(
        FunctionName=name, Role=sender, DeadLetterConfig={"TargetArn": queue}
    )
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    config = lambda_client.get_function_configuration(FunctionName=name)
    assert config["DeadLetterConfig"] == {"TargetArn": queue}


def test_a_key_policy_that_locks_its_author_out_is_refused(
    server: LaminaServer, root_kms: Any
) -> None:
    named_arn, named_kms = _user(server)
    only_named = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": named_arn},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )
    lockout = "The new key policy will not allow you to update the key policy in the future."
    with pytest.raises(ClientError) as caught:
        root_kms.create_key(Policy=only_named)
    error = caught.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("MalformedPolicyDocumentException", lockout)
    key = root_kms.create_key()["KeyMetadata"]
    with pytest.raises(ClientError) as caught:
        root_kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=only_named)
    assert caught.value.response["Error"]["Message"] == lockout
    root_kms.put_key_policy(
        KeyId=key["KeyId"],
        PolicyName="default",
        Policy=only_named,
        BypassPolicyLockoutSafetyCheck=True,
    )
    # Locked out as the check warned: only the named user reaches the key now.
    assert "no resource-based policy allows" in _denied(
        lambda: root_kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")
    )
    policy = named_kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    assert json.loads(policy) == json.loads(only_named)
