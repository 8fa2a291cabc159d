"""Custom runtimes (provided, provided.al2, provided.al2023): a `bootstrap` in any language."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests.support.archives import make_package
from tests.support.lambda_api import call, log_tail

# A whole custom runtime in Python's standard library: it speaks the Runtime API directly.
RUNTIME_SCRIPT = """#!/usr/bin/env python3
import json, os, sys, urllib.request

SOURCE = "{source}"
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
HANDLER = os.environ["_HANDLER"]


def post(path, body, error_type=None):
    headers = {{"Content-Type": "application/json"}}
    if error_type:
        headers["Lambda-Runtime-Function-Error-Type"] = error_type
    request = urllib.request.Request(
        API + path, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request) as response:
        response.read()


if HANDLER == "init.fail":
    post("/init/error", {{"errorMessage": "cannot start", "errorType": "Custom.InitFailed"}},
         "Custom.InitFailed")
    sys.exit(1)
if HANDLER == "init.exit":
    sys.exit(2)

while True:
    with urllib.request.urlopen(API + "/invocation/next") as response:
        headers = {{k.lower(): v for k, v in response.headers.items()}}
        event = json.loads(response.read())
    request_id = headers["lambda-runtime-aws-request-id"]
    if event.get("fail"):
        post("/invocation/%s/error" % request_id,
             {{"errorMessage": "asked to fail", "errorType": "Custom.Failure"}}, "Custom.Failure")
        continue
    print("handled", request_id, flush=True)
    post("/invocation/%s/response" % request_id, {{
        "source": SOURCE,
        "event": event,
        "handler": HANDLER,
        "headers": {{k: v for k, v in headers.items() if k.startswith("lambda-runtime-")}},
        "env": {{k: v for k, v in os.environ.items()
                 if k.startswith(("AWS_", "LAMBDA_", "_HANDLER", "_X_AMZN"))}},
        "argv0": sys.argv[0],
    }})
"""


def runtime_script(source: str) -> str:
    return RUNTIME_SCRIPT.format(source=source)


@pytest.fixture
def custom_function(create_function: Callable[..., Any]) -> Callable[..., str]:
    def make(files: Mapping[str, str], **overrides: Any) -> str:
        overrides.setdefault("Runtime", "provided.al2023")
        overrides.setdefault("Handler", "function.handler")
        config = create_function(Code={"ZipFile": make_package(files)}, **overrides)
        return str(config["FunctionName"])

    return make


@pytest.fixture
def layer_with_bootstrap(lambda_client: Any, unique_name: Callable[[str], str]) -> str:
    layer = lambda_client.publish_layer_version(
        LayerName=unique_name("runtime"),
        Content={"ZipFile": make_package({"bootstrap": runtime_script("layer")})},
        CompatibleRuntimes=["provided.al2023"],
    )
    return str(layer["LayerVersionArn"])


@pytest.mark.parametrize("runtime", ["provided", "provided.al2", "provided.al2023"])
def test_bootstrap_in_package(
    lambda_client: Any, custom_function: Callable[..., str], runtime: str
) -> None:
    name = custom_function({"bootstrap": runtime_script("package")}, Runtime=runtime)
    response, result = call(lambda_client, name, {"hello": "world"}, LogType="Tail")
    assert "FunctionError" not in response, result
    assert result["source"] == "package"
    assert result["event"] == {"hello": "world"}
    assert result["handler"] == "function.handler"
    headers = result["headers"]
    assert headers["lambda-runtime-invoked-function-arn"].endswith(f":function:{name}")
    assert int(headers["lambda-runtime-deadline-ms"]) > 0
    env = result["env"]
    # What a custom runtime needs to find its API, its handler and its code...
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["_HANDLER"] == "function.handler"
    assert result["argv0"].endswith("bootstrap")
    assert env["LAMBDA_TASK_ROOT"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    # ...and what AWS leaves unset for provided runtimes.
    assert "AWS_EXECUTION_ENV" not in env
    # The runtime's own output is captured between the platform's lines.
    log = log_tail(response)
    assert log.index("START RequestId:") < log.index("handled ") < log.index("END RequestId:")
    # Warm: the same bootstrap process answers again.
    assert call(lambda_client, name, {"n": 2})[1]["event"] == {"n": 2}


def test_bootstrap_in_layer(
    lambda_client: Any, custom_function: Callable[..., str], layer_with_bootstrap: str
) -> None:
    name = custom_function({"data.txt": "no bootstrap here"}, Layers=[layer_with_bootstrap])
    response, result = call(lambda_client, name, {"from": "layer"})
    assert "FunctionError" not in response, result
    assert result["source"] == "layer"
    assert result["event"] == {"from": "layer"}
    assert "AWS_EXECUTION_ENV" not in result["env"]


def test_package_bootstrap_wins_over_layer(
    lambda_client: Any, custom_function: Callable[..., str], layer_with_bootstrap: str
) -> None:
    name = custom_function({"bootstrap": runtime_script("package")}, Layers=[layer_with_bootstrap])
    assert call(lambda_client, name, {})[1]["source"] == "package"


def test_shell_bootstrap_execs_another_program(
    lambda_client: Any, custom_function: Callable[..., str]
) -> None:
    files = {
        "bootstrap": '#!/bin/sh\nset -e\nexec python3 "$LAMBDA_TASK_ROOT/runtime.py"\n',
        "runtime.py": runtime_script("shell"),
    }
    response, result = call(lambda_client, custom_function(files), {"x": 1})
    assert "FunctionError" not in response, result
    assert result["source"] == "shell"
    assert result["argv0"].endswith("runtime.py")


def test_invocation_error_from_custom_runtime(
    lambda_client: Any, custom_function: Callable[..., str]
) -> None:
    name = custom_function({"bootstrap": runtime_script("package")})
    response, result = call(lambda_client, name, {"fail": True})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert result == {"errorMessage": "asked to fail", "errorType": "Custom.Failure"}
    # The runtime carries on: the next event succeeds in the same environment.
    assert "FunctionError" not in call(lambda_client, name, {"fail": False})[0]


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("init.fail", "Custom.InitFailed", "cannot start"),
        ("init.exit", "Runtime.ExitError", "exit status 2"),
    ],
)
def test_init_failures(
    lambda_client: Any,
    custom_function: Callable[..., str],
    handler: str,
    error_type: str,
    message: str,
) -> None:
    name = custom_function({"bootstrap": runtime_script("package")}, Handler=handler)
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == error_type
    assert message in result["errorMessage"]
    lambda_client.update_function_configuration(FunctionName=name, Handler="function.handler")
    assert call(lambda_client, name, {})[1]["source"] == "package"


def test_missing_bootstrap_is_invalid_entrypoint(
    lambda_client: Any, custom_function: Callable[..., str]
) -> None:
    name = custom_function({"function.sh": "echo not a bootstrap\n"})
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Runtime.InvalidEntrypoint"
    assert "/var/task/bootstrap" in result["errorMessage"]
    assert "/opt/bootstrap" in result["errorMessage"]
    # Deploying a bootstrap fixes it.
    lambda_client.update_function_code(
        FunctionName=name, ZipFile=make_package({"bootstrap": runtime_script("fixed")})
    )
    assert call(lambda_client, name, {})[1]["source"] == "fixed"


def test_bootstrap_without_execute_permission(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    package = make_package({"bootstrap": runtime_script("package")}, executable=())
    name = create_function(
        Runtime="provided.al2023", Handler="function.handler", Code={"ZipFile": package}
    )["FunctionName"]
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Runtime.InvalidEntrypoint"
    assert result["errorMessage"] == "fork/exec /var/task/bootstrap: permission denied"
