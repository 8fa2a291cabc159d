"""Invoke with InvocationType=Event and InvokeAsync: accepted durably, delivered, reported.

Outcomes are observed where a user would see them: invocation records that the function's
OnSuccess/OnFailure destination (an SQS queue on a moto server) receives. The helpers and
fixtures here are shared by the other test_async_* modules.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.peers import MotoServer
from tests.support.queues import Queue
from tests.support.server import LaminaServer

ROLE = "arn:aws:iam::000000000000:role/lamina-test"
ARN = "arn:aws:lambda:us-east-1:000000000000:function"
# Every interval of asynchronous delivery runs 100 times faster: a minute takes 0.6 s.
FAST = {"LAMINA_ASYNC_RETRY_SCALE": "0.01", "LAMINA_ASYNC_LEASE_SECONDS": "2"}

HANDLERS = """
import json, time

def echo(event, context):
    return event

def ok(event, context):
    return "ok"

def fail(event, context):
    raise ValueError("boom " + json.dumps(event))

def slow(event, context):
    time.sleep(event.get("seconds", 0.3) if isinstance(event, dict) else 0.3)
    return "slept"

def chain(event, context):
    depth = 0
    while isinstance(event, dict) and "requestPayload" in event:
        depth += 1
        event = event["requestPayload"]
    if depth >= 20:
        raise RuntimeError("depth %d" % depth)
    return "ok"
"""


def start_server(data_dir: Path, moto: MotoServer, **env: str) -> LaminaServer:
    return LaminaServer(data_dir, env={**moto.env, **FAST, **env}).start()


@pytest.fixture(scope="module")
def async_server(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_server(tmp_path_factory.mktemp("async") / "data", moto)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(async_server: LaminaServer) -> Iterator[Any]:
    lambda_client = async_server.client()
    yield lambda_client
    lambda_client.close()


@pytest.fixture
def queue(sqs: Any) -> Callable[[], Queue]:
    return lambda: Queue(sqs)


@pytest.fixture
def function(client: Any) -> Callable[..., str]:
    """Create a function from HANDLERS; `destinations` / `invoke_config` set its async config."""

    def make(
        handler: str = "echo",
        on_success: str | None = None,
        on_failure: str | None = None,
        invoke_config: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        name = f"fn-{uuid.uuid4().hex[:12]}"
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler=f"app.{handler}",
            Code={"ZipFile": make_zip({"app.py": HANDLERS})},
            **overrides,
        )
        config = dict(invoke_config or {})
        destinations = {}
        if on_success:
            destinations["OnSuccess"] = {"Destination": on_success}
        if on_failure:
            destinations["OnFailure"] = {"Destination": on_failure}
        if destinations:
            config["DestinationConfig"] = destinations
        if config:
            client.put_function_event_invoke_config(FunctionName=name, **config)
        return name

    return make


def send(client: Any, name: str, payload: Any = None, **kwargs: Any) -> str:
    """Invoke asynchronously; returns the request id after checking the 202."""
    body = b"" if payload is None else json.dumps(payload).encode()
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=body, **kwargs)
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    return str(response["ResponseMetadata"]["RequestId"])


def metrics(server: LaminaServer) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/metrics", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def error_code(error: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = error.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


# --------------------------------------------------------------------------- tests


def test_event_is_accepted_with_202_and_runs_with_the_same_request_id(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    results = queue()
    name = function("echo", on_success=results.arn)
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 1}')
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    # As on AWS: no executed version for an event (the version runs later).
    assert "x-amz-executed-version" not in headers
    request_id = response["ResponseMetadata"]["RequestId"]
    (record,) = results.records(1)
    assert record["version"] == "1.0"
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"{ARN}:{name}:$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert record["requestPayload"] == {"n": 1}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"n": 1}


def test_empty_payload_runs_as_an_empty_object(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    results = queue()
    name = function("echo", on_success=results.arn)
    send(client, name)
    (record,) = results.records(1)
    assert record["requestPayload"] == {} and record["responsePayload"] == {}


def test_legacy_invoke_async_is_accepted_and_delivered(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    results = queue()
    name = function("echo", on_success=results.arn)
    response = client.invoke_async(FunctionName=name, InvokeArgs=b'{"legacy": true}')
    assert response["Status"] == 202
    (record,) = results.records(1)
    assert record["requestPayload"] == {"legacy": True}
    assert record["requestContext"]["requestId"] == response["ResponseMetadata"]["RequestId"]


def test_missing_function_or_qualifier_is_404(client: Any, function: Callable[..., str]) -> None:
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName="no-such-fn", InvocationType="Event", Payload=b"{}")
    assert error_code(error) == (404, "ResourceNotFoundException")
    name = function("ok")
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}", Qualifier="9")
    assert error_code(error) == (404, "ResourceNotFoundException")
    with pytest.raises(ClientError) as error:
        client.invoke_async(FunctionName="no-such-fn", InvokeArgs=b"{}")
    assert error_code(error) == (404, "ResourceNotFoundException")


def test_event_payload_limit_is_one_megabyte(client: Any, function: Callable[..., str]) -> None:
    name = function("ok")
    limit = 1024 * 1024
    fits = b'"' + b"x" * (limit - 2) + b'"'
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=fits)
    assert response["StatusCode"] == 202
    response["Payload"].read()
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName=name, InvocationType="Event", Payload=fits + b" ")
    assert error_code(error) == (413, "RequestTooLargeException")
    with pytest.raises(ClientError) as error:
        client.invoke_async(FunctionName=name, InvokeArgs=fits + b" ")
    assert error_code(error) == (413, "RequestTooLargeException")


def test_malformed_payload_is_refused_before_queueing(
    client: Any, function: Callable[..., str]
) -> None:
    name = function("ok")
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{not json")
    assert error_code(error) == (400, "InvalidRequestContentException")


def test_alias_has_its_own_config_and_reports_the_version_it_ran(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    for_function, for_alias = queue(), queue()
    name = function("echo", on_success=for_function.arn)
    version = client.publish_version(FunctionName=name)["Version"]
    client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    client.put_function_event_invoke_config(
        FunctionName=name,
        Qualifier="live",
        DestinationConfig={"OnSuccess": {"Destination": for_alias.arn}},
    )
    send(client, name, {"via": "alias"}, Qualifier="live")
    send(client, f"{name}:{version}", {"via": "version"})
    send(client, name, {"via": "function"})
    (alias_record,) = for_alias.records(1)
    assert alias_record["requestContext"]["functionArn"] == f"{ARN}:{name}:live"
    assert alias_record["responseContext"]["executedVersion"] == version
    assert alias_record["requestPayload"] == {"via": "alias"}
    # The version has no config of its own, so its event has nowhere to report; the
    # function's ($LATEST) config applies to the unqualified call only.
    (function_record,) = for_function.records(1)
    assert function_record["requestPayload"] == {"via": "function"}
    assert for_alias.is_quiet() and for_function.is_quiet()


def test_accepted_events_are_counted(
    async_server: LaminaServer,
    client: Any,
    function: Callable[..., str],
    queue: Callable[[], Queue],
) -> None:
    results = queue()
    name = function("ok", on_success=results.arn)
    for n in range(3):
        send(client, name, {"n": n})
    results.records(3)
    snapshot = metrics(async_server)
    assert snapshot["AsyncEventsReceived"][name] == {"Sum": 3}
    age = snapshot["AsyncEventAge"][name]
    assert age["SampleCount"] == 3 and age["Minimum"] >= 0
