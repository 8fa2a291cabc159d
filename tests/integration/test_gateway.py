"""The service gateway, from inside functions: their AWS SDKs reach S3 (moto's server as the
upstream the operator configured) and Lamina's own Lambda API through AWS_ENDPOINT_URL, with
boto3 in a Python function and the AWS SDK for JavaScript v3 in a Node function."""

from __future__ import annotations

import io
import json
import sys
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lamina.runtimes.registry import RuntimeRegistry
from tests.support.archives import make_zip
from tests.support.iam import LAMBDA_TRUST, client
from tests.support.peers import MotoServer
from tests.support.server import LaminaServer

PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"
_REGISTRY = RuntimeRegistry()
NODE = next(
    (name for name in ("nodejs20.x", "nodejs22.x", "nodejs18.x") if _REGISTRY.interpreter(name)),
    None,
)
NODE_SDK = Path(__file__).parents[1] / "fixtures" / "node_sdk" / "node_modules"
ROLE = "arn:aws:iam::000000000000:role/gateway"
KEY, SECRET = "AKIAGATEWAYROOT00000", "gateway-root-secret"

PYTHON_APP = """
import json
import os

import boto3
from botocore.exceptions import ClientError


def s3_round_trip(event, context):
    s3 = boto3.client("s3")
    s3.put_object(Bucket=event["bucket"], Key=event["key"], Body=event["body"].encode())
    body = s3.get_object(Bucket=event["bucket"], Key=event["key"])["Body"].read().decode()
    return {"body": body, "endpoint": os.environ["AWS_ENDPOINT_URL"]}


def sqs_round_trip(event, context):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=event["queue"])["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=event["body"])
    received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    return [message["Body"] for message in received]


def invoke_other(event, context):
    response = boto3.client("lambda").invoke(
        FunctionName=event["target"], Payload=json.dumps({"from": context.function_name})
    )
    return json.loads(response["Payload"].read())


def echo(event, context):
    return {"echoed": event}


def s3_probe(event, context):
    s3 = boto3.client("s3")
    allowed, other = event["allowed"], event["other"]
    attempts = {
        "put": lambda: s3.put_object(Bucket=allowed, Key="probe.txt", Body=b"probed"),
        "get": lambda: s3.get_object(Bucket=allowed, Key="probe.txt")["Body"].read().decode(),
        "other bucket": lambda: s3.get_object(Bucket=other, Key="probe.txt"),
        "delete": lambda: s3.delete_object(Bucket=allowed, Key="probe.txt"),
        "delete many": lambda: s3.delete_objects(
            Bucket=allowed, Delete={"Objects": [{"Key": "probe.txt"}]}
        ),
        "dynamodb": lambda: boto3.client("dynamodb").list_tables(),
    }
    results = {}
    for name, attempt in attempts.items():
        try:
            value = attempt()
            results[name] = value if name == "get" else "ok"
        except ClientError as error:
            results[name] = [error.response["ResponseMetadata"]["HTTPStatusCode"],
                             error.response["Error"]["Code"], error.response["Error"]["Message"]]
    return results


def unconfigured(event, context):
    try:
        boto3.client("dynamodb").list_tables()
    except ClientError as error:
        return {"status": error.response["ResponseMetadata"]["HTTPStatusCode"],
                **error.response["Error"]}
    return {"status": 200}
"""

NODE_APP = """
const { S3Client, PutObjectCommand, GetObjectCommand } = require('@aws-sdk/client-s3');
const { LambdaClient, InvokeCommand } = require('@aws-sdk/client-lambda');

exports.roundTrip = async (event) => {
  const s3 = new S3Client({});
  await s3.send(new PutObjectCommand({ Bucket: event.bucket, Key: event.key, Body: event.body }));
  const got = await s3.send(new GetObjectCommand({ Bucket: event.bucket, Key: event.key }));
  const body = await got.Body.transformToString();
  const invoked = await new LambdaClient({}).send(
    new InvokeCommand({ FunctionName: event.target, Payload: JSON.stringify({ from: 'node' }) }),
  );
  return { body, invoked: JSON.parse(Buffer.from(invoked.Payload).toString()) };
};
"""


def server_env(moto: MotoServer, **extra: str) -> dict[str, str]:
    """S3 and SQS are the upstreams configured; `AWS_ENDPOINT_URL` is set empty so that
    the test's own environment cannot configure others."""
    runtime = "LAMINA_RUNTIME_" + PYTHON.upper().replace(".", "_")
    return {
        "AWS_ENDPOINT_URL": "",
        "AWS_ENDPOINT_URL_S3": moto.endpoint,
        "AWS_ENDPOINT_URL_SQS": moto.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        runtime: sys.executable,
        **extra,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[LaminaServer]:
    data = tmp_path_factory.mktemp("gateway") / "data"
    started = LaminaServer(data, env=server_env(moto)).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def bucket(moto: MotoServer) -> str:
    name = f"gateway-{uuid.uuid4().hex[:8]}"
    moto.client("s3").create_bucket(Bucket=name)
    return name


def create(lambda_client: Any, handler: str, code: bytes, runtime: str = PYTHON, **kw: Any) -> str:
    name = f"{handler.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:8]}"
    lambda_client.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=kw.pop("role", ROLE),
        Handler=handler,
        Code={"ZipFile": code},
        Timeout=60,
        **kw,
    )
    lambda_client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
    )
    return name


def invoke(lambda_client: Any, name: str, event: dict[str, Any]) -> Any:
    response = lambda_client.invoke(FunctionName=name, Payload=json.dumps(event))
    payload = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, payload
    return payload


def test_boto3_in_a_python_function_writes_to_s3_and_reads_it_back(
    server: LaminaServer, moto: MotoServer, bucket: str
) -> None:
    lambda_client = server.client()
    name = create(lambda_client, "app.s3_round_trip", make_zip({"app.py": PYTHON_APP}))
    event = {"bucket": bucket, "key": "from python/hello.txt", "body": "hello from python"}
    result = invoke(lambda_client, name, event)
    assert result["body"] == "hello from python"
    # The function's SDK went to the gateway, never to the upstream itself; the object is
    # in the upstream.
    assert urlsplit(result["endpoint"]).port == server.port
    stored = moto.client("s3").get_object(Bucket=bucket, Key="from python/hello.txt")
    assert stored["Body"].read() == b"hello from python"


def test_a_json_protocol_service_is_forwarded_too(server: LaminaServer, moto: MotoServer) -> None:
    lambda_client = server.client()
    name = create(lambda_client, "app.sqs_round_trip", make_zip({"app.py": PYTHON_APP}))
    queue = f"gateway-{uuid.uuid4().hex[:8]}"
    assert invoke(lambda_client, name, {"queue": queue, "body": "queued"}) == ["queued"]
    assert queue in moto.client("sqs").get_queue_url(QueueName=queue)["QueueUrl"]


def test_a_function_invokes_another_through_lamina(server: LaminaServer) -> None:
    lambda_client = server.client()
    code = make_zip({"app.py": PYTHON_APP})
    target = create(lambda_client, "app.echo", code)
    caller = create(lambda_client, "app.invoke_other", code)
    assert invoke(lambda_client, caller, {"target": target}) == {"echoed": {"from": caller}}


def test_a_service_without_an_upstream_gets_an_error_naming_the_setting(
    server: LaminaServer,
) -> None:
    lambda_client = server.client()
    name = create(lambda_client, "app.unconfigured", make_zip({"app.py": PYTHON_APP}))
    assert invoke(lambda_client, name, {}) == {
        "status": 501,
        "Code": "NotImplemented",
        "Message": (
            "No upstream is configured for service dynamodb: set AWS_ENDPOINT_URL_DYNAMODB "
            "(or AWS_ENDPOINT_URL) on the Lamina server"
        ),
    }
    # A query-protocol service, called on the main port by a user's own SDK.
    with pytest.raises(ClientError) as refused:
        server.client("sns").list_topics()
    assert refused.value.response["Error"]["Code"] == "NotImplemented"
    assert "set AWS_ENDPOINT_URL_SNS" in refused.value.response["Error"]["Message"]


def test_users_sdks_may_use_the_main_port_as_their_one_endpoint(
    server: LaminaServer, bucket: str
) -> None:
    s3 = server.client("s3")
    s3.put_object(Bucket=bucket, Key="a key with spaces+plus", Body=b"x" * 100_000)
    got = s3.get_object(Bucket=bucket, Key="a key with spaces+plus")
    assert got["ContentLength"] == 100_000
    assert got["Body"].read() == b"x" * 100_000
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="a key")["Contents"]
    assert [item["Key"] for item in listed] == ["a key with spaces+plus"]
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="no such key")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # A presigned URL (S3's older form, boto3's default) is re-signed for the upstream.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "presigned"})
    s3.put_object(Bucket=bucket, Key="presigned", Body=b"shared by URL")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"shared by URL"
    # And so is a SigV4 one.
    v4 = server.client("s3", signature_version="s3v4")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "presigned"})
    assert "X-Amz-Credential=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"shared by URL"
    head = s3.head_object(Bucket=bucket, Key="presigned")
    assert head["ContentLength"] == len(b"shared by URL")
    # Lamina's own API answers on the same port.
    assert "Functions" in server.client().list_functions()


def node_package(handler_source: str) -> bytes:
    """The handler with the SDK's node_modules, zipped as a user would ship them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("index.js", handler_source)
        for path in sorted(NODE_SDK.rglob("*")):
            if path.is_file():
                archive.write(path, Path("node_modules") / path.relative_to(NODE_SDK))
    return buffer.getvalue()


@pytest.mark.skipif(NODE is None, reason="no Node.js 18, 20 or 22 on this host")
def test_the_js_sdk_v3_in_a_node_function_uses_s3_and_lambda(
    server: LaminaServer, moto: MotoServer, bucket: str
) -> None:
    assert NODE_SDK.is_dir(), "run `make install` (npm ci of tests/fixtures/node_sdk)"
    assert NODE is not None
    lambda_client = server.client()
    target = create(lambda_client, "app.echo", make_zip({"app.py": PYTHON_APP}))
    name = create(lambda_client, "index.roundTrip", node_package(NODE_APP), runtime=NODE)
    event = {"bucket": bucket, "key": "from-node.txt", "body": "hello from node", "target": target}
    assert invoke(lambda_client, name, event) == {
        "body": "hello from node",
        "invoked": {"echoed": {"from": "node"}},
    }
    stored = moto.client("s3").get_object(Bucket=bucket, Key="from-node.txt")
    assert stored["Body"].read() == b"hello from node"


# ------------------------------------------------------------------------- enforced mode


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[LaminaServer]:
    data = tmp_path_factory.mktemp("gateway-enforced") / "data"
    env = server_env(
        moto,
        LAMINA_ACCESS_KEY_ID=KEY,
        LAMINA_SECRET_ACCESS_KEY=SECRET,
        AWS_ENDPOINT_URL_DYNAMODB=moto.endpoint,
    )
    started = LaminaServer(data, env=env).start()
    yield started
    started.stop()


def s3_client(server: LaminaServer, key: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def test_enforced_mode_forwards_only_calls_signed_with_lamina_keys(
    enforced: LaminaServer, bucket: str
) -> None:
    s3_client(enforced, KEY, SECRET).put_object(Bucket=bucket, Key="signed", Body=b"ok")
    with pytest.raises(ClientError) as forged:
        s3_client(enforced, KEY, "not-the-secret").get_object(Bucket=bucket, Key="signed")
    error = forged.value.response
    assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (
        403,
        "SignatureDoesNotMatch",
    )
    with pytest.raises(ClientError) as unknown:
        s3_client(enforced, "AKIAUNKNOWNKEY000000", SECRET).get_object(Bucket=bucket, Key="signed")
    assert unknown.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    # A JSON service's refusal, in its shape (no upstream is needed to be refused).
    dynamodb = client(enforced, "dynamodb", KEY, "not-the-secret")
    with pytest.raises(ClientError) as json_refused:
        dynamodb.list_tables()
    assert json_refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    # Presigned URLs cannot be checked by the gateway: refused in enforced mode.
    url = s3_client(enforced, KEY, SECRET).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "signed"}
    )
    with pytest.raises(urllib.error.HTTPError) as presigned:
        urllib.request.urlopen(url, timeout=10)
    presigned.value.close()  # it holds the connection: closed now, not whenever collected
    assert presigned.value.code == 403


def allowing(actions: list[str], resources: list[str]) -> str:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def role_with(server: LaminaServer, policy: str | None) -> str:
    """A role trusting Lambda, with `policy` inline (or none); its ARN."""
    iam = client(server, "iam", KEY, SECRET)
    role_name = f"gateway-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]
    if policy is not None:
        iam.put_role_policy(RoleName=role_name, PolicyName="gateway", PolicyDocument=policy)
    return str(role["Arn"])


def denial(principal: str, action: str, resource: str) -> str:
    return (
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


def test_enforced_mode_a_function_uses_s3_with_its_roles_session(
    enforced: LaminaServer, moto: MotoServer, bucket: str
) -> None:
    policy = allowing(["s3:GetObject", "s3:PutObject"], [f"arn:aws:s3:::{bucket}/*"])
    role = {"Arn": role_with(enforced, policy)}
    lambda_client = client(enforced, "lambda", KEY, SECRET)
    code = make_zip({"app.py": PYTHON_APP})
    name = create(lambda_client, "app.s3_round_trip", code, role=role["Arn"])
    event = {"bucket": bucket, "key": "enforced.txt", "body": "with a session"}
    assert invoke(lambda_client, name, event)["body"] == "with a session"
    stored = moto.client("s3").get_object(Bucket=bucket, Key="enforced.txt")
    assert stored["Body"].read() == b"with a session"


def test_enforced_mode_a_functions_role_policy_decides_what_it_does_upstream(
    enforced: LaminaServer, moto: MotoServer, bucket: str
) -> None:
    other = f"gateway-other-{uuid.uuid4().hex[:8]}"
    moto.client("s3").create_bucket(Bucket=other)
    moto.client("s3").put_object(Bucket=other, Key="probe.txt", Body=b"not yours")
    policy = allowing(["s3:GetObject", "s3:PutObject"], [f"arn:aws:s3:::{bucket}/*"])
    role = role_with(enforced, policy)
    lambda_client = client(enforced, "lambda", KEY, SECRET)
    name = create(lambda_client, "app.s3_probe", make_zip({"app.py": PYTHON_APP}), role=role)
    results = invoke(lambda_client, name, {"allowed": bucket, "other": other})
    session = role.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + f"/{name}"
    assert results["put"] == "ok"
    assert results["get"] == "probed"
    assert results["other bucket"] == [
        403,
        "AccessDenied",
        denial(session, "s3:GetObject", f"arn:aws:s3:::{other}/probe.txt"),
    ]
    assert results["delete"] == [
        403,
        "AccessDenied",
        denial(session, "s3:DeleteObject", f"arn:aws:s3:::{bucket}/probe.txt"),
    ]
    assert results["delete many"] == results["delete"]
    assert results["dynamodb"] == [
        403,
        "AccessDeniedException",
        denial(session, "dynamodb:ListTables", "*"),
    ]
    # The refused delete never reached the upstream.
    assert moto.client("s3").get_object(Bucket=bucket, Key="probe.txt")["Body"].read() == (
        b"probed"
    )


def test_enforced_mode_a_role_allowing_nothing_is_refused_every_service(
    enforced: LaminaServer, bucket: str
) -> None:
    role = role_with(enforced, None)
    lambda_client = client(enforced, "lambda", KEY, SECRET)
    name = create(lambda_client, "app.s3_probe", make_zip({"app.py": PYTHON_APP}), role=role)
    results = invoke(lambda_client, name, {"allowed": bucket, "other": bucket})
    assert [results[call][:2] for call in ("put", "get", "other bucket", "delete")] == [
        [403, "AccessDenied"]
    ] * 4
    assert results["dynamodb"][:2] == [403, "AccessDeniedException"]
    assert "s3:PutObject on resource: arn:aws:s3:::" in results["put"][2]


def test_enforced_mode_a_user_may_delete_objects_its_policy_allows(
    enforced: LaminaServer, moto: MotoServer, bucket: str
) -> None:
    iam = client(enforced, "iam", KEY, SECRET)
    user = f"gateway-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    policy = allowing(["s3:DeleteObject"], [f"arn:aws:s3:::{bucket}/mine/*"])
    iam.put_user_policy(UserName=user, PolicyName="mine", PolicyDocument=policy)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    s3 = s3_client(enforced, key["AccessKeyId"], key["SecretAccessKey"])
    upstream = moto.client("s3")
    for name in ("mine/a", "mine/b", "theirs"):
        upstream.put_object(Bucket=bucket, Key=name, Body=b"x")
    # DeleteObjects needs s3:DeleteObject on every key its body names.
    with pytest.raises(ClientError) as refused:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "mine/a"}, {"Key": "theirs"}]})
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert f"arn:aws:s3:::{bucket}/theirs" in refused.value.response["Error"]["Message"]
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "mine/a"}, {"Key": "mine/b"}]})
    left = upstream.list_objects_v2(Bucket=bucket, Prefix="")["Contents"]
    names = {item["Key"] for item in left}
    assert {"mine/a", "mine/b"}.isdisjoint(names)
    assert "theirs" in names


def test_enforced_mode_a_user_may_put_items_in_one_table_only(
    enforced: LaminaServer, moto: MotoServer
) -> None:
    tables = [f"gateway-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for table in tables:
        moto.client("dynamodb").create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    iam = client(enforced, "iam", KEY, SECRET)
    user = f"gateway-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=user)["User"]["Arn"]
    table_arn = f"arn:aws:dynamodb:us-east-1:000000000000:table/{tables[0]}"
    iam.put_user_policy(
        UserName=user,
        PolicyName="one-table",
        PolicyDocument=allowing(["dynamodb:PutItem"], [table_arn]),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    dynamodb = client(enforced, "dynamodb", key["AccessKeyId"], key["SecretAccessKey"])
    item = {"id": {"S": "one"}}
    dynamodb.put_item(TableName=tables[0], Item=item)
    assert moto.client("dynamodb").get_item(TableName=tables[0], Key=item)["Item"] == item
    refused = []
    for call in (
        lambda: dynamodb.put_item(TableName=tables[1], Item=item),
        lambda: dynamodb.get_item(TableName=tables[0], Key=item),
    ):
        with pytest.raises(ClientError) as denied:
            call()
        refused.append(denied.value.response["Error"])
    other_arn = table_arn.replace(tables[0], tables[1])
    assert refused == [
        {"Code": "AccessDeniedException", "Message": denial(arn, "dynamodb:PutItem", other_arn)},
        {"Code": "AccessDeniedException", "Message": denial(arn, "dynamodb:GetItem", table_arn)},
    ]
    assert "Item" not in moto.client("dynamodb").get_item(TableName=tables[1], Key=item)
    # A query service, in its shape (refused before its missing upstream is named).
    with pytest.raises(ClientError) as sns_denied:
        client(enforced, "sns", key["AccessKeyId"], key["SecretAccessKey"]).list_topics()
    assert sns_denied.value.response["Error"]["Code"] == "AccessDenied"
    assert sns_denied.value.response["Error"]["Message"] == denial(arn, "sns:ListTopics", "*")
    # S3 with a user allowed nothing there: S3's own refusal shape.
    with pytest.raises(ClientError) as s3_denied:
        s3_client(enforced, key["AccessKeyId"], key["SecretAccessKey"]).list_buckets()
    assert s3_denied.value.response["Error"] == {
        "Code": "AccessDenied",
        "Message": denial(arn, "s3:ListAllMyBuckets", "*"),
    }
