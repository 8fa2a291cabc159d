"""Enforced mode: with the account's root key configured, IAM users' access keys and STS
sessions sign too, and every call is decided by the caller's policies as AWS decides it."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from lamina.cli import serving_mode
from lamina.model.iam import Session
from lamina.settings import Settings
from lamina.store.sealing import MASTER_KEY_FILE, open_master_key
from lamina.store.sqlite.database import Database
from lamina.store.sqlite.iam import SqliteIamStore
from tests.support.archives import make_zip
from tests.support.aws_errors import refused
from tests.support.iam import client, ensure_lambda_role
from tests.support.server import LaminaServer, server_log

KEY, SECRET = "AKIAENFORCEDROOT", "enforced-root-secret"
ACCOUNT = "000000000000"
FUNCTION = "enforced-echo"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{FUNCTION}"
INVALID_TOKEN = "The security token included in the request is invalid."
WRONG_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def denied(principal: str, action: str, resource: str, because: str) -> str:
    return (
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
        f"{because}"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    env = {"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
    started = LaminaServer(tmp_path_factory.mktemp("enforced") / "data", env=env).start()
    try:
        role = ensure_lambda_role(started, KEY, SECRET)
        client(started, "lambda", KEY, SECRET).create_function(
            FunctionName=FUNCTION,
            Runtime="python3.12",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": make_zip()},
        )
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def root_iam(server: LaminaServer) -> Any:
    return client(server, "iam", KEY, SECRET)


@pytest.fixture
def user(server: LaminaServer, root_iam: Any) -> tuple[str, str, str]:
    """A fresh user with an access key and no policy: (ARN, key id, secret)."""
    name = f"user-{uuid.uuid4().hex[:8]}"
    arn = root_iam.create_user(UserName=name)["User"]["Arn"]
    key = root_iam.create_access_key(UserName=name)["AccessKey"]
    return arn, key["AccessKeyId"], key["SecretAccessKey"]


def name_of(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def invoke(lambda_client: Any) -> dict[str, Any]:
    result = lambda_client.invoke(FunctionName=FUNCTION, Payload=b'{"hello": "world"}')
    assert result["StatusCode"] == 200
    return json.loads(result["Payload"].read())  # type: ignore[no-any-return]


def test_start_up_states_the_mode(server: LaminaServer) -> None:
    assert "Mode: enforced: signatures checked against IAM, policies enforced" in server_log(server)


def test_the_root_key_may_do_everything(server: LaminaServer) -> None:
    assert invoke(client(server, "lambda", KEY, SECRET)) == {"hello": "world"}
    assert client(server, "lambda", KEY, SECRET).list_functions()["Functions"]
    assert client(server, "iam", KEY, SECRET).list_roles()["Roles"]
    identity = client(server, "sts", KEY, SECRET).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    client(server, "logs", KEY, SECRET).describe_log_groups()
    client(server, "events", KEY, SECRET).list_rules()
    client(server, "cloudwatch", KEY, SECRET).list_metrics()
    client(server, "kms", KEY, SECRET).list_keys()


def test_a_user_without_policies_is_denied_with_aws_sentence(
    server: LaminaServer, user: tuple[str, str, str]
) -> None:
    arn, key, secret = user
    action = "lambda:InvokeFunction"
    refused(
        lambda: invoke(client(server, "lambda", key, secret)),
        "AccessDeniedException",
        403,
        denied(
            arn,
            action,
            FUNCTION_ARN,
            f"because no identity-based policy allows the {action} action",
        ),
    )
    # Query APIs say AccessDenied.
    refused(
        lambda: client(server, "iam", key, secret).list_users(),
        "AccessDenied",
        403,
        denied(
            arn,
            "iam:ListUsers",
            "*",
            "because no identity-based policy allows the iam:ListUsers action",
        ),
    )
    # Who one is needs no permission.
    identity = client(server, "sts", key, secret).get_caller_identity()
    assert identity["Arn"] == arn


def test_a_policy_allowing_invoke_on_the_function_lets_the_user_invoke(
    server: LaminaServer, root_iam: Any, user: tuple[str, str, str]
) -> None:
    arn, key, secret = user
    root_iam.put_user_policy(
        UserName=name_of(arn),
        PolicyName="invoke",
        PolicyDocument=policy(allow("lambda:InvokeFunction", FUNCTION_ARN)),
    )
    lambda_client = client(server, "lambda", key, secret)
    assert invoke(lambda_client) == {"hello": "world"}
    # Nothing more than that.
    refused(
        lambda: lambda_client.get_function(FunctionName=FUNCTION),
        "AccessDeniedException",
        403,
        denied(
            arn,
            "lambda:GetFunction",
            FUNCTION_ARN,
            "because no identity-based policy allows the lambda:GetFunction action",
        ),
    )


def test_an_attached_managed_policy_allows_and_an_explicit_deny_wins(
    server: LaminaServer, root_iam: Any, user: tuple[str, str, str]
) -> None:
    arn, key, secret = user
    root_iam.attach_user_policy(
        UserName=name_of(arn), PolicyArn="arn:aws:iam::aws:policy/AWSLambda_ReadOnlyAccess"
    )
    lambda_client = client(server, "lambda", key, secret)
    assert lambda_client.get_function(FunctionName=FUNCTION)["Configuration"]["FunctionArn"]
    root_iam.put_user_policy(
        UserName=name_of(arn),
        PolicyName="no-get",
        PolicyDocument=policy(
            {"Effect": "Deny", "Action": "lambda:GetFunction", "Resource": FUNCTION_ARN}
        ),
    )
    refused(
        lambda: lambda_client.get_function(FunctionName=FUNCTION),
        "AccessDeniedException",
        403,
        denied(
            arn,
            "lambda:GetFunction",
            FUNCTION_ARN,
            "with an explicit deny in an identity-based policy",
        ),
    )
    assert lambda_client.list_functions()["Functions"]


def test_a_resource_policy_naming_the_user_allows_on_its_own(
    server: LaminaServer, user: tuple[str, str, str]
) -> None:
    arn, key, secret = user
    root_lambda = client(server, "lambda", KEY, SECRET)
    statement = f"user-{uuid.uuid4().hex[:8]}"
    root_lambda.add_permission(
        FunctionName=FUNCTION,
        StatementId=statement,
        Action="lambda:InvokeFunction",
        Principal=arn,
    )
    try:
        assert invoke(client(server, "lambda", key, secret)) == {"hello": "world"}
    finally:
        root_lambda.remove_permission(FunctionName=FUNCTION, StatementId=statement)


def test_assumed_role_sessions_are_allowed_what_the_role_and_session_policy_allow(
    server: LaminaServer, root_iam: Any
) -> None:
    role = f"invoker-{uuid.uuid4().hex[:8]}"
    trust = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "sts:AssumeRole",
        }
    )
    role_arn = root_iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    root_iam.put_role_policy(
        RoleName=role,
        PolicyName="invoke-and-read",
        PolicyDocument=policy(allow(["lambda:InvokeFunction", "lambda:GetFunction"], FUNCTION_ARN)),
    )
    sts = client(server, "sts", KEY, SECRET)
    credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName="s1")["Credentials"]
    session = (
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
    )
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/s1"
    assert client(server, "sts", *session).get_caller_identity()["Arn"] == session_arn
    assert invoke(client(server, "lambda", *session)) == {"hello": "world"}
    refused(
        lambda: client(server, "lambda", *session).list_functions(),
        "AccessDeniedException",
        403,
        denied(
            session_arn,
            "lambda:ListFunctions",
            "*",
            "because no identity-based policy allows the lambda:ListFunctions action",
        ),
    )

    narrowed = sts.assume_role(
        RoleArn=role_arn,
        RoleSessionName="s2",
        Policy=policy(allow("lambda:GetFunction", FUNCTION_ARN)),
    )["Credentials"]
    narrow = (narrowed["AccessKeyId"], narrowed["SecretAccessKey"], narrowed["SessionToken"])
    narrow_lambda = client(server, "lambda", *narrow)
    assert narrow_lambda.get_function(FunctionName=FUNCTION)["Configuration"]
    refused(
        lambda: invoke(narrow_lambda),
        "AccessDeniedException",
        403,
        denied(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/s2",
            "lambda:InvokeFunction",
            FUNCTION_ARN,
            "because no session policy allows the lambda:InvokeFunction action",
        ),
    )


def test_a_user_assumes_a_role_that_trusts_it(
    server: LaminaServer, root_iam: Any, user: tuple[str, str, str]
) -> None:
    arn, key, secret = user
    role = f"trusting-{uuid.uuid4().hex[:8]}"
    trust = policy({"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "sts:AssumeRole"})
    role_arn = root_iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    # The trust policy names the user: it needs no identity policy of its own.
    assumed = client(server, "sts", key, secret).assume_role(RoleArn=role_arn, RoleSessionName="us")
    assert assumed["AssumedRoleUser"]["Arn"].endswith(f":assumed-role/{role}/us")


def test_a_second_authorization_header_is_refused(
    server: LaminaServer, user: tuple[str, str, str]
) -> None:
    """A handler reading the first header must never act for a key whose signature nobody
    checked: a request carrying two is refused before anything runs."""
    _, key, secret = user
    body = b"Action=GetSessionToken&Version=2011-06-15"
    request = AWSRequest(
        method="POST",
        url=f"{server.endpoint}/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    SigV4Auth(Credentials(key, secret), "sts", "us-east-1").add_auth(request)
    decoy = request.headers["Authorization"].replace(key, "AKIANOBODY", 1)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("POST", "/", skip_accept_encoding=True)
        connection.putheader("Authorization", decoy)
        for name, value in request.headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    assert response.status in (400, 403), answer
    assert b"<Credentials>" not in answer


def test_session_credentials_need_their_token(server: LaminaServer) -> None:
    sts = client(server, "sts", KEY, SECRET)
    credentials = sts.get_session_token()["Credentials"]
    key, secret = credentials["AccessKeyId"], credentials["SecretAccessKey"]
    refused(
        lambda: client(server, "lambda", key, secret).list_functions(),
        "UnrecognizedClientException",
        403,
        INVALID_TOKEN,
    )
    refused(
        lambda: client(server, "lambda", key, secret, "not-the-token").list_functions(),
        "UnrecognizedClientException",
        403,
        INVALID_TOKEN,
    )
    assert client(server, "lambda", key, secret, credentials["SessionToken"]).list_functions()


def test_an_expired_session_is_refused(server: LaminaServer) -> None:
    master = open_master_key(server.data_dir / MASTER_KEY_FILE)
    store = SqliteIamStore(Database(server.data_dir / "lamina.db"), master)
    expired = Session(
        access_key_id=f"ASIA{uuid.uuid4().hex[:16].upper()}",
        secret="expired-session-secret",
        token="expired-session-token",
        expires=time.time() - 60,
        account=ACCOUNT,
        principal_arn=f"arn:aws:iam::{ACCOUNT}:root",
        enforced=True,
    )
    store.put_session(expired)
    credentials = (expired.access_key_id, expired.secret, expired.token)
    message = "The security token included in the request is expired"
    refused(
        lambda: client(server, "lambda", *credentials).list_functions(),
        "ExpiredTokenException",
        403,
        message,
    )
    refused(
        lambda: client(server, "sts", *credentials).get_caller_identity(),
        "ExpiredToken",
        403,
        message,
    )


def test_unknown_keys_and_wrong_secrets_get_each_protocols_error(
    server: LaminaServer, root_iam: Any, user: tuple[str, str, str]
) -> None:
    unknown = ("AKIANOBODYKNOWSTHIS", SECRET)
    refused(
        lambda: client(server, "lambda", *unknown).list_functions(),
        "UnrecognizedClientException",
        403,
        INVALID_TOKEN,
    )
    refused(
        lambda: client(server, "logs", *unknown).describe_log_groups(),
        "UnrecognizedClientException",
        400,  # the JSON protocol's services answer their refusals with 400
        INVALID_TOKEN,
    )
    refused(
        lambda: client(server, "iam", *unknown).list_roles(),
        "InvalidClientTokenId",
        403,
        INVALID_TOKEN,
    )
    refused(
        lambda: client(server, "sts", *unknown).get_caller_identity(),
        "InvalidClientTokenId",
        403,
        INVALID_TOKEN,
    )
    arn, key, _ = user
    refused(
        lambda: client(server, "lambda", key, "not-the-secret").list_functions(),
        "InvalidSignatureException",
        403,
        WRONG_SIGNATURE,
    )
    refused(
        lambda: client(server, "sts", key, "not-the-secret").get_caller_identity(),
        "SignatureDoesNotMatch",
        403,
        WRONG_SIGNATURE,
    )
    # A deactivated key is no key at all.
    root_iam.update_access_key(UserName=name_of(arn), AccessKeyId=key, Status="Inactive")
    refused(
        lambda: client(server, "sts", key, user[2]).get_caller_identity(),
        "InvalidClientTokenId",
        403,
        INVALID_TOKEN,
    )


def test_create_function_needs_a_role_that_trusts_lambda(
    server: LaminaServer, root_iam: Any
) -> None:
    role = f"ec2-only-{uuid.uuid4().hex[:8]}"
    trust = policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    )
    role_arn = root_iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    lambda_client = client(server, "lambda", KEY, SECRET)
    message = "The role defined for the function cannot be assumed by Lambda."
    for refused_role in (role_arn, f"arn:aws:iam::{ACCOUNT}:role/no-such-role"):
        refused(
            lambda role=refused_role: lambda_client.create_function(  # type: ignore[misc]
                FunctionName=f"untrusted-{uuid.uuid4().hex[:8]}",
                Runtime="python3.12",
                Role=role,
                Handler="app.handler",
                Code={"ZipFile": make_zip()},
            ),
            "InvalidParameterValueException",
            400,
            message,
        )
        refused(
            lambda role=refused_role: lambda_client.update_function_configuration(  # type: ignore[misc]
                FunctionName=FUNCTION, Role=role
            ),
            "InvalidParameterValueException",
            400,
            message,
        )


def test_create_function_needs_pass_role(
    server: LaminaServer, root_iam: Any, user: tuple[str, str, str]
) -> None:
    arn, key, secret = user
    role_arn = ensure_lambda_role(server, KEY, SECRET)
    root_iam.put_user_policy(
        UserName=name_of(arn),
        PolicyName="create",
        PolicyDocument=policy(allow("lambda:CreateFunction")),
    )
    lambda_client = client(server, "lambda", key, secret)
    name = f"passed-{uuid.uuid4().hex[:8]}"

    def create() -> Any:
        return lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role_arn,
            Handler="app.handler",
            Code={"ZipFile": make_zip()},
        )

    refused(
        create,
        "AccessDeniedException",
        403,
        denied(
            arn,
            "iam:PassRole",
            role_arn,
            "because no identity-based policy allows the iam:PassRole action",
        ),
    )
    root_iam.put_user_policy(
        UserName=name_of(arn),
        PolicyName="pass",
        PolicyDocument=policy(allow("iam:PassRole", role_arn)),
    )
    assert create()["FunctionName"] == name


def test_every_front_is_authorised(
    server: LaminaServer, root_iam: Any, user: tuple[str, str, str]
) -> None:
    arn, key, secret = user
    calls = {
        "logs:DescribeLogGroups": lambda: client(server, "logs", key, secret).describe_log_groups(),
        "events:ListRules": lambda: client(server, "events", key, secret).list_rules(),
        "kms:ListKeys": lambda: client(server, "kms", key, secret).list_keys(),
        "cloudwatch:ListMetrics": lambda: client(server, "cloudwatch", key, secret).list_metrics(),
        "iam:ListRoles": lambda: client(server, "iam", key, secret).list_roles(),
    }
    for action, call in calls.items():
        with pytest.raises(ClientError) as caught:
            call()
        error = caught.value.response["Error"]
        assert error["Code"] in ("AccessDeniedException", "AccessDenied"), (action, error)
        because = f"because no identity-based policy allows the {action} action"
        assert error["Message"] == denied(arn, action, "*", because)
    root_iam.put_user_policy(
        UserName=name_of(arn), PolicyName="read", PolicyDocument=policy(allow(list(calls)))
    )
    for call in calls.values():
        call()


def test_resources_are_named_as_aws_names_them(
    server: LaminaServer, user: tuple[str, str, str]
) -> None:
    arn, key, secret = user
    group = f"/enforced/{uuid.uuid4().hex[:8]}"
    client(server, "logs", KEY, SECRET).create_log_group(logGroupName=group)
    action = "logs:DescribeLogStreams"
    refused(
        lambda: client(server, "logs", key, secret).describe_log_streams(logGroupName=group),
        "AccessDeniedException",
        400,
        denied(
            arn,
            action,
            f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}",
            f"because no identity-based policy allows the {action} action",
        ),
    )
    refused(
        lambda: client(server, "events", key, secret).describe_rule(Name="nightly"),
        "AccessDeniedException",
        400,
        denied(
            arn,
            "events:DescribeRule",
            f"arn:aws:events:us-east-1:{ACCOUNT}:rule/nightly",
            "because no identity-based policy allows the events:DescribeRule action",
        ),
    )
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/lamina-test"
    refused(
        lambda: client(server, "iam", key, secret).get_role(RoleName="lamina-test"),
        "AccessDenied",
        403,
        denied(
            arn,
            "iam:GetRole",
            role_arn,
            "because no identity-based policy allows the iam:GetRole action",
        ),
    )


def test_development_mode_is_stated_too() -> None:
    assert serving_mode(Settings()) == "development: any signature accepted"
    enforced = Settings(access_key_id=KEY, secret_access_key=SECRET)
    assert serving_mode(enforced).startswith("enforced: ")
