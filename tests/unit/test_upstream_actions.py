"""The IAM actions and resources of calls for upstream services, identified from requests
as botocore writes them (botocore's own serialiser makes every request here)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest

from lamina.api.gateway import input_members
from lamina.aws.upstream_actions import (
    Call,
    OperationIndex,
    Permission,
    Unidentified,
    permissions,
)
from lamina.aws.upstreams import ServiceCatalog

ACCOUNT, REGION = "000000000000", "eu-west-1"
_INDEX = OperationIndex()
_CATALOG = ServiceCatalog()


def sent(client_name: str, method: str, **params: Any) -> AWSPreparedRequest:
    """The request boto3 sends for one call (captured before it leaves)."""
    client = boto3.client(
        client_name,
        region_name=REGION,
        endpoint_url="http://gateway:9000",
        aws_access_key_id="AKIAEXAMPLE000000000",
        aws_secret_access_key="secret",
    )
    captured: list[AWSPreparedRequest] = []

    def capture(request: AWSPreparedRequest, **_: Any) -> None:
        captured.append(request)
        raise _Captured

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured):
        getattr(client, method)(**params)
    return captured[0]


class _Captured(Exception):
    pass


def asks(client_name: str, method: str, **params: Any) -> list[tuple[str, str]]:
    request = sent(client_name, method, **params)
    url = urlsplit(request.url)
    body = request.body if isinstance(request.body, bytes) else (request.body or b"")
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = body.read()
    signing = {"dynamodb": "dynamodb", "sqs": "sqs", "sns": "sns", "s3": "s3"}[client_name]
    target = request.headers.get("X-Amz-Target", b"")
    target = target.decode() if isinstance(target, bytes) else target
    service = _CATALOG.service(signing, target.partition(".")[0] or None)
    headers = {
        k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
    }
    call = Call(
        request.method, url.path, parse_qs(url.query, True), headers, input_members(service, body)
    )
    operation, members = _INDEX.operation(service, call)
    found = permissions(service, operation, members, REGION, ACCOUNT, body)
    return [(p.action, p.resource) for p in found]


def test_s3_operations_are_told_apart_by_method_path_query_and_headers() -> None:
    key = "dir/a key+with//slashes.txt"
    obj = f"arn:aws:s3:::bkt/{key}"
    assert asks("s3", "get_object", Bucket="bkt", Key=key) == [("s3:GetObject", obj)]
    assert asks("s3", "head_object", Bucket="bkt", Key=key) == [("s3:GetObject", obj)]
    assert asks("s3", "put_object", Bucket="bkt", Key=key, Body=b"x") == [("s3:PutObject", obj)]
    assert asks("s3", "delete_object", Bucket="bkt", Key=key) == [("s3:DeleteObject", obj)]
    assert asks("s3", "list_objects_v2", Bucket="bkt") == [("s3:ListBucket", "arn:aws:s3:::bkt")]
    assert asks("s3", "list_objects", Bucket="bkt") == [("s3:ListBucket", "arn:aws:s3:::bkt")]
    assert asks("s3", "head_bucket", Bucket="bkt") == [("s3:ListBucket", "arn:aws:s3:::bkt")]
    assert asks("s3", "list_buckets") == [("s3:ListAllMyBuckets", "*")]
    assert asks("s3", "create_bucket", Bucket="bkt") == [("s3:CreateBucket", "arn:aws:s3:::bkt")]
    assert asks("s3", "get_object_tagging", Bucket="bkt", Key="k") == [
        ("s3:GetObjectTagging", "arn:aws:s3:::bkt/k")
    ]
    upload = {"Bucket": "bkt", "Key": "k", "UploadId": "u"}
    assert asks("s3", "create_multipart_upload", Bucket="bkt", Key="k") == [
        ("s3:PutObject", "arn:aws:s3:::bkt/k")
    ]
    assert asks("s3", "upload_part", PartNumber=1, Body=b"x", **upload) == [
        ("s3:PutObject", "arn:aws:s3:::bkt/k")
    ]
    assert asks("s3", "complete_multipart_upload", **upload) == [
        ("s3:PutObject", "arn:aws:s3:::bkt/k")
    ]
    assert asks("s3", "abort_multipart_upload", **upload) == [
        ("s3:AbortMultipartUpload", "arn:aws:s3:::bkt/k")
    ]
    # Copying reads its source.
    assert asks("s3", "copy_object", Bucket="bkt", Key="k", CopySource="src/a b") == [
        ("s3:PutObject", "arn:aws:s3:::bkt/k"),
        ("s3:GetObject", "arn:aws:s3:::src/a b"),
    ]
    # DeleteObjects asks for each key its body names.
    deleted = {"Objects": [{"Key": "a&b"}, {"Key": "c"}]}
    assert asks("s3", "delete_objects", Bucket="bkt", Delete=deleted) == [
        ("s3:DeleteObject", "arn:aws:s3:::bkt/a&b"),
        ("s3:DeleteObject", "arn:aws:s3:::bkt/c"),
    ]


def test_json_and_query_services_name_their_resources() -> None:
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders"
    item = {"id": {"S": "1"}}
    assert asks("dynamodb", "put_item", TableName="orders", Item=item) == [
        ("dynamodb:PutItem", table)
    ]
    assert asks("dynamodb", "list_tables") == [("dynamodb:ListTables", "*")]
    assert asks(
        "dynamodb",
        "batch_write_item",
        RequestItems={t: [{"DeleteRequest": {"Key": item}}] for t in ("orders", "lines")},
    ) == [
        ("dynamodb:BatchWriteItem", table),
        ("dynamodb:BatchWriteItem", table.replace("orders", "lines")),
    ]
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs"
    url = f"http://gateway:9000/{ACCOUNT}/jobs"
    assert asks("sqs", "send_message", QueueUrl=url, MessageBody="m") == [
        ("sqs:SendMessage", queue)
    ]
    assert asks("sqs", "create_queue", QueueName="jobs") == [("sqs:CreateQueue", queue)]
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:news"
    assert asks("sns", "publish", TopicArn=topic, Message="m") == [("sns:Publish", topic)]
    assert asks("sns", "create_topic", Name="news") == [("sns:CreateTopic", topic)]
    assert asks("sns", "list_topics") == [("sns:ListTopics", "*")]


def test_a_call_matching_no_operation_is_unidentified() -> None:
    s3 = _CATALOG.service("s3")
    with pytest.raises(Unidentified):
        _INDEX.operation(s3, Call("PATCH", "/bkt/k", {}, {}, {}))
    dynamodb = _CATALOG.service("dynamodb", "DynamoDB_20120810")
    headers = {"x-amz-target": "DynamoDB_20120810.DropEverything"}
    with pytest.raises(Unidentified):
        _INDEX.operation(dynamodb, Call("POST", "/", {}, headers, {}))
    sns = _CATALOG.service("sns")
    with pytest.raises(Unidentified):
        _INDEX.operation(sns, Call("POST", "/", {}, {}, {}))
    unknown = _CATALOG.service("no-such-service")
    with pytest.raises(Unidentified):
        _INDEX.operation(unknown, Call("GET", "/", {}, {}, {}))


def test_other_services_ask_for_their_operation_on_any_resource() -> None:
    sfn = _CATALOG.service("states", "AWSStepFunctions")
    assert permissions(sfn, "ListStateMachines", {}, REGION, ACCOUNT) == [
        Permission("states:ListStateMachines", "*")
    ]
    secrets = _CATALOG.service("secretsmanager", "secretsmanager")
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:db-AbCdEf"
    assert permissions(secrets, "GetSecretValue", {"SecretId": arn}, REGION, ACCOUNT) == [
        Permission("secretsmanager:GetSecretValue", arn)
    ]
    assert permissions(secrets, "GetSecretValue", {"SecretId": "db"}, REGION, ACCOUNT) == [
        Permission("secretsmanager:GetSecretValue", "*")
    ]
    kinesis = _CATALOG.service("kinesis", "Kinesis_20131202")
    assert permissions(kinesis, "PutRecord", {"StreamName": "s"}, REGION, ACCOUNT) == [
        Permission("kinesis:PutRecord", f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/s")
    ]
