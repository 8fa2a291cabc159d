"""Isolation between functions, environments and the platform (namespace backend), over HTTP.

These tests need the namespace backend, which this project's machines and CI provide (root,
Linux). Where it is unavailable they fail, naming why, unless LAMINA_ISOLATION=process says
the process backend is being tested deliberately, in which case they are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.sandbox.cgroups import CPU_PERIOD_US, cpu_quota_us, locate
from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, invoke
from tests.support.server import LaminaServer

CODE = r'''
import errno, json, os, socket

def probe(event, context):
    """Try to read each path; report what could be seen."""
    seen = {}
    for path in event["paths"]:
        try:
            seen[path] = sorted(os.listdir(path)) if os.path.isdir(path) else open(path).read()
        except OSError as error:
            seen[path] = errno.errorcode.get(error.errno, str(error.errno))
    return seen

def remember(event, context):
    with open("/tmp/counter", "a") as counter:
        counter.write("x")
    if event.get("secret"):
        with open("/tmp/" + event["secret"], "w") as secret:
            secret.write("secret")
    return {"count": len(open("/tmp/counter").read()), "tmp": sorted(os.listdir("/tmp"))}

def fill(event, context):
    written = 0
    block = b"\0" * (1 << 20)
    try:
        with open("/tmp/fill", "wb") as out:
            while written < event["limit"]:
                out.write(block)
                out.flush()
                written += len(block)
        outcome = "no error"
    except OSError as error:
        outcome = errno.errorcode.get(error.errno, str(error.errno))
    stats = os.statvfs("/tmp")
    os.remove("/tmp/fill")
    return {"outcome": outcome, "written": written, "size": stats.f_blocks * stats.f_frsize}

def runtime_api(event, context):
    return os.environ["AWS_LAMBDA_RUNTIME_API"]

def knock(event, context):
    """Send a harmless request to a Runtime API and report what came back."""
    address = event["address"]
    if address == "self":
        address = os.environ["AWS_LAMBDA_RUNTIME_API"]
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /2018-06-01/runtime/nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = sock.recv(200)
    except OSError as error:
        return "error: " + errno.errorcode.get(error.errno, str(error.errno))
    return reply.split(b"\r\n")[0].decode() or "closed"

def write_task(event, context):
    try:
        open("/var/task/new-file", "w").close()
    except OSError as error:
        outcome = errno.errorcode.get(error.errno, str(error.errno))
    else:
        outcome = "written"
    return {
        "outcome": outcome,
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "code_here": os.path.exists("/var/task/app.py"),
        "cwd": os.getcwd(),
    }

def uid(event, context):
    return os.getuid()

def identity(event, context):
    return {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "hostname": socket.gethostname(),
        "namespaces": {kind: os.readlink("/proc/self/ns/" + kind) for kind in event["kinds"]},
        "processes": sorted(int(name) for name in os.listdir("/proc") if name.isdigit()),
    }
'''

NAMESPACES = ["pid", "mnt", "ipc", "uts", "cgroup"]


@pytest.fixture(scope="module")
def isolated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    if os.environ.get("LAMINA_ISOLATION") == "process":
        pytest.skip("LAMINA_ISOLATION=process: testing the process backend deliberately")
    # isolation=namespace makes the server refuse to start (and say why) where it cannot.
    data = tmp_path_factory.mktemp("isolation") / "data"
    instance = LaminaServer(data, env={"LAMINA_ISOLATION": "namespace"}).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(isolated_server: LaminaServer) -> Iterator[Any]:
    lambda_client = isolated_server.client("lambda")
    yield lambda_client
    lambda_client.close()


@pytest.fixture
def make_function(client: Any, unique_name: Callable[[str], str]) -> Callable[..., str]:
    def make(handler: str, files: dict[str, str] | None = None, **overrides: Any) -> str:
        name = unique_name("iso")
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler=f"app.{handler}",
            Code={"ZipFile": make_zip({"app.py": CODE, **(files or {})})},
            **overrides,
        )
        return name

    return make


def test_function_cannot_read_the_data_directory_or_other_functions_code(
    client: Any, make_function: Callable[..., str], isolated_server: LaminaServer
) -> None:
    owner = make_function("probe", files={"secret.txt": "other function's secret"})
    assert invoke(client, owner, {"paths": ["/var/task/secret.txt"]}) == {
        "/var/task/secret.txt": "other function's secret"
    }
    prober = make_function("probe")
    data_dir = isolated_server.data_dir.resolve()
    code_dirs = [str(path) for path in (data_dir / "artifacts" / "code").iterdir()]
    secret_files = [str(Path(path) / "secret.txt") for path in code_dirs]
    assert any(Path(path).exists() for path in secret_files)  # the host can see them
    paths = [str(data_dir), str(data_dir.parent), *code_dirs, *secret_files, "/work", "/home"]
    seen = invoke(client, prober, {"paths": [*paths, "/root"]})
    for path in paths:
        assert seen[path] in ("ENOENT", "EACCES"), (path, seen[path])
    # Home directories show only the interpreter installations the runtime runs from.
    assert seen["/root"] in ("ENOENT", [".pyenv"]), seen["/root"]


def test_tmp_persists_within_an_environment_and_is_private_to_it(
    client: Any, make_function: Callable[..., str]
) -> None:
    first = make_function("remember")
    second = make_function("remember")
    assert invoke(client, first, {"secret": "first-secret"})["count"] == 1
    assert invoke(client, first)["count"] == 2
    other = invoke(client, second)
    assert other == {"count": 1, "tmp": ["counter"]}


def test_tmp_is_sized_to_ephemeral_storage_and_full_means_enospc(
    client: Any, make_function: Callable[..., str]
) -> None:
    # /tmp is memory-backed and counts towards MemorySize, so give memory room to spare.
    # Filling it takes 0.3 to 0.5 s alone; beside the suite's other servers and workers,
    # which outweigh the environments' parent cgroup, more than the default 3 s timeout.
    name = make_function("fill", MemorySize=1024, Timeout=60, EphemeralStorage={"Size": 512})
    result = invoke(client, name, {"limit": 600 << 20})
    assert result["outcome"] == "ENOSPC"
    assert result["size"] == 512 << 20
    assert (500 << 20) <= result["written"] <= (512 << 20)
    again = invoke(client, name, {"limit": 1 << 20})
    assert again["outcome"] == "no error"


def test_environment_cannot_reach_another_environments_runtime_api(
    client: Any, make_function: Callable[..., str]
) -> None:
    target = make_function("runtime_api")
    intruder = make_function("knock")
    target_address = invoke(client, target)  # its environment stays warm, waiting for events
    # Each Runtime API listens inside its environment's own network namespace, where AWS has
    # it: the target's address, dialled from another environment, leads to that one's own.
    # (That environments cannot reach each other at all: test_network_isolation.)
    assert target_address == "127.0.0.1:9001"
    assert invoke(client, intruder, {"address": target_address}) == "HTTP/1.1 404 Not Found"
    assert invoke(client, intruder, {"address": "self"}) == "HTTP/1.1 404 Not Found"
    # And the target environment was not disturbed.
    assert invoke(client, target) == target_address


def test_code_is_read_only_at_var_task(client: Any, make_function: Callable[..., str]) -> None:
    result = invoke(client, make_function("write_task"))
    assert result == {
        "outcome": "EROFS",
        "task_root": "/var/task",
        "code_here": True,
        "cwd": "/var/task",
    }


def test_environment_has_its_own_namespaces_and_runtime_is_pid_1(
    client: Any, make_function: Callable[..., str]
) -> None:
    result = invoke(client, make_function("identity"), {"kinds": NAMESPACES})
    assert result["pid"] == 1
    assert result["uid"] not in {0, os.getuid()}
    for kind in NAMESPACES:
        assert result["namespaces"][kind] != os.readlink(f"/proc/self/ns/{kind}"), kind
    # Only the environment's own processes are visible: not the server, not this test.
    assert result["processes"] == [1]


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                found.append(int(entry.name))
        except FileNotFoundError:
            continue  # it ended while we looked
    return found


def test_environment_cgroup_holds_its_memory_cpu_and_process_limits(
    client: Any, make_function: Callable[..., str]
) -> None:
    uid = invoke(client, make_function("uid", MemorySize=256))
    (pid,) = processes_of(uid)
    hierarchy, _ = locate(
        Path("/proc/self/mountinfo").read_text(), Path(f"/proc/{pid}/cgroup").read_text()
    )
    assert hierarchy is not None
    memory, cpu, pids = (hierarchy.bases[name] for name in ("memory", "cpu", "pids"))
    if hierarchy.version == 1:
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
        # Init ran uncapped; from the first invocation on the group gets 256/1769 of a CPU.
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == str(cpu_quota_us(256))
    else:
        assert (memory / "memory.max").read_text().strip() == str(256 << 20)
        assert (cpu / "cpu.max").read_text().strip() == f"{cpu_quota_us(256)} {CPU_PERIOD_US}"
    assert (pids / "pids.max").read_text().strip() == "1024"


def test_doctor_reports_the_active_isolation(isolated_server: LaminaServer) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lamina", "doctor"],
        env={**os.environ, "LAMINA_ISOLATION": "namespace"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Isolation: namespace backend")
    assert any(line.startswith("  [yes] PID, IPC, UTS and cgroup namespaces") for line in lines)
    assert any(line.startswith("  [yes] memory limit") for line in lines)
    assert any(line.startswith("  [yes] network namespace per environment") for line in lines)
