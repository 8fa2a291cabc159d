"""AWS's own runtime interface clients, unmodified, against Lamina's Runtime API.

Each test installs the official client from its public registry (PyPI `awslambdaric`, npm
`aws-lambda-ric`) into a function package that runs on `provided.al2023`. Installs are cached
in pytest's cache directory, keyed by client version, interpreter and machine, so only the
first run pays for them (about 2 s for the Python wheel, about a minute for the Node client,
which compiles a native addon).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_package
from tests.support.lambda_api import call, log_tail

AWSLAMBDARIC_VERSION = "4.2.2"
AWS_LAMBDA_RIC_VERSION = "4.0.2"
MACHINE = platform.machine()
# Where a custom runtime's bootstrap finds programs (the PATH Lamina gives it, minus /opt).
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"

pytestmark = pytest.mark.slow

PYTHON_APP = """
import json, logging, os

logging.getLogger().setLevel(logging.INFO)

def handler(event, context):
    print("hello from awslambdaric")
    logging.info("logged through the RIC")
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "client": context.client_context.custom if context.client_context else None,
    }

def fail(event, context):
    raise ValueError("official client saw this")
"""

NODE_APP = """
export const handler = async (event, context) => {
  console.log('hello from aws-lambda-ric');
  return {
    event,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    memory: context.memoryLimitInMB,
    remaining: context.getRemainingTimeInMillis(),
  };
};

export const fail = async () => {
  throw new TypeError('official node client saw this');
};

export const stream = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('streamed ');
  responseStream.end('by the official client');
});
"""


def system_tool(name: str) -> str | None:
    return shutil.which(name, path=SYSTEM_PATH)


def cache_dir(request: pytest.FixtureRequest, key: str) -> Path:
    """A directory that outlives the test session (pytest's cache), or a temporary one."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(key))
    factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    return factory.mktemp(key)


def install_once(target: Path, install: Callable[[Path], None]) -> Path:
    """Run `install` into a staging directory and publish it whole, so a failed or
    interrupted install is never mistaken for a finished one."""
    done = target / "installed"
    if done.is_dir():
        return done
    staging = target / f"staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        install(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(done)
    return done


def run_installer(command: list[str], cwd: Path) -> None:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def package_files(root: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


# ------------------------------------------------------------------------------ Python


@pytest.fixture(scope="module")
def awslambdaric(request: pytest.FixtureRequest) -> tuple[Path, str]:
    """awslambdaric's prebuilt wheel (and its dependencies) for the system's python3, and
    that interpreter: a custom runtime sees the host's system directories, not pyenv's."""
    interpreter = system_tool("python3")
    if interpreter is None:
        pytest.skip(f"no python3 in {SYSTEM_PATH} for a custom runtime's bootstrap to run")
    version = subprocess.run(
        [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    key = f"lamina-awslambdaric-{AWSLAMBDARIC_VERSION}-cp{version}-{MACHINE}"

    def install(staging: Path) -> None:
        run_installer(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--only-binary=:all:",
                "--python-version",
                version,
                "--implementation",
                "cp",
                "--platform",
                f"manylinux2014_{MACHINE}",
                "--target",
                str(staging),
                f"awslambdaric=={AWSLAMBDARIC_VERSION}",
            ],
            staging,
        )

    return install_once(cache_dir(request, key), install), interpreter


@pytest.fixture
def python_ric_function(
    awslambdaric: tuple[Path, str], create_function: Callable[..., Any]
) -> Callable[[str], str]:
    site, interpreter = awslambdaric
    bootstrap = (
        f'#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\nexec {interpreter} -m awslambdaric "$_HANDLER"\n'
    )
    files: dict[str, str | bytes] = {
        **package_files(site),
        "app.py": PYTHON_APP,
        "bootstrap": bootstrap,
    }
    package = make_package(files)

    def make(handler: str) -> str:
        config = create_function(
            Runtime="provided.al2023", Handler=handler, Code={"ZipFile": package}
        )
        return str(config["FunctionName"])

    return make


def test_awslambdaric_serves_invocations(
    lambda_client: Any, python_ric_function: Callable[[str], str]
) -> None:
    name = python_ric_function("app.handler")
    context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    response, result = call(lambda_client, name, {"hi": 1}, LogType="Tail", ClientContext=context)
    assert "FunctionError" not in response, result
    assert result["event"] == {"hi": 1}
    assert result["function_name"] == name
    assert result["memory"] == "128"
    assert 0 < result["remaining"] <= 3000
    assert result["client"] == {"k": "v"}
    log = log_tail(response)
    assert "hello from awslambdaric" in log
    assert "[INFO]\t" in log and f"\t{result['request_id']}\tlogged through the RIC" in log
    # Warm: the same official client process takes the next event.
    second = call(lambda_client, name, {"hi": 2})[1]
    assert second["event"] == {"hi": 2}
    assert second["request_id"] != result["request_id"]


def test_awslambdaric_reports_errors(
    lambda_client: Any, python_ric_function: Callable[[str], str]
) -> None:
    response, result = call(lambda_client, python_ric_function("app.fail"), {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "ValueError"
    assert result["errorMessage"] == "official client saw this"
    assert any("official client saw this" in frame for frame in result["stackTrace"])


def test_awslambdaric_init_error(
    lambda_client: Any, python_ric_function: Callable[[str], str]
) -> None:
    response, result = call(lambda_client, python_ric_function("missing.handler"), {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Runtime.ImportModuleError"
    assert result["errorMessage"].startswith("Unable to import module 'missing'")


# -------------------------------------------------------------------------------- Node


@pytest.fixture(scope="module")
def aws_lambda_ric(request: pytest.FixtureRequest) -> tuple[Path, str]:
    """The npm package aws-lambda-ric, installed (its native addon built) once per version,
    Node version and machine."""
    node = system_tool("node")
    npm = shutil.which("npm")
    missing = [
        tool
        for tool, found in (
            ("node", node),
            ("npm", npm),
            ("make", shutil.which("make")),
            ("cmake", shutil.which("cmake")),
            ("a C++ compiler", shutil.which("c++") or shutil.which("g++")),
        )
        if not found
    ]
    if missing or node is None or npm is None:
        pytest.skip(f"aws-lambda-ric builds a native addon and needs {', '.join(missing)}")
    node_version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    key = f"lamina-aws-lambda-ric-{AWS_LAMBDA_RIC_VERSION}-node{node_version}-{MACHINE}"

    def install(staging: Path) -> None:
        (staging / "package.json").write_text('{"name": "ric-cache", "private": true}')
        run_installer(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"aws-lambda-ric@{AWS_LAMBDA_RIC_VERSION}",
            ],
            staging,
        )

    installed = install_once(cache_dir(request, key), install)
    return installed / "node_modules" / "aws-lambda-ric", node


@pytest.fixture
def node_ric_function(
    aws_lambda_ric: tuple[Path, str], create_function: Callable[..., Any]
) -> Callable[[str], str]:
    package_dir, node = aws_lambda_ric
    client_files = {
        f"node_modules/aws-lambda-ric/{path}": content
        for path, content in package_files(package_dir).items()
    }
    # The client reads _HANDLER and LAMBDA_TASK_ROOT itself; it takes no arguments.
    bootstrap = (
        f'#!/bin/sh\nexec {node} "$LAMBDA_TASK_ROOT/node_modules/aws-lambda-ric/index.mjs"\n'
    )
    package = make_package({**client_files, "app.mjs": NODE_APP, "bootstrap": bootstrap})

    def make(handler: str) -> str:
        config = create_function(
            Runtime="provided.al2023", Handler=handler, Code={"ZipFile": package}
        )
        return str(config["FunctionName"])

    return make


def test_aws_lambda_ric_serves_invocations(
    lambda_client: Any, node_ric_function: Callable[[str], str]
) -> None:
    name = node_ric_function("app.handler")
    response, result = call(lambda_client, name, {"hi": 1}, LogType="Tail")
    assert "FunctionError" not in response, result
    assert result["event"] == {"hi": 1}
    assert result["functionName"] == name
    assert result["memory"] == "128"
    assert 0 < result["remaining"] <= 3000
    log = log_tail(response)
    assert f"\t{result['requestId']}\tINFO\thello from aws-lambda-ric" in log
    second = call(lambda_client, name, {"hi": 2})[1]
    assert second["event"] == {"hi": 2}
    assert second["requestId"] != result["requestId"]


def test_aws_lambda_ric_reports_errors(
    lambda_client: Any, node_ric_function: Callable[[str], str]
) -> None:
    response, result = call(lambda_client, node_ric_function("app.fail"), {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "TypeError"
    assert result["errorMessage"] == "official node client saw this"
    assert result["trace"][0] == "TypeError: official node client saw this"


def test_aws_lambda_ric_streams(
    lambda_client: Any, node_ric_function: Callable[[str], str]
) -> None:
    response = lambda_client.invoke(FunctionName=node_ric_function("app.stream"), Payload=b"{}")
    assert "FunctionError" not in response
    assert response["Payload"].read() == b"streamed by the official client"
