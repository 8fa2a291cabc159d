"""Who may call a function URL: the resource policy (AuthType NONE) and SigV4 (AWS_IAM)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.archives import make_zip
from tests.support.function_urls import (
    HANDLERS,
    Reply,
    allow_public,
    fetch,
    host_header,
    url_id,
)
from tests.support.iam import client, ensure_lambda_role
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer, server_log

KEY, SECRET = "AKIALAMINAURLTEST", "lamina-url-secret"
FORBIDDEN = (403, {"Message": "Forbidden"})


def make_function(client: Any, name: str) -> None:
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.echo",
        Code={"ZipFile": make_zip({"app.py": HANDLERS})},
    )


def signed_call(
    server: LaminaServer,
    function_url: str,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes = b"",
    key: str = KEY,
    secret: str = SECRET,
    service: str = "lambda",
    by_host: bool = False,
    tamper: bytes | None = None,
) -> Reply:
    """Sign with botocore's SigV4 as an AWS client would, then send with http.client."""
    netloc = host_header(server, function_url) if by_host else f"127.0.0.1:{server.port}"
    target = path if by_host else f"/lambda-url/{url_id(function_url)}{path}"
    request = AWSRequest(
        method=method,
        url=f"http://{netloc}{target}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(request)
    headers = {name: str(value) for name, value in request.headers.items()}
    headers["Host"] = netloc
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, target, body=tamper or body or None, headers=headers)
        return Reply(connection.getresponse())
    finally:
        connection.close()


def outcome(reply: Reply) -> tuple[int, Any]:
    return reply.status, reply.json()


# --------------------------------------------------------------------------- AuthType NONE


@pytest.fixture
def none_url(lambda_client: Any, unique_name: Callable[[str], str]) -> tuple[str, str]:
    name = unique_name("url")
    make_function(lambda_client, name)
    config = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    return name, str(config["FunctionUrl"])


def test_none_needs_both_public_permissions(
    server: LaminaServer, lambda_client: Any, none_url: tuple[str, str]
) -> None:
    name, function_url = none_url
    reply = fetch(server, function_url)
    assert outcome(reply) == FORBIDDEN
    log = server_log(server)
    assert (
        f"request {reply.headers['x-amzn-RequestId']}: 403: AuthType is NONE but the resource "
        "policy does not allow lambda:InvokeFunctionUrl and lambda:InvokeFunction for "
        'Principal "*"; grant it with `aws lambda add-permission --function-name ' + name
    ) in log

    lambda_client.add_permission(
        FunctionName=name,
        StatementId="url-public",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    # Since October 2025 AWS also requires lambda:InvokeFunction for new URLs.
    assert outcome(fetch(server, function_url)) == FORBIDDEN
    lambda_client.add_permission(
        FunctionName=name,
        StatementId="url-invoke",
        Action="lambda:InvokeFunction",
        Principal="*",
        InvokedViaFunctionUrl=True,
    )
    assert fetch(server, function_url).status == 200

    lambda_client.remove_permission(FunctionName=name, StatementId="url-invoke")
    assert outcome(fetch(server, function_url)) == FORBIDDEN


def test_grants_that_are_not_public_do_not_open_a_none_url(
    server: LaminaServer, lambda_client: Any, none_url: tuple[str, str]
) -> None:
    name, function_url = none_url
    lambda_client.add_permission(
        FunctionName=name,
        StatementId="iam-only",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="AWS_IAM",
    )
    lambda_client.add_permission(
        FunctionName=name,
        StatementId="one-account",
        Action="lambda:InvokeFunctionUrl",
        Principal="111122223333",
        FunctionUrlAuthType="NONE",
    )
    lambda_client.add_permission(
        FunctionName=name, StatementId="invoke", Action="lambda:InvokeFunction", Principal="*"
    )
    assert outcome(fetch(server, function_url)) == FORBIDDEN


# --------------------------------------------------------------------------- AWS_IAM


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    env = {"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
    server = LaminaServer(tmp_path_factory.mktemp("url-auth") / "data", env=env)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def secured_client(secured: LaminaServer) -> Iterator[Any]:
    ensure_lambda_role(secured, KEY, SECRET)  # enforced mode: the role must trust Lambda
    client = secured.client(access_key=KEY, secret_key=SECRET)
    yield client
    client.close()


@pytest.fixture(scope="module")
def iam_url(secured_client: Any) -> str:
    make_function(secured_client, "iam-url")
    config = secured_client.create_function_url_config(FunctionName="iam-url", AuthType="AWS_IAM")
    return str(config["FunctionUrl"])


def test_a_correctly_signed_request_is_served_with_its_caller(
    secured: LaminaServer, iam_url: str
) -> None:
    body = b'{"signed": true}'
    reply = signed_call(secured, iam_url, "/p/q?b=2&a=1", method="POST", body=body)
    assert reply.status == 200
    event = reply.json()["event"]
    context = event["requestContext"]
    assert context["accountId"] == "000000000000"
    assert context["authorizer"] == {
        "iam": {
            "accessKey": KEY,
            "accountId": "000000000000",
            "callerId": "000000000000",
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": "arn:aws:iam::000000000000:root",
            "userId": "000000000000",
        }
    }
    assert event["body"] == body.decode()
    # The signature was consumed by Lamina; the signing date still reaches the function.
    assert "authorization" not in event["headers"]
    assert "x-amz-date" in event["headers"]


def test_an_iam_user_needs_both_invoke_actions_on_the_function(
    secured: LaminaServer, iam_url: str
) -> None:
    iam = client(secured, "iam", KEY, SECRET)
    name = "url-caller"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    as_user = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    assert outcome(signed_call(secured, iam_url, **as_user)) == FORBIDDEN
    function_arn = "arn:aws:lambda:us-east-1:000000000000:function:iam-url"

    def grant(*actions: str) -> None:
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": function_arn}],
        }
        iam.put_user_policy(UserName=name, PolicyName="url", PolicyDocument=json.dumps(document))

    grant("lambda:InvokeFunctionUrl")  # not enough for a URL made since October 2025
    assert outcome(signed_call(secured, iam_url, **as_user)) == FORBIDDEN
    grant("lambda:InvokeFunctionUrl", "lambda:InvokeFunction")
    reply = signed_call(secured, iam_url, **as_user)
    assert reply.status == 200
    assert reply.json()["event"]["requestContext"]["authorizer"]["iam"]["userArn"] == arn


def test_host_based_requests_are_verified_against_their_host(
    secured: LaminaServer, iam_url: str
) -> None:
    assert signed_call(secured, iam_url, "/x", by_host=True).status == 200


@pytest.mark.parametrize(
    "change",
    [
        {"secret": "not-the-secret"},
        {"key": "AKIAUNKNOWN"},
        {"service": "execute-api"},
        {"tamper": b'{"signed": false}'},
    ],
    ids=["wrong secret", "unknown key", "other service", "body changed"],
)
def test_bad_signatures_are_forbidden(
    secured: LaminaServer, iam_url: str, change: dict[str, Any]
) -> None:
    reply = signed_call(secured, iam_url, method="POST", body=b'{"signed": true}', **change)
    assert outcome(reply) == FORBIDDEN


def test_unsigned_requests_to_an_iam_url_are_forbidden(secured: LaminaServer, iam_url: str) -> None:
    reply = fetch(secured, iam_url)
    assert outcome(reply) == FORBIDDEN
    assert (
        f"request {reply.headers['x-amzn-RequestId']}: 403: the URL's AuthType is AWS_IAM and "
        "the request is not SigV4-signed"
    ) in server_log(secured)


def test_none_urls_on_a_secured_server_need_no_signature(
    secured: LaminaServer, secured_client: Any
) -> None:
    make_function(secured_client, "public-url")
    allow_public(secured_client, "public-url")
    config = secured_client.create_function_url_config(FunctionName="public-url", AuthType="NONE")
    reply = fetch(secured, config["FunctionUrl"])
    assert reply.status == 200
    assert reply.json()["event"]["requestContext"]["accountId"] == "anonymous"


def test_switching_auth_type_takes_effect_at_once(
    secured: LaminaServer, secured_client: Any
) -> None:
    make_function(secured_client, "switching")
    allow_public(secured_client, "switching")
    config = secured_client.create_function_url_config(FunctionName="switching", AuthType="NONE")
    assert fetch(secured, config["FunctionUrl"]).status == 200
    secured_client.update_function_url_config(FunctionName="switching", AuthType="AWS_IAM")
    assert outcome(fetch(secured, config["FunctionUrl"])) == FORBIDDEN
    assert signed_call(secured, config["FunctionUrl"]).status == 200


def test_without_configured_credentials_any_lambda_signature_passes(
    server: LaminaServer, lambda_client: Any, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("url")
    make_function(lambda_client, name)
    function_url = lambda_client.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")[
        "FunctionUrl"
    ]
    assert outcome(fetch(server, function_url)) == FORBIDDEN
    reply = signed_call(server, function_url, key="AKIAANY", secret="anything")
    assert reply.status == 200
    iam = json.loads(reply.body)["event"]["requestContext"]["authorizer"]["iam"]
    assert iam["accessKey"] == "AKIAANY"
    assert outcome(signed_call(server, function_url, service="s3")) == FORBIDDEN
