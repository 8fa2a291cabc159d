"""Node cold starts served by runtimes started ahead (`lamina.sandbox.prestarted`), over HTTP.

A runtime started before its function was known must end up exactly where a freshly started
one is: its own uid and PID namespace, its code read-only at /var/task (and layers at /opt),
the function's variables and nothing else, its memory limit, and every mount but those two
private. Which runtime served a call is seen from the host: the waiting runtimes are the
server's children whose start-up environment names an assignment pipe.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.namespace import UID_BASE, probe
from lamina.sandbox.prestarted import ASSIGNMENT_VARIABLE, PER_KIND
from lamina.sandbox.runtime_files import NODE_BOOTSTRAP
from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, call
from tests.support.prestarting import (
    assert_killed_at_its_memory,
    assert_only_code_follows_host,
    one_taken_and_abandoned,
    probe_of,
    ready_after,
    served_by,
    state_of,
    uid_of,
)
from tests.support.server import LaminaServer, lambda_client_of
from tests.support.waiting import wait_until

_REGISTRY = RuntimeRegistry()
RUNTIME = next(
    (name for name in ("nodejs20.x", "nodejs22.x", "nodejs18.x") if _REGISTRY.interpreter(name)),
    None,
)
pytestmark = [
    pytest.mark.skipif(RUNTIME is None, reason="no Node.js 18, 20 or 22 on this host"),
    pytest.mark.skipif(
        os.geteuid() != 0 or probe() is not None, reason="the namespace backend needs root"
    ),
]

PROBE = r"""
const fs = require('node:fs');
const attempt = (act) => {
  try {
    return act();
  } catch (error) {
    return error.code;
  }
};
exports.probe = async () => ({
  pid: process.pid,
  uid: process.getuid(),
  cwd: process.cwd(),
  task: fs.readdirSync('.').sort(),
  data: fs.readFileSync('data.txt', 'utf8'),
  taskWrite: attempt(() => fs.writeFileSync('/var/task/new.txt', 'x') ?? 'written'),
  opt: fs.readdirSync('/opt').sort(),
  optWrite: attempt(() => fs.writeFileSync('/opt/new.txt', 'x') ?? 'written'),
  env: process.env,
  // What each descriptor is (a pipe, a socket, ...), without inode numbers.
  fds: fs
    .readdirSync('/proc/self/fd')
    .map((fd) => attempt(() => fs.readlinkSync(`/proc/self/fd/${fd}`).replace(/\[\d+\]/, ''))),
  mounts: fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n'),
  headerSize: require('node:http').maxHeaderSize,
  shared: attempt(() => require('shared').where),
});
exports.eat = async () => {
  console.log(`uid ${process.getuid()}`);
  const blocks = [];
  for (let index = 0; index < 64; index += 1) blocks.push(Buffer.alloc(16 * 1024 * 1024, 1));
  return blocks.length;
};
"""


SHARED_MODULE = "exports.where = 1;"
HEADER_SIZE_OPTION = "--max-http-header-size=12345"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    instance = LaminaServer(tmp_path_factory.mktemp("prestarted") / "data").start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(server: LaminaServer) -> Iterator[Any]:
    yield from lambda_client_of(server)


def unassigned_runtimes(server: LaminaServer, options: str | None = None) -> dict[int, bool]:
    """The server's children that are runtimes started ahead and not yet given a function
    (they still hold their assignment pipe), and whether each is blocked reading it (else it
    is still starting). Their start-up environment, which /proc shows, names the pipe, and
    tells their kind: here, the NODE_OPTIONS they started with (`options`; None: none)."""
    assert server.process is not None
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
            waits_on = (entry / "wchan").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        prefix = f"{ASSIGNMENT_VARIABLE}=".encode()
        pipe = [item.removeprefix(prefix).decode() for item in environ if item.startswith(prefix)]
        started_with = [item for item in environ if item.startswith(b"NODE_OPTIONS=")]
        wanted = [f"NODE_OPTIONS={options}".encode()] if options is not None else []
        if parent != server.process.pid or not pipe or started_with != wanted:
            continue
        try:
            holds_pipe = os.readlink(entry / "fd" / pipe[0]).startswith("pipe:")
        except OSError:
            holds_pipe = False
        if holds_pipe:
            found[int(entry.name)] = waits_on.endswith("pipe_read")  # anon_pipe_read: 6.16+
    return found


def waiting_runtimes(server: LaminaServer, options: str | None = None) -> set[int]:
    """The runtimes started ahead of a kind that wait for a function, once none is still
    starting (else empty): then the next cold start of that kind takes one of these."""
    runtimes = unassigned_runtimes(server, options)
    return set(runtimes) if all(runtimes.values()) else set()


def create(client: Any, name: str, handler: str = "index.probe", **overrides: Any) -> str:
    client.create_function(
        FunctionName=name,
        Runtime=RUNTIME,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": make_zip({"index.js": PROBE, "data.txt": name})},
        **overrides,
    )
    return name


def test_a_runtime_started_ahead_is_sandboxed_as_a_fresh_one(
    server: LaminaServer, client: Any
) -> None:
    fresh = probe_of(client, create(client, "fresh"))
    waiting = ready_after(client, create(client, "fills"), lambda: waiting_runtimes(server))
    name = create(client, "ahead")
    report = probe_of(client, name)
    assert served_by(waiting, report)
    assert not served_by(waiting, fresh)
    # Its own uid, process 1 of its PID namespace, in its code's directory.
    assert report["pid"] == 1
    assert report["uid"] >= UID_BASE
    assert report["uid"] != fresh["uid"]
    assert report["cwd"] == "/var/task"
    # The function's code, read through relative paths, read-only; /opt empty and read-only.
    assert report["task"] == ["data.txt", "index.js"]
    assert report["data"] == name
    assert report["taskWrite"] == "EROFS"
    assert report["opt"] == []
    assert report["optWrite"] == fresh["optWrite"] == "EROFS"
    # The function's variables only: none of the runtime's start-up, none of another's.
    assert ASSIGNMENT_VARIABLE not in report["env"]
    assert report["env"]["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert set(report["env"]) == set(fresh["env"])
    assert report["env"]["AWS_LAMBDA_RUNTIME_API"] == fresh["env"]["AWS_LAMBDA_RUNTIME_API"]
    # The assignment pipe is closed: the runtime holds what a fresh one holds.
    assert sorted(report["fds"]) == sorted(fresh["fds"])
    assert_only_code_follows_host(report["mounts"])


def test_start_up_variables_make_a_kind_of_their_own(server: LaminaServer, client: Any) -> None:
    options: dict[str, Any] = {"Environment": {"Variables": {"NODE_OPTIONS": HEADER_SIZE_OPTION}}}
    waiting = ready_after(
        client,
        create(client, "options-first", **options),
        lambda: waiting_runtimes(server, HEADER_SIZE_OPTION),
    )
    report = probe_of(client, create(client, "options-second", **options))
    assert served_by(waiting, report)
    assert report["headerSize"] == 12345
    # A runtime of the default kind never had the option.
    default = probe_of(client, create(client, "options-none"))
    assert default["headerSize"] != 12345


def test_layers_reach_a_runtime_started_ahead(server: LaminaServer, client: Any) -> None:
    layer = client.publish_layer_version(
        LayerName="shared-modules",
        Content={
            "ZipFile": make_zip({"nodejs/node_modules/shared/index.js": "exports.where = 1;"})
        },
    )
    waiting = ready_after(client, create(client, "layers-first"), lambda: waiting_runtimes(server))
    report = probe_of(client, create(client, "layers-second", Layers=[layer["LayerVersionArn"]]))
    assert served_by(waiting, report)
    assert report["opt"] == ["nodejs"]
    assert report["shared"] == 1
    assert report["optWrite"] == "EROFS"


def test_a_runtime_started_ahead_is_held_to_its_memory(server: LaminaServer, client: Any) -> None:
    waiting = ready_after(client, create(client, "memory-first"), lambda: waiting_runtimes(server))
    uids = {uid_of(pid) for pid in waiting}
    name = create(client, "memory-second", handler="index.eat", Timeout=60)
    assert_killed_at_its_memory(client, name, uids)


def test_a_runtime_that_died_waiting_is_passed_over(server: LaminaServer, client: Any) -> None:
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


def code_points() -> list[str]:
    """Mounts under the directory the servers' code points are made in (the directory's
    own mount, made once, is not among them)."""
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in mountinfo if "/prestarted/" in line.split()[4]]


# Any server starting on the host removes a crashed one's mounts, before this test looks.
@pytest.mark.host_exclusive
def test_nothing_is_left_once_the_server_stops_or_after_a_crash(tmp_path: Path) -> None:
    crashed = LaminaServer(tmp_path / "crashed").start()
    try:
        lambda_client = crashed.client("lambda")
        ready_after(
            lambda_client, create(lambda_client, "crash-first"), lambda: waiting_runtimes(crashed)
        )
        lambda_client.close()
        assert crashed.process is not None
        own = f"/prestarted/{crashed.process.pid}/"
        assert any(own in point for point in code_points())
    finally:
        crashed.kill()
    # A crash leaves the mounts behind; the next server removes them.
    assert any(own in point for point in code_points())
    following = LaminaServer(tmp_path / "following").start()
    try:
        assert not any(own in point for point in code_points())
        lambda_client = following.client("lambda")
        runtimes = ready_after(
            lambda_client, create(lambda_client, "stop-first"), lambda: waiting_runtimes(following)
        )
        lambda_client.close()
        assert following.process is not None
        own = f"/prestarted/{following.process.pid}/"
    finally:
        following.stop()
    assert not any(own in point for point in code_points())
    assert not any(Path(f"/proc/{pid}").exists() for pid in runtimes)


NEEDED_C = "int lamina_needed(void) { return 42; }\n"
# A shared object that needs libneeded.so: loading it proves the loader found that library
# on LD_LIBRARY_PATH (it is no Node addon, so Node then says it did not self-register).
ADDON_C = "int lamina_needed(void);\nint lamina_addon(void) { return lamina_needed(); }\n"


def compiled(tmp_path: Path) -> tuple[bytes, bytes]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a shared library")
    (tmp_path / "needed.c").write_text(NEEDED_C)
    (tmp_path / "addon.c").write_text(ADDON_C)
    needed, addon = tmp_path / "libneeded.so", tmp_path / "addon.node"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", needed, tmp_path / "needed.c"], check=True)
    link = [f"-L{tmp_path}", "-lneeded"]
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", addon, tmp_path / "addon.c", *link], check=True
    )
    return needed.read_bytes(), addon.read_bytes()


LOADER = """
exports.handler = async () => {
  try {
    process.dlopen({ exports: {} }, '/var/task/addon.node');
    return { uid: process.getuid(), loaded: 'loaded' };
  } catch (error) {
    return { uid: process.getuid(), loaded: error.message };
  }
};
"""


def test_libraries_in_layers_are_found_by_a_runtime_started_ahead(
    server: LaminaServer, client: Any, tmp_path: Path
) -> None:
    # LD_LIBRARY_PATH names /opt/lib and /var/task/lib; the loader reads it as the runtime
    # starts, when neither has arrived yet, and must still search them once they have.
    needed, addon = compiled(tmp_path)
    layer = client.publish_layer_version(
        LayerName="native", Content={"ZipFile": make_zip({"lib/libneeded.so": needed})}
    )
    waiting = ready_after(client, create(client, "native-filler"), lambda: waiting_runtimes(server))
    client.create_function(
        FunctionName="native",
        Runtime=RUNTIME,
        Role=ROLE,
        Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": LOADER, "addon.node": addon})},
        Layers=[layer["LayerVersionArn"]],
    )
    report = probe_of(client, "native")
    assert served_by(waiting, report)
    assert "did not self-register" in report["loaded"], report


PRELOAD = "globalThis.preloadedFor = process.env.AWS_LAMBDA_FUNCTION_NAME;\n"
PRELOADED = "exports.handler = async () => globalThis.preloadedFor ?? 'not preloaded';\n"


def test_a_preload_in_node_options_runs_with_its_function(
    server: LaminaServer, client: Any
) -> None:
    # Code NODE_OPTIONS loads at start-up (--require) is the function's own: a runtime
    # started ahead could not have it, and must not run it without the function's variables.
    variables = {"NODE_OPTIONS": "--require /var/task/preload.js"}
    code = {"ZipFile": make_zip({"index.js": PRELOADED, "preload.js": PRELOAD})}
    for name in ("preload-first", "preload-second", "preload-third"):
        client.create_function(
            FunctionName=name,
            Runtime=RUNTIME,
            Role=ROLE,
            Handler="index.handler",
            Code=code,
            Environment={"Variables": variables},
        )
        response, answer = call(client, name, {})
        assert "FunctionError" not in response, answer
        assert answer == name


def node_spec(tmp_path: Path) -> SandboxSpec:
    """A Node environment as the invoke service asks for one (the code laid out as the
    artifact cache lays it out), for the backend on its own."""
    task_root = tmp_path / "artifacts" / "code" / "node"
    task_root.mkdir(parents=True, exist_ok=True)
    (task_root / "index.js").write_text("exports.handler = async () => null;\n")
    interpreter = _REGISTRY.interpreter(RUNTIME or "")
    assert interpreter is not None
    return SandboxSpec(
        command=(interpreter, str(NODE_BOOTSTRAP)),
        environment={"LAMBDA_TASK_ROOT": str(task_root), "_HANDLER": "index.handler"},
        task_root=task_root,
        opt_dir=None,
        memory_mb=128,
        ephemeral_mb=64,
        scratch_root=tmp_path / "environments" / uuid.uuid4().hex,
    )


def test_a_runtime_taken_for_an_environment_that_never_starts_is_given_back(
    tmp_path: Path,
) -> None:
    def waiting() -> set[int]:
        return {pid for pid, blocked in own_runtimes().items() if blocked}

    scenario = one_taken_and_abandoned(lambda: node_spec(tmp_path), waiting)
    waited, gone = asyncio.run(scenario)
    # That one ends (and what it held is released as an environment's is).
    assert len(gone) == 1, (waited, gone)


def own_runtimes() -> dict[int, bool]:
    """This process's children that are runtimes started ahead, and whether each waits."""
    found = {}
    for child in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in map(int, child.read_text().split()):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                waits_on = Path(f"/proc/{pid}/wchan").read_text()
            except OSError:
                continue
            if f"{ASSIGNMENT_VARIABLE}=".encode() in environ:
                found[pid] = waits_on.endswith("pipe_read")
    return found
