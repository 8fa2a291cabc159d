"""Synchronous Invoke over HTTP with boto3: results, errors, logs, qualifiers."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import call, log_tail

HANDLERS = """
import json, os, sys, time, logging

PREFIXES = ("AWS_", "LAMBDA_", "_HANDLER", "STAGE")

def echo(event, context):
    return event

def describe(event, context):
    return {
        "name": context.function_name,
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "request_id": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
        "group": context.log_group_name,
        "stream": context.log_stream_name,
        "client_context": context.client_context.custom if context.client_context else None,
        "env": {k: v for k, v in os.environ.items() if k.startswith(PREFIXES)},
    }

def chatty(event, context):
    print("line one")
    logging.getLogger().warning("careful")
    return "ok"

def fail(event, context):
    raise ValueError("something broke")

def not_json(event, context):
    return {"when": object()}

def sleepy(event, context):
    time.sleep(event.get("seconds", 5))
    return "woke"

def exits(event, context):
    os._exit(3)
"""


@pytest.fixture
def function(create_function: Callable[..., Any]) -> Callable[..., str]:
    def make(handler: str, **overrides: Any) -> str:
        config = create_function(
            Handler=f"app.{handler}", Code={"ZipFile": make_zip({"app.py": HANDLERS})}, **overrides
        )
        return str(config["FunctionName"])

    return make


def test_echo_returns_payload_and_version(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function("echo")
    response, result = call(lambda_client, name, {"hello": ["world", 1]})
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert result == {"hello": ["world", 1]}
    # Warm: the same environment answers again.
    assert call(lambda_client, name, {"n": 2})[1] == {"n": 2}


def test_empty_payload_is_an_empty_object(lambda_client: Any, function: Callable[..., str]) -> None:
    assert call(lambda_client, function("echo"))[1] == {}


def test_context_and_environment(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function("describe", MemorySize=256, Environment={"Variables": {"STAGE": "dev"}})
    context = base64.b64encode(json.dumps({"custom": {"tenant": "a"}}).encode()).decode()
    response, result = call(lambda_client, name, {}, ClientContext=context)
    # As on AWS, the API's request id is the invocation's request id.
    assert result["request_id"] == response["ResponseMetadata"]["RequestId"]
    assert result["name"] == name
    assert result["version"] == "$LATEST"
    assert result["arn"].endswith(f":function:{name}")
    assert result["memory"] == "256"
    assert 0 < result["remaining"] <= 3000
    assert result["client_context"] == {"tenant": "a"}
    assert result["group"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in result["stream"]
    env = result["env"]
    assert env["STAGE"] == "dev"
    assert env["_HANDLER"] == "app.describe"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert "LAMBDA_TASK_ROOT" in env


def test_log_tail_has_platform_lines(lambda_client: Any, function: Callable[..., str]) -> None:
    response, result = call(lambda_client, function("chatty"), {}, LogType="Tail")
    assert result == "ok"
    log = log_tail(response)
    request_id = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert "START RequestId: " in log and "Version: $LATEST" in log
    assert "line one" in log
    assert "[WARNING]\t" in log and "\tcareful" in log
    assert "END RequestId: " in log
    report = next(line for line in log.splitlines() if line.startswith("REPORT"))
    assert "Duration: " in report and "Billed Duration: " in report
    assert "Memory Size: 128 MB" in report and "Max Memory Used: " in report
    assert "Init Duration: " in report  # first call is a cold start
    assert request_id


def test_function_error(lambda_client: Any, function: Callable[..., str]) -> None:
    response, result = call(lambda_client, function("fail"), {})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "ValueError"
    assert result["errorMessage"] == "something broke"
    assert any('raise ValueError("something broke")' in frame for frame in result["stackTrace"])
    assert not any("bootstrap.py" in frame for frame in result["stackTrace"])


def test_unserialisable_result_is_marshal_error(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    response, result = call(lambda_client, function("not_json"), {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Runtime.MarshalError"
    assert result["errorMessage"].startswith("Unable to marshal response")


@pytest.mark.parametrize(
    ("files", "handler", "error_type"),
    [
        ({"app.py": "x = 1\n"}, "missing.handler", "Runtime.ImportModuleError"),
        ({"app.py": "x = 1\n"}, "app.nothing", "Runtime.HandlerNotFound"),
        ({"app.py": "def handler(:\n"}, "app.handler", "Runtime.UserCodeSyntaxError"),
        ({"app.py": "raise RuntimeError('init failed')\n"}, "app.handler", "RuntimeError"),
    ],
)
def test_init_errors(
    lambda_client: Any,
    create_function: Callable[..., Any],
    files: dict[str, str],
    handler: str,
    error_type: str,
) -> None:
    name = create_function(Handler=handler, Code={"ZipFile": make_zip(files)})["FunctionName"]
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == error_type
    # The platform stays healthy: fix the code and the next call works.
    lambda_client.update_function_code(
        FunctionName=name, ZipFile=make_zip({"missing.py": HANDLERS, "app.py": HANDLERS})
    )
    lambda_client.update_function_configuration(FunctionName=name, Handler="app.echo")
    assert call(lambda_client, name, {"ok": True})[1] == {"ok": True}


def test_timeout_kills_environment(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function("sleepy", Timeout=1)
    response, result = call(lambda_client, name, {"seconds": 5}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in result["errorMessage"]
    assert "Status: timeout" in log_tail(response)
    assert call(lambda_client, name, {"seconds": 0})[1] == "woke"


def test_exit_in_handler_is_exit_error(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function("exits")
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in result["errorMessage"]


def test_dry_run(lambda_client: Any, function: Callable[..., str]) -> None:
    response = lambda_client.invoke(FunctionName=function("echo"), InvocationType="DryRun")
    assert response["Payload"].read() == b""
    assert response["StatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName="no-such-function", InvocationType="DryRun")
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_qualifiers_and_aliases(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function("echo")
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    assert call(lambda_client, name, {}, Qualifier="1")[0]["ExecutedVersion"] == "1"
    assert call(lambda_client, f"{name}:live", {})[0]["ExecutedVersion"] == "1"
    assert call(lambda_client, f"{name}:$LATEST", {})[0]["ExecutedVersion"] == "$LATEST"
    with pytest.raises(ClientError) as excinfo:
        call(lambda_client, name, {}, Qualifier="9")
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_weighted_alias_routes_to_both_versions(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function("echo")
    lambda_client.publish_version(FunctionName=name)
    lambda_client.update_function_configuration(FunctionName=name, Description="second")
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(
        FunctionName=name,
        Name="canary",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    seen = {call(lambda_client, f"{name}:canary", {})[0]["ExecutedVersion"] for _ in range(40)}
    assert seen == {"1", "2"}


def test_non_json_payload_is_refused(lambda_client: Any, function: Callable[..., str]) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName=function("echo"), Payload=b"{not json")
    assert excinfo.value.response["Error"]["Code"] == "InvalidRequestContentException"


def test_oversize_request_is_413(lambda_client: Any, function: Callable[..., str]) -> None:
    payload = json.dumps({"blob": "x" * (6 * 1024 * 1024)}).encode()
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName=function("echo"), Payload=payload)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert excinfo.value.response["Error"]["Code"] == "RequestTooLargeException"


def test_oversize_response_is_function_error(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    source = "def handler(event, context):\n    return 'x' * (7 * 1024 * 1024)\n"
    name = create_function(Code={"ZipFile": make_zip({"app.py": source})})["FunctionName"]
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Function.ResponseSizeTooLarge"
    assert "6291556" in result["errorMessage"]


def test_missing_runtime_names_what_to_install(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Runtime="java21", Handler="example.Handler")["FunctionName"]
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Runtime.InvalidRuntime"
    assert "java21" in result["errorMessage"]


def test_runtime_exiting_between_calls_gets_a_fresh_environment(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    source = (
        "import os, threading\n"
        "def handler(event, context):\n"
        "    if event.get('die'):\n"
        "        threading.Timer(0.2, os._exit, args=(7,)).start()\n"
        "    return os.getpid()\n"
    )
    name = create_function(Code={"ZipFile": make_zip({"app.py": source})})["FunctionName"]
    call(lambda_client, name, {"die": True})
    time.sleep(1.0)  # the runtime ends while idle
    response, _ = call(lambda_client, name, {})
    assert "FunctionError" not in response


def test_layers_are_unpacked_in_order_and_later_ones_win(
    lambda_client: Any, create_function: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    arns = []
    for value in ("first", "second"):
        layer = lambda_client.publish_layer_version(
            LayerName=unique_name("layer"),
            Content={
                "ZipFile": make_zip(
                    {"python/shared.py": f"VALUE = {value!r}\n", f"python/only_{value}.py": ""}
                )
            },
        )
        arns.append(layer["LayerVersionArn"])
    source = (
        "import shared, only_first, only_second\n"
        "def handler(event, context):\n"
        "    return shared.VALUE\n"
    )
    name = create_function(Code={"ZipFile": make_zip({"app.py": source})}, Layers=arns)[
        "FunctionName"
    ]
    # Both layers are importable from /opt/python, and the later one's file replaced the earlier.
    assert call(lambda_client, name, {})[1] == "second"


def test_init_is_limited_to_ten_seconds(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    source = "import time\ntime.sleep(60)\n\ndef handler(event, context):\n    return 1\n"
    name = create_function(Code={"ZipFile": make_zip({"app.py": source})}, Timeout=30)[
        "FunctionName"
    ]
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Sandbox.Timedout"
    # Stopped by the 10 s init limit, not by the 30 s function timeout or the 60 s sleep.
    assert "Init phase timed out after 10.00 seconds" in result["errorMessage"]
