"""The environment as function code sees it, compared with what an AWS environment reports.

rlimits, the user the function runs as, its working directory, the memory REPORT says it
used, and the log stream every invocation has, even one whose runtime never started.

The namespace backend (root, Linux: this project's machines and CI) gives AWS's values; run
with LAMINA_ISOLATION=process to check what the process backend gives instead (see
`expected_limits`).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_package, make_zip
from tests.support.lambda_api import ROLE, call, invoke, log_tail
from tests.support.server import LaminaServer

BACKEND = os.environ.get("LAMINA_ISOLATION", "namespace")

CODE = r"""
import getpass, os, pwd, resource, subprocess, sys

NAMES = ["NOFILE", "NPROC", "CORE", "MEMLOCK", "STACK", "AS", "CPU", "DATA", "FSIZE", "RSS"]

def noop(event, context):
    return None

def limits(event, context):
    return {name: list(resource.getrlimit(getattr(resource, "RLIMIT_" + name))) for name in NAMES}

def identity(event, context):
    return {
        "getuser": getpass.getuser(),
        "pwd": pwd.getpwuid(os.getuid()).pw_name,
        "id": subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip(),
        "cwd": os.getcwd(),
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "root": sorted(os.listdir("/")),
    }

def interpreter(event, context):
    return sys.executable
"""

UNLIMITED = resource.RLIM_INFINITY
MIB = 1024 * 1024
# What `resource.getrlimit` returns inside a function on AWS.
AWS_LIMITS = {
    "NOFILE": [1024, 1024],
    "NPROC": [742, 742],
    "CORE": [10737418240, 10737418240],
    "MEMLOCK": [65536, 65536],
    "STACK": [8388608, UNLIMITED],
    "AS": [UNLIMITED, UNLIMITED],
    "CPU": [UNLIMITED, UNLIMITED],
    "DATA": [UNLIMITED, UNLIMITED],
    "FSIZE": [UNLIMITED, UNLIMITED],
    "RSS": [UNLIMITED, UNLIMITED],
}


def expected_limits(memory_mb: int, ephemeral_mb: int) -> dict[str, list[int]]:
    """AWS's limits; on the process backend memory and /tmp stay enforced by DATA and FSIZE,
    core files are off, and a server that is not root keeps its own NPROC and cannot raise a
    hard limit."""
    if BACKEND != "process":
        return AWS_LIMITS
    expected = {
        **AWS_LIMITS,
        "DATA": [memory_mb * MIB, memory_mb * MIB],
        "FSIZE": [ephemeral_mb * MIB, ephemeral_mb * MIB],
        # A core file would land in the code's directory on the host, shared by environments.
        "CORE": [0, AWS_LIMITS["CORE"][1]],
    }
    if os.geteuid() == 0:
        return expected
    # The server inherits this test's limits.
    capped = {}
    for name, (soft, hard) in expected.items():
        own = resource.getrlimit(getattr(resource, "RLIMIT_" + name))
        if name == "NPROC":
            capped[name] = list(own)
        else:
            ceiling = lower(hard, own[1])
            capped[name] = [lower(soft, ceiling), ceiling]
    return capped


def lower(a: int, b: int) -> int:
    """The lower of two limits, either of which may be unlimited."""
    return b if a == UNLIMITED else a if b == UNLIMITED else min(a, b)


@pytest.fixture(scope="module")
def fidelity_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    data = tmp_path_factory.mktemp("fidelity") / "data"
    # A Node interpreter that is not there: the runtime of such functions cannot start.
    env = {"LAMINA_ISOLATION": BACKEND, "LAMINA_RUNTIME_NODEJS20_X": "/nonexistent/node"}
    instance = LaminaServer(data, env=env).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(fidelity_server: LaminaServer) -> Iterator[Any]:
    lambda_client = fidelity_server.client("lambda", read_timeout=60)
    yield lambda_client
    lambda_client.close()


@pytest.fixture(scope="module")
def logs(fidelity_server: LaminaServer) -> Iterator[Any]:
    logs_client = fidelity_server.client("logs")
    yield logs_client
    logs_client.close()


@pytest.fixture
def make_function(client: Any, unique_name: Callable[[str], str]) -> Callable[..., str]:
    def make(**overrides: Any) -> str:
        name = unique_name("env")
        params: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.noop",
            "Code": {"ZipFile": make_zip({"app.py": CODE})},
        }
        client.create_function(**{**params, **overrides})
        return name

    return make


def stream_messages(logs: Any, name: str) -> list[list[str]]:
    """The messages of each of the function's log streams (DescribeLogStreams, GetLogEvents)."""
    group = f"/aws/lambda/{name}"
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    return [
        [
            event["message"]
            for event in logs.get_log_events(
                logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
            )["events"]
        ]
        for stream in streams
    ]


def kinds(messages: list[str]) -> list[str]:
    return [message.split(" ", 1)[0] for message in messages]


# ------------------------------------------------------------------------- rlimits


@pytest.mark.parametrize(("memory_mb", "ephemeral_mb"), [(128, 512), (1024, 2048)])
def test_rlimits_are_what_an_aws_environment_reports(
    client: Any, make_function: Callable[..., str], memory_mb: int, ephemeral_mb: int
) -> None:
    name = make_function(
        Handler="app.limits", MemorySize=memory_mb, EphemeralStorage={"Size": ephemeral_mb}
    )
    assert invoke(client, name) == expected_limits(memory_mb, ephemeral_mb)


def test_rlimits_hold_for_a_runtime_started_fresh(
    client: Any, make_function: Callable[..., str]
) -> None:
    # The same handler, started by a custom runtime (`exec`ed, never forked from a template).
    bootstrap = (
        "#!/bin/sh\n"
        'cd "$LAMBDA_TASK_ROOT" && exec python3 -c '
        "'import json, app; print(json.dumps(app.limits(None, None)))'\n"
    )
    name = make_function(
        Runtime="provided.al2023",
        Handler="unused",
        Code={"ZipFile": make_package({"bootstrap": bootstrap, "app.py": CODE})},
    )
    response, _ = call(client, name, LogType="Tail")
    # The bootstrap prints the limits and ends without serving: an init failure whose
    # output (in the log tail) is what is under test.
    line = next(line for line in log_tail(response).splitlines() if line.startswith("{"))
    assert json.loads(line) == expected_limits(128, 512)


# ---------------------------------------------------------------------- identity


def test_the_function_runs_as_a_user_whose_name_resolves_in_var_task(
    client: Any, make_function: Callable[..., str]
) -> None:
    host_passwd = Path("/etc/passwd").read_text()
    seen = invoke(client, make_function(Handler="app.identity"))
    if BACKEND == "process":
        # No namespaces: the server's own user, in the code's directory on the host.
        own = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True)
        user, cwd = own.stdout.strip(), seen["task_root"]
    else:
        user, cwd = "sbx_user1051", "/var/task"
    assert (seen["getuser"], seen["pwd"], seen["id"]) == (user, user, user)
    assert seen["cwd"] == cwd
    # The entry lives in the environment's own /etc/passwd; the host's is untouched and
    # nothing used to build the environment's is left in its root.
    assert Path("/etc/passwd").read_text() == host_passwd
    if BACKEND != "process":
        assert not [entry for entry in seen["root"] if entry.startswith(".")]


# ------------------------------------------------------------------------ memory


def fresh_interpreter_peak_kib(executable: str) -> int:
    """VmHWM of a fresh interpreter that does nothing, as the host runs it."""
    script = "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    done = subprocess.run([executable, "-c", script], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_no_op_reports_at_least_what_a_fresh_interpreter_holds(
    client: Any, make_function: Callable[..., str]
) -> None:
    name = make_function(Handler="app.noop")
    used = []
    for _ in range(2):  # the cold invocation, then a warm one
        response, _ = call(client, name, LogType="Tail")
        match = re.search(r"Max Memory Used: (\d+) MB", log_tail(response))
        assert match is not None, log_tail(response)
        used.append(int(match.group(1)))
    executable = invoke(client, make_function(Handler="app.interpreter"))
    fresh_mib = fresh_interpreter_peak_kib(executable) / 1024
    # Environments forked from a template share its pages; they count, as in a fresh process
    # (before, the cgroup's charge alone read 3-4 MB for a no-op).
    assert all(fresh_mib <= mb <= 128 for mb in used), (used, fresh_mib)
    assert used[1] >= used[0]


# -------------------------------------------------------------------------- logs


def test_an_init_failure_logs_start_end_and_report_in_its_stream(
    client: Any, logs: Any, make_function: Callable[..., str]
) -> None:
    name = make_function(Code={"ZipFile": make_zip({"app.py": "raise ValueError('no init')\n"})})
    response, result = call(client, name, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert (result["errorType"], result["errorMessage"]) == ("ValueError", "no init")
    (messages,) = stream_messages(logs, name)
    assert kinds(messages) == ["INIT_START", "[ERROR]", "START", "END", "REPORT"]
    request_id = response["ResponseMetadata"]["RequestId"]
    assert messages[2] == f"START RequestId: {request_id} Version: $LATEST"
    report = messages[4]
    assert report.startswith(f"REPORT RequestId: {request_id}\t")
    assert "\tInit Duration: " in report
    assert report.endswith("\tStatus: error\tError Type: Runtime.Unknown\t")
    # The caller's log tail ends the same way.
    assert log_tail(response).rstrip("\n").endswith(report)


def test_a_missing_interpreter_still_gives_the_invocation_its_log_stream(
    client: Any, logs: Any, make_function: Callable[..., str]
) -> None:
    name = make_function(
        Runtime="nodejs20.x",
        Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": "exports.handler = async () => 1;\n"})},
    )
    response, result = call(client, name, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Runtime.InvalidRuntime"
    assert "/nonexistent/node" in result["errorMessage"]
    (messages,) = stream_messages(logs, name)
    request_id = response["ResponseMetadata"]["RequestId"]
    assert kinds(messages) == ["START", "END", "REPORT"]
    assert messages[1] == f"END RequestId: {request_id}"
    assert messages[2].endswith("\tStatus: error\tError Type: Runtime.InvalidRuntime\t")
    assert log_tail(response).splitlines() == messages
    # Every invocation gets its stream, the second as well.
    call(client, name)
    assert len(stream_messages(logs, name)) == 2


def test_a_bootstrap_that_cannot_be_executed_is_an_init_failure_with_its_stream(
    client: Any, logs: Any, make_function: Callable[..., str]
) -> None:
    bootstrap = "#!/nonexistent/interpreter\n"
    name = make_function(
        Runtime="provided.al2023",
        Handler="unused",
        Code={"ZipFile": make_package({"bootstrap": bootstrap})},
    )
    response, result = call(client, name, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert result == {
        "errorType": "Runtime.InvalidEntrypoint",
        "errorMessage": "fork/exec /var/task/bootstrap: no such file or directory",
    }
    (messages,) = stream_messages(logs, name)
    assert kinds(messages) == ["INIT_START", "START", "END", "REPORT"]
    assert messages[3].endswith("\tStatus: error\tError Type: Runtime.InvalidEntrypoint\t")
