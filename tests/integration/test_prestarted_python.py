"""Python cold starts served by runtimes started ahead (`lamina.sandbox.prestarted`), over HTTP.

A Python runtime forked from its template before its function was known, and taken all the
way into its sandbox, must end up exactly where a freshly forked one is: its own uid and PID
namespace, its code read-only at /var/task (and layers at /opt), the function's variables
from the first line of its module, its memory limit, and every mount but those two private.
Which runtime served a call is seen from the host: the waiting runtimes are the template's
children that run as an environment's uid and are blocked reading a pipe (their assignment).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lamina.sandbox import cgroups
from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.namespace import UID_BASE, probe
from lamina.sandbox.network.addresses import NETNS_DIR
from lamina.sandbox.prestarted import PER_KIND, REFILL_DELAY_S
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP
from lamina.sandbox.zygote import library_path
from tests.support import netns
from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.prestarting import (
    assert_killed_at_its_memory,
    assert_only_code_follows_host,
    listen_and_abandon,
    one_taken_and_abandoned,
    probe_of,
    ready_after,
    served_by,
    state_of,
    templated_backend,
    uid_of,
)
from tests.support.sandboxes import process_gone
from tests.support.server import LaminaServer, lambda_client_of
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or probe() is not None, reason="the namespace backend needs root"
)

RUNTIME = "python3.12"

# The module's first lines see the function's variables, as in a fresh runtime.
PROBE = r"""
import json, os, sys
AT_IMPORT = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
CWD_AT_IMPORT = os.getcwd()
TMP_AT_IMPORT = sorted(os.listdir("/tmp"))
MODULES_AT_IMPORT = sorted(sys.modules)
PATH_AT_IMPORT = list(sys.path)
CACHED_AT_IMPORT = sorted(sys.path_importer_cache)


def attempt(act):
    try:
        return act()
    except OSError as error:
        return error.errno


def write(path):
    with open(path, "w") as target:
        target.write("x")
    return "written"


def probe(event, context):
    links = []
    for name in sorted(os.listdir("/proc/self/fd")):
        target = attempt(lambda: os.readlink("/proc/self/fd/" + name))
        # What each descriptor is (a pipe, a socket, ...), without inode numbers.
        links.append(str(target).split("[")[0])
    with open("/proc/self/mountinfo") as mountinfo:
        mounts = mountinfo.read().strip().splitlines()
    import snapshot_restore_py

    try:
        import shared
        where = shared.where
    except ImportError:
        where = None
    return {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "atImport": AT_IMPORT,
        "cwdAtImport": CWD_AT_IMPORT,
        "tmpAtImport": TMP_AT_IMPORT,
        "modulesAtImport": MODULES_AT_IMPORT,
        "pathAtImport": PATH_AT_IMPORT,
        "cachedAtImport": CACHED_AT_IMPORT,
        "task": sorted(os.listdir(".")),
        "data": open("data.txt").read(),
        "taskWrite": attempt(lambda: write("/var/task/new.txt")),
        "opt": sorted(os.listdir("/opt")),
        "optWrite": attempt(lambda: write("/opt/new.txt")),
        "tmpWrite": attempt(lambda: write("/tmp/new.txt")),
        "env": dict(os.environ),
        "fds": links,
        "mounts": mounts,
        "hooks": snapshot_restore_py.__file__,
        "shared": where,
        "functionName": context.function_name,
        **carried(),
    }


def carried():
    import resource, signal
    mask = os.umask(0o022)
    os.umask(mask)
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_STACK", "RLIMIT_FSIZE")
    }
    signals = {
        name: str(signal.getsignal(getattr(signal, name)))
        for name in ("SIGINT", "SIGTERM", "SIGPIPE", "SIGCHLD", "SIGHUP", "SIGUSR1")
    }
    return {
        "umask": mask,
        "limits": limits,
        "signals": signals,
        "writesBytecode": not sys.dont_write_bytecode,
        "flags": str(sys.flags),
    }


def eat(event, context):
    print("uid %d" % os.getuid())
    blocks = [bytearray(b"\x01" * (16 * 1024 * 1024)) for _ in range(64)]
    return len(blocks)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    instance = LaminaServer(tmp_path_factory.mktemp("prestarted-python") / "data").start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(server: LaminaServer) -> Iterator[Any]:
    yield from lambda_client_of(server)


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def templates(server: LaminaServer) -> set[int]:
    """The server's template processes."""
    assert server.process is not None
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ours = _parent_of(int(entry.name)) == server.process.pid
            if ours and b"zygote.py" in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def waiting_runtimes(server: LaminaServer, memory_mb: int = 128) -> set[int]:
    """Python runtimes started ahead, of the kind with `memory_mb`, that wait for a function:
    the templates' children that run as an environment's uid (ready children are still root),
    are blocked reading a pipe (an environment waits on its Runtime API's socket), and are
    in a cgroup limited to that memory."""
    parents = templates(server)
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if _parent_of(pid) not in parents or uid_of(pid) < UID_BASE:
                continue
            blocked = (entry / "wchan").read_text().endswith("pipe_read")  # anon_pipe_read: 6.16+
            if blocked and _memory_limit_mb(pid) == memory_mb:
                found.add(pid)
        except OSError:
            continue
    return found


def _memory_limit_mb(pid: int) -> int | None:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" or "memory" in controllers.split(","):
            root = "/sys/fs/cgroup" if hierarchy == "0" else "/sys/fs/cgroup/memory"
            name = "memory.max" if hierarchy == "0" else "memory.limit_in_bytes"
            limit = (Path(root + path) / name).read_text().strip()
            return None if limit == "max" else int(limit) // (1024 * 1024)
    return None


def create(client: Any, name: str, handler: str = "index.probe", **overrides: Any) -> str:
    client.create_function(
        FunctionName=name,
        Runtime=RUNTIME,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": make_zip({"index.py": PROBE, "data.txt": name})},
        **overrides,
    )
    return name


def test_a_python_runtime_started_ahead_is_sandboxed_as_a_fresh_one(
    server: LaminaServer, client: Any
) -> None:
    # A kind of its own (nothing else runs at 256 MB here): its first cold start is fresh,
    # whatever ran before it in this module.
    fresh = probe_of(client, create(client, "fresh", MemorySize=256))
    waiting = ready_after(client, create(client, "fills"), lambda: waiting_runtimes(server))
    name = create(client, "ahead", Environment={"Variables": {"GREETING": "hello"}})
    report = probe_of(client, name)
    assert served_by(waiting, report)
    assert not served_by(waiting, fresh)
    # Its own uid, process 1 of its PID namespace, in its code's directory from the start.
    assert report["pid"] == 1
    assert report["uid"] >= UID_BASE
    assert report["uid"] != fresh["uid"]
    assert report["cwd"] == report["cwdAtImport"] == "/var/task"
    # What the process carries from its template: the same as a fresh runtime's.
    for carried in ("umask", "limits", "signals", "writesBytecode", "flags"):
        assert report[carried] == fresh[carried], carried
    # The function's variables from its module's first line, and only its own.
    assert report["atImport"] == report["functionName"] == name
    assert report["env"]["GREETING"] == "hello"
    assert set(report["env"]) - {"GREETING"} == set(fresh["env"])
    assert report["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert report["env"]["AWS_LAMBDA_RUNTIME_API"] == fresh["env"]["AWS_LAMBDA_RUNTIME_API"]
    # Its code, through relative paths, read-only; /opt empty and read-only; /tmp its own.
    assert report["task"] == ["data.txt", "index.py"]
    assert report["data"] == name
    assert report["taskWrite"] == fresh["taskWrite"]
    assert report["optWrite"] == fresh["optWrite"]
    assert report["opt"] == fresh["opt"] == []
    assert report["tmpWrite"] == fresh["tmpWrite"] == "written"
    # Nothing is left of its rehearsal: /tmp is empty, the modules, import path and path
    # finders are a fresh runtime's.
    assert report["tmpAtImport"] == fresh["tmpAtImport"] == []
    assert report["modulesAtImport"] == fresh["modulesAtImport"]
    assert report["pathAtImport"] == fresh["pathAtImport"]
    assert report["cachedAtImport"] == fresh["cachedAtImport"]
    # The runtime's modules where a fresh runtime finds them.
    assert report["hooks"] == fresh["hooks"]
    assert report["hooks"].startswith("/var/runtime/")
    # Its assignment and waiting pipes are closed: it holds what a fresh one holds, and
    # nothing of its template's (its pidfd, say).
    assert report["fds"] == fresh["fds"]
    assert "anon_inode:" not in report["fds"]
    assert_only_code_follows_host(report["mounts"])


def test_layers_reach_a_python_runtime_started_ahead(server: LaminaServer, client: Any) -> None:
    layer = client.publish_layer_version(
        LayerName="shared-python",
        Content={"ZipFile": make_zip({"python/shared.py": "where = 1\n"})},
    )
    waiting = ready_after(client, create(client, "layers-first"), lambda: waiting_runtimes(server))
    report = probe_of(client, create(client, "layers-second", Layers=[layer["LayerVersionArn"]]))
    assert served_by(waiting, report)
    assert report["opt"] == ["python"]
    assert report["shared"] == 1


def test_a_python_runtime_started_ahead_is_held_to_its_memory(
    server: LaminaServer, client: Any
) -> None:
    waiting = ready_after(client, create(client, "memory-first"), lambda: waiting_runtimes(server))
    uids = {uid_of(pid) for pid in waiting}
    name = create(client, "memory-second", handler="index.eat", Timeout=60)
    assert_killed_at_its_memory(client, name, uids)


def test_a_python_runtime_that_died_waiting_is_passed_over(
    server: LaminaServer, client: Any
) -> None:
    waiting = ready_after(client, create(client, "killed-first"), lambda: waiting_runtimes(server))
    for pid in waiting:
        os.kill(pid, signal.SIGKILL)
    # Dead, not dying: a runtime killed as its function is handed over fails that start, as
    # a fresh one killed during its init would.
    wait_until(lambda: all(state_of(pid) in {"Z", None} for pid in waiting), timeout=10)
    report = probe_of(client, create(client, "killed-second"))
    assert not served_by(waiting, report)
    assert report["data"] == "killed-second"
    # The kind fills again.
    wait_until(lambda: len(waiting_runtimes(server) - waiting) >= PER_KIND, timeout=30)


def test_a_burst_beyond_the_runtimes_started_ahead_starts_the_rest_afresh(
    server: LaminaServer, client: Any
) -> None:
    waiting = ready_after(client, create(client, "burst-first"), lambda: waiting_runtimes(server))
    names = [create(client, f"burst-{index}") for index in range(3 * PER_KIND)]
    with ThreadPoolExecutor(len(names)) as pool:
        reports = list(pool.map(lambda name: probe_of(client, name), names))
    assert [report["data"] for report in reports] == names
    assert [report["atImport"] for report in reports] == names
    assert len({report["uid"] for report in reports}) == len(names)
    taken = [report for report in reports if served_by(waiting, report)]
    assert 1 <= len(taken) <= PER_KIND


# ----------------------------------------------------------------- the backend on its own


def python_spec(tmp_path: Path) -> SandboxSpec:
    """A Python environment as the invoke service asks for one (the code laid out as the
    artifact cache lays it out), for the backend on its own."""
    task_root = tmp_path / "artifacts" / "code" / "python"
    task_root.mkdir(parents=True, exist_ok=True)
    (task_root / "index.py").write_text("def handler(event, context):\n    return None\n")
    return SandboxSpec(
        command=(sys.executable, "-u", str(PYTHON_BOOTSTRAP)),
        environment={
            "LAMBDA_TASK_ROOT": str(task_root),
            "_HANDLER": "index.handler",
            # As the invoke service sets it: a template forks such a runtime.
            "LD_LIBRARY_PATH": library_path(str(task_root), "/opt"),
        },
        task_root=task_root,
        opt_dir=None,
        memory_mb=128,
        ephemeral_mb=64,
        scratch_root=tmp_path / "environments" / uuid.uuid4().hex,
    )


def own_waiting_runtimes() -> set[int]:
    """Python runtimes started ahead by this process's templates that wait for a function."""
    found = set()
    for template in own_templates():
        for pid in _children(template):
            try:
                blocked = Path(f"/proc/{pid}/wchan").read_text().endswith("pipe_read")
                if blocked and uid_of(pid) >= UID_BASE:
                    found.add(pid)
            except OSError:
                continue
    return found


def own_templates() -> list[int]:
    """The templates this process started (not the module's server's, say)."""
    found = []
    for pid in _children(os.getpid()):
        with contextlib.suppress(OSError):
            if b"zygote.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def _children(pid: int) -> list[int]:
    found = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.extend(map(int, listing.read_text().split()))
    return found


def code_points_of_this_process() -> Path:
    return Path("/run/lamina/prestarted") / str(os.getpid())


def test_a_python_runtime_taken_for_an_environment_that_never_starts_is_given_back(
    tmp_path: Path,
) -> None:
    scenario = one_taken_and_abandoned(lambda: python_spec(tmp_path), own_waiting_runtimes)
    waited, gone = asyncio.run(scenario)
    # That one ends (and what it held is released as an environment's is).
    assert len(gone) == 1, (waited, gone)
    assert not code_points_of_this_process().exists()


@pytest.mark.parametrize("network", [False, True], ids=["host-network", "own-network"])
@pytest.mark.parametrize("after_s", [REFILL_DELAY_S, REFILL_DELAY_S + 0.002, 0.5])
def test_a_backend_closed_while_python_runtimes_start_ahead_leaves_nothing(
    tmp_path: Path, after_s: float, network: bool
) -> None:
    """Closed around the moment the kind's runtimes start being made (the refill is due
    REFILL_DELAY_S after the first environment), or once they wait: no process, code point,
    cgroup or network namespace is left, nor an unclosed descriptor or an unwaited process
    (the warnings pytest turns into errors)."""
    forked: list[int] = []
    prefixes: list[tuple[str, str]] = []
    held = netns.held_by_this_process()

    async def scenario() -> None:
        async with templated_backend(network) as backend:
            if backend.network is not None:
                plan = backend.network.plan
                prefixes.append((plan.netns_prefix, plan.interface_prefix))
            await listen_and_abandon(backend, python_spec(tmp_path))
            await asyncio.sleep(after_s)
            forked.extend(pid for template in own_templates() for pid in _children(template))

    asyncio.run(scenario())
    assert not code_points_of_this_process().exists()
    # Namespaces are held by descriptor alone: none is left held, and none is named.
    assert netns.held_by_this_process() <= held
    for prefix, interfaces in prefixes:
        assert not [name for name in os.listdir(NETNS_DIR) if name.startswith(prefix)]
        assert not netns.host_links(interfaces)
    # Killed, or told to end by their closed sockets: each ends within moments.
    wait_until(
        lambda: all(process_gone(pid) or state_of(pid) == "Z" for pid in forked),
        timeout=10,
        message=lambda: f"still running: {[pid for pid in forked if not process_gone(pid)]}",
    )
    assert not own_prestarted_groups()


def own_prestarted_groups() -> list[str]:
    """The groups of runtimes this process started ahead, listed under its own parent group
    in each hierarchy, not found by walking them all: other workers' groups come and go."""
    hierarchy, _ = cgroups.locate(
        Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text()
    )
    assert hierarchy is not None
    found = []
    for base in set(hierarchy.bases.values()):
        with contextlib.suppress(FileNotFoundError):
            found += [
                name
                for name in os.listdir(base / f"lamina-{os.getpid()}")
                if name.startswith(f"prestarted-{os.getpid()}-")
            ]
    return found
