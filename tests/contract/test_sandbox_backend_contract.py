"""The contract every `SandboxBackend` keeps, run against each backend and template variant.

Everything above the sandbox seam (Runtime API, logs, pools) relies on these promises, so a
new backend (or a change to one) must pass the same suite. Each runtime here is Lamina's
Python bootstrap, so the template (zygote) variants really fork from a template; the probe
"function" does its work while the bootstrap imports it, and never talks to a Runtime API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lamina.sandbox.api import Sandbox, SandboxBackend, SandboxSpec
from lamina.sandbox.cgroups import open_manager
from lamina.sandbox.limits import MAX_FILES
from lamina.sandbox.namespace import NamespaceBackend, probe
from lamina.sandbox.network import NetworkOptions
from lamina.sandbox.process import ProcessBackend
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP
from lamina.sandbox.zygote import Templates, ZygoteBackend, library_path
from tests.support.sandboxes import eventually, probe_task_root

KINDS = ["process", "process+template", "namespace", "namespace+template"]
# The process group is all the process backends can kill (see test_kill_reaches_a_child_...).
MiB = 1024 * 1024

# Runs at import time inside the bootstrap: SCENARIO says what to do. Output is flushed per
# line so the test can react to markers while the runtime is still running.
PROBE = r"""
import json, os, resource, subprocess, sys, tempfile, time

def say(*parts):
    print(*parts, flush=True)

scenario = os.environ["SCENARIO"]
if scenario == "identity":
    say("on stdout")
    print("on stderr", file=sys.stderr, flush=True)
    say("ENV", json.dumps(dict(os.environ)))
    say("CWD", os.getcwd(), json.dumps(sorted(os.listdir("."))))
    say("TMP", tempfile.gettempdir())
    say("NOFILE", json.dumps(resource.getrlimit(resource.RLIMIT_NOFILE)))
    names = ("NPROC", "CORE", "MEMLOCK", "STACK", "DATA", "FSIZE")
    limits = {name: resource.getrlimit(getattr(resource, "RLIMIT_" + name)) for name in names}
    say("LIMITS", json.dumps(limits))
    say("MAIN", os.path.basename(sys.modules["__main__"].__file__))
    sys.exit(7)
elif scenario == "children":
    token = os.environ["TOKEN"]
    # Both children keep the output pipe open: it reaches EOF only once every one is gone.
    subprocess.Popen(["sleep", token])
    subprocess.Popen(["sleep", token], start_new_session=bool(os.environ.get("ESCAPE")))
    say("READY")
    time.sleep(120)
elif scenario == "orphans":
    token = os.environ["TOKEN"]
    subprocess.Popen(["sleep", token], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.Popen(["sleep", token], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    say("READY")
    os._exit(3)  # the runtime ends on its own, leaving its children
elif scenario == "memory":
    block = b"\x01" * (48 * 1024 * 1024)  # written, so every page is resident
    say("ALLOCATED")
    time.sleep(120)
elif scenario == "exhaust":
    blocks = []
    try:
        for _ in range(64):
            blocks.append(b"\x01" * (16 * 1024 * 1024))
    except MemoryError:
        blocks.clear()
        say("MEMORY_ERROR")
        sys.exit(3)
    say("ALLOCATED", len(blocks) * 16)
elif scenario == "disk":
    with open(os.path.join(tempfile.gettempdir(), "marker"), "w") as marker:
        marker.write("left behind?")
    try:
        with open(os.path.join(tempfile.gettempdir(), "big"), "wb") as big:
            for _ in range(32):
                big.write(b"\x01" * (1024 * 1024))
                big.flush()
    except OSError as error:
        say("DISK_FULL", error.errno)
    else:
        say("WROTE_32_MIB")
    say("READY")
    time.sleep(120)
elif scenario == "exit":
    say("EXITING")
    sys.exit(int(os.environ["EXIT"]))
elif scenario == "sleep":
    say("READY")
    time.sleep(120)
elif scenario == "dial":
    import socket
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"hello")
        say("DIALED", connection.recv(16).decode())
    os._exit(0)  # before the bootstrap dials the same address for events
"""


def available(kind: str) -> None:
    if not kind.startswith("namespace"):
        return
    why = probe()
    if why is not None:
        if os.environ.get("LAMINA_ISOLATION") == "process" or os.geteuid() != 0:
            pytest.skip(f"the namespace backend cannot run on this host: {why}")
        pytest.fail(f"the namespace backend is unavailable here although we are root: {why}")


@contextlib.asynccontextmanager
async def open_backend(kind: str) -> AsyncIterator[SandboxBackend]:
    """The backend as `build_engine` wires it (templates included), closed afterwards."""
    backend: SandboxBackend
    templates: Templates | None = None
    if kind.startswith("namespace"):
        cgroups, reason = open_manager()
        # Network isolation as `lamina serve` has it, with a small pool.
        namespace = NamespaceBackend(cgroups, reason, network=NetworkOptions(pool_size=2))
        if kind.endswith("+template"):
            templates = Templates(sandboxed=True)
            namespace.use_templates(templates)
        backend = namespace
    else:
        backend = ProcessBackend()
        if kind.endswith("+template"):
            backend = ZygoteBackend(backend)
    try:
        yield backend
    finally:
        if templates is not None:
            templates.close()
        backend.close()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    available(value)
    return value


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    return probe_task_root(tmp_path, PROBE)


def make_spec(
    task_root: Path,
    scenario: str,
    memory_mb: int = 128,
    ephemeral_mb: int = 64,
    variables: dict[str, str] | None = None,
) -> SandboxSpec:
    environment = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        # As the invoke service sets it: a template forks such a runtime.
        "LD_LIBRARY_PATH": library_path(str(task_root), "/opt"),
        "STAGE": "contract",
        "SCENARIO": scenario,
        "_HANDLER": "probe.handler",
        "LAMBDA_TASK_ROOT": str(task_root),
        # Never dialled: each scenario ends (or is killed) before the bootstrap asks for work.
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9",
        **(variables or {}),
    }
    return SandboxSpec(
        command=(sys.executable, "-u", str(PYTHON_BOOTSTRAP)),
        environment=environment,
        task_root=task_root,
        opt_dir=None,
        memory_mb=memory_mb,
        ephemeral_mb=ephemeral_mb,
        scratch_root=task_root.parents[2] / "environments" / uuid.uuid4().hex,
    )


class Output:
    """Collects a sandbox's output as it arrives, until EOF."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._fd = sandbox.output_fd
        self.data = b""
        self.closed = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(self._fd, self._read)

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self.stop()
                return
            self.data += chunk
            self._changed.set()

    def stop(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._fd)
        if not self.closed.done():
            self.closed.set_result(None)
        self._changed.set()

    async def expect(self, marker: bytes, timeout: float = 20) -> None:
        async def seen() -> None:
            while marker not in self.data:
                if self.closed.done():
                    raise AssertionError(f"output ended without {marker!r}: {self.data!r}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(seen(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {marker!r} within {timeout} s: {self.data!r}") from None

    async def eof(self, timeout: float = 10) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            return False
        return True

    def field(self, name: str) -> str:
        for line in self.data.decode().splitlines():
            if line.startswith(name + " "):
                return line[len(name) + 1 :]
        raise AssertionError(f"no {name} line in {self.data!r}")


async def run_until_exit(backend: SandboxBackend, spec: SandboxSpec) -> tuple[int, Output]:
    sandbox = await backend.start(spec)
    output = Output(sandbox)
    try:
        status = await asyncio.wait_for(sandbox.wait(), 30)
        assert await output.eof(), f"output still open after exit: {output.data!r}"
    finally:
        sandbox.kill()
        output.stop()
        sandbox.cleanup()
    return status, output


def processes_with(token: str) -> list[int]:
    """Host pids of live processes whose command line carries `token` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if token.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def kill_processes_with(token: str) -> None:
    """What a failing test left running."""
    for pid in processes_with(token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------- start


def test_start_runs_the_command_with_the_spec_environment_and_cwd(
    kind: str, task_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMINA_CONTRACT_HOST_ONLY", "must not leak")
    spec = make_spec(task_root, "identity")

    async def scenario() -> tuple[int, Output]:
        async with open_backend(kind) as backend:
            return await run_until_exit(backend, spec)

    status, output = asyncio.run(scenario())
    assert status == 7, output.data
    seen = json.loads(output.field("ENV"))
    # Paths may be translated to where the sandbox shows them; other values arrive as given.
    translated = {"LAMBDA_TASK_ROOT", "LD_LIBRARY_PATH"}
    plain = {key: value for key, value in spec.environment.items() if key not in translated}
    assert {key: seen.get(key) for key in plain} == plain
    assert seen["LD_LIBRARY_PATH"] == library_path(seen["LAMBDA_TASK_ROOT"], "/opt")
    # Nothing of the server's own environment; only the private temp dir may be added.
    assert set(seen) - set(spec.environment) <= {"TMPDIR", "LAMINA_TMP_DIR"}
    cwd, listing = output.field("CWD").split(" ", 1)
    assert cwd == seen["LAMBDA_TASK_ROOT"]
    assert "probe.py" in json.loads(listing)


def test_template_variants_fork_from_a_template(kind: str, task_root: Path) -> None:
    async def scenario() -> Output:
        async with open_backend(kind) as backend:
            return (await run_until_exit(backend, make_spec(task_root, "identity")))[1]

    # A forked runtime still runs inside the template's main module; a fresh one runs the
    # bootstrap as its own. Without this the template variants could silently fall back.
    expected = "zygote.py" if kind.endswith("+template") else "bootstrap.py"
    assert asyncio.run(scenario()).field("MAIN") == expected


def test_output_carries_stdout_and_stderr(kind: str, task_root: Path) -> None:
    async def scenario() -> tuple[int, Output]:
        async with open_backend(kind) as backend:
            return await run_until_exit(backend, make_spec(task_root, "identity"))

    _, output = asyncio.run(scenario())
    lines = output.data.decode().splitlines()
    assert "on stdout" in lines
    assert "on stderr" in lines
    assert lines.index("on stdout") < lines.index("on stderr")


def test_wait_returns_the_exit_status(kind: str, task_root: Path) -> None:
    async def scenario() -> list[int]:
        async with open_backend(kind) as backend:
            return [
                (
                    await run_until_exit(
                        backend, make_spec(task_root, "exit", variables={"EXIT": code})
                    )
                )[0]
                for code in ("0", "4")
            ]

    assert asyncio.run(scenario()) == [0, 4]


def test_wait_blocks_until_the_runtime_ends_and_kill_ends_it(kind: str, task_root: Path) -> None:
    async def scenario() -> tuple[bool, int]:
        async with open_backend(kind) as backend:
            sandbox = await backend.start(make_spec(task_root, "sleep"))
            output = Output(sandbox)
            try:
                await output.expect(b"READY")
                waiting = asyncio.ensure_future(sandbox.wait())
                await asyncio.sleep(0.2)
                still_running = not waiting.done()
                sandbox.kill()
                status = await asyncio.wait_for(waiting, 10)
            finally:
                output.stop()
                sandbox.cleanup()
            return still_running, status

    still_running, status = asyncio.run(scenario())
    assert still_running
    assert status == -signal.SIGKILL


def test_describe_names_what_the_backend_provides(kind: str) -> None:
    async def scenario() -> tuple[str, list[tuple[str, bool, str]]]:
        async with open_backend(kind) as backend:
            return backend.name, backend.describe()

    name, features = asyncio.run(scenario())
    assert name.split("+")[0] == kind.split("+", maxsplit=1)[0]
    assert features
    assert all(
        isinstance(feature, str) and isinstance(active, bool) and isinstance(why, str)
        for feature, active, why in features
    )
    assert any(active for _, active, _ in features)


def test_listen_gives_the_runtime_api_socket_the_runtime_reaches(
    kind: str, task_root: Path
) -> None:
    async def scenario() -> tuple[tuple[str, int], bytes, Output]:
        async with open_backend(kind) as backend:
            spec = make_spec(task_root, "dial")
            listener = await backend.listen(spec)
            listener.setblocking(False)
            address = listener.getsockname()[:2]
            runtime_api = {
                **spec.environment,
                "AWS_LAMBDA_RUNTIME_API": f"{address[0]}:{address[1]}",
            }
            sandbox = await backend.start(dataclasses.replace(spec, environment=runtime_api))
            output = Output(sandbox)
            try:
                loop = asyncio.get_running_loop()
                connection, _ = await asyncio.wait_for(loop.sock_accept(listener), 20)
                with connection:
                    greeting = await loop.sock_recv(connection, 16)
                    await loop.sock_sendall(connection, b"welcome")
                    await output.expect(b"DIALED")
                await asyncio.wait_for(sandbox.wait(), 20)
            finally:
                sandbox.kill()
                output.stop()
                sandbox.cleanup()
                listener.close()
            return address, greeting, output

    address, greeting, output = asyncio.run(scenario())
    assert greeting == b"hello"
    assert output.field("DIALED") == "welcome"
    if kind.startswith("namespace"):
        # Inside the environment's own network namespace, where AWS has it.
        assert address == ("127.0.0.1", 9001)
    else:
        assert address[0] == "127.0.0.1"


# ----------------------------------------------------------------------------------- kill


async def _kill_tree(kind: str, task_root: Path, escape: bool) -> tuple[int, bool, list[int]]:
    token = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"
    variables = {"TOKEN": token, **({"ESCAPE": "1"} if escape else {})}
    async with open_backend(kind) as backend:
        sandbox = await backend.start(make_spec(task_root, "children", variables=variables))
        output = Output(sandbox)
        try:
            await output.expect(b"READY")
            assert await eventually(lambda: len(processes_with(token)) == 2)
            sandbox.kill()
            status = await asyncio.wait_for(sandbox.wait(), 10)
            await eventually(lambda: not processes_with(token), timeout=1.5)
            survivors = processes_with(token)
            # The children hold the output pipe open: EOF means every one of them is gone.
            closed = await output.eof(5 if not survivors else 0.1)
        finally:
            output.stop()
            sandbox.cleanup()
            kill_processes_with(token)
    return status, closed, survivors


def test_kill_ends_every_process_of_the_sandbox(kind: str, task_root: Path) -> None:
    status, closed, survivors = asyncio.run(_kill_tree(kind, task_root, escape=False))
    assert status == -signal.SIGKILL
    assert survivors == []
    assert closed


def test_kill_reaches_a_child_that_left_the_process_group(kind: str, task_root: Path) -> None:
    status, closed, survivors = asyncio.run(_kill_tree(kind, task_root, escape=True))
    assert status == -signal.SIGKILL
    assert survivors == []
    assert closed


def test_what_a_runtime_that_ended_leaves_behind_ends_with_its_sandbox(
    kind: str, task_root: Path
) -> None:
    """A runtime that exits on its own, its children still running: once its end is known,
    ending its sandbox (as an environment does) ends them too, whoever reaped it."""
    token = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"

    async def scenario() -> tuple[int, list[int]]:
        async with open_backend(kind) as backend:
            sandbox = await backend.start(
                make_spec(task_root, "orphans", variables={"TOKEN": token})
            )
            output = Output(sandbox)
            try:
                await output.expect(b"READY")
                status = await asyncio.wait_for(sandbox.wait(), 10)
                sandbox.kill()
                await eventually(lambda: not processes_with(token), timeout=5)
                return status, processes_with(token)
            finally:
                output.stop()
                sandbox.cleanup()
                kill_processes_with(token)

    status, survivors = asyncio.run(scenario())
    assert status == 3
    assert survivors == []


# ------------------------------------------------------------------------ scratch, memory


def test_cleanup_removes_the_scratch_directory(kind: str, task_root: Path) -> None:
    spec = make_spec(task_root, "disk")

    async def scenario() -> tuple[bool, list[str]]:
        async with open_backend(kind) as backend:
            sandbox = await backend.start(spec)
            output = Output(sandbox)
            try:
                await output.expect(b"READY")
                sandbox.kill()
                await asyncio.wait_for(sandbox.wait(), 10)
                await output.eof()
            finally:
                output.stop()
                sandbox.cleanup()
            root = spec.scratch_root
            # Some backends release what the kernel still holds a moment after the exit.
            gone = await eventually(lambda: not root.exists(), timeout=2)
            left = sorted(str(path.relative_to(root)) for path in root.rglob("*"))
            return gone, left

    gone, left = asyncio.run(scenario())
    # What the runtime wrote to its temp dir (a marker, a file filling the disk) is gone too.
    assert left == []
    assert gone


def test_tmp_dir_is_where_the_runtime_keeps_temporary_files(kind: str, task_root: Path) -> None:
    async def scenario() -> tuple[str, Output]:
        async with open_backend(kind) as backend:
            sandbox = await backend.start(make_spec(task_root, "identity"))
            output = Output(sandbox)
            try:
                await asyncio.wait_for(sandbox.wait(), 30)
                await output.eof()
            finally:
                output.stop()
                sandbox.cleanup()
            return str(sandbox.tmp_dir), output

    tmp_dir, output = asyncio.run(scenario())
    assert output.field("TMP") == tmp_dir


def test_writes_beyond_the_ephemeral_storage_fail(kind: str, task_root: Path) -> None:
    async def scenario() -> Output:
        async with open_backend(kind) as backend:
            sandbox = await backend.start(make_spec(task_root, "disk", ephemeral_mb=8))
            output = Output(sandbox)
            try:
                await output.expect(b"READY")
            finally:
                sandbox.kill()
                await asyncio.wait_for(sandbox.wait(), 10)
                output.stop()
                sandbox.cleanup()
            return output

    output = asyncio.run(scenario())
    assert b"WROTE_32_MIB" not in output.data
    # EFBIG from the file size limit or ENOSPC from a sized tmpfs.
    assert int(output.field("DISK_FULL")) in {27, 28}


def test_peak_memory_is_measured_and_kept_after_exit(kind: str, task_root: Path) -> None:
    async def scenario() -> tuple[int | None, int | None]:
        async with open_backend(kind) as backend:
            sandbox = await backend.start(make_spec(task_root, "memory", memory_mb=256))
            output = Output(sandbox)
            try:
                await output.expect(b"ALLOCATED")
                while_running = sandbox.max_memory_bytes()
                sandbox.kill()
                await asyncio.wait_for(sandbox.wait(), 10)
                after_exit = sandbox.max_memory_bytes()
            finally:
                output.stop()
                sandbox.cleanup()
            return while_running, after_exit

    while_running, after_exit = asyncio.run(scenario())
    assert while_running is not None
    # The probe holds 48 MiB it wrote; the interpreter and its libraries add some tens.
    assert 48 * MiB <= while_running <= 200 * MiB
    assert after_exit is not None
    assert after_exit >= while_running


def test_memory_beyond_the_limit_is_refused_or_killed(kind: str, task_root: Path) -> None:
    async def scenario() -> tuple[int, bool, Output]:
        async with open_backend(kind) as backend:
            sandbox = await backend.start(make_spec(task_root, "exhaust", memory_mb=64))
            output = Output(sandbox)
            try:
                status = await asyncio.wait_for(sandbox.wait(), 30)
                await output.eof()
                oom = sandbox.oom_killed()
            finally:
                sandbox.kill()
                output.stop()
                sandbox.cleanup()
            return status, oom, output

    status, oom, output = asyncio.run(scenario())
    assert b"ALLOCATED" not in output.data
    # Either allocations fail inside the runtime (an rlimit) or the kernel kills it (a cgroup);
    # oom_killed() must tell the two apart, as the environment reports Runtime.OutOfMemory.
    if b"MEMORY_ERROR" in output.data:
        assert (status, oom) == (3, False)
    else:
        assert (status, oom) == (-signal.SIGKILL, True), output.data


def test_file_descriptors_are_limited_to_lambdas_1024(kind: str, task_root: Path) -> None:
    async def scenario() -> Output:
        async with open_backend(kind) as backend:
            return (await run_until_exit(backend, make_spec(task_root, "identity")))[1]

    output = asyncio.run(scenario())
    assert json.loads(output.field("NOFILE")) == [MAX_FILES, MAX_FILES]


def test_other_limits_are_what_aws_reports_but_where_they_stand_in_for_a_cgroup(
    kind: str, task_root: Path
) -> None:
    async def scenario() -> Output:
        async with open_backend(kind) as backend:
            spec = make_spec(task_root, "identity", memory_mb=128, ephemeral_mb=64)
            return (await run_until_exit(backend, spec))[1]

    limits = json.loads(asyncio.run(scenario()).field("LIMITS"))
    unlimited = resource.RLIM_INFINITY
    assert limits["MEMLOCK"] == [65536, 65536]
    assert limits["STACK"] == [8 * MiB, unlimited]
    if kind.startswith("namespace"):
        # A uid of its own, a memory cgroup (RLIMIT_DATA only without one) and a sized /tmp.
        assert limits["CORE"] == [10240 * MiB, 10240 * MiB]
        assert limits["NPROC"] == [742, 742]
        assert limits["FSIZE"] == [unlimited, unlimited]
        assert limits["DATA"] in ([unlimited, unlimited], [128 * MiB, 128 * MiB])
    else:
        # Nothing else enforces MemorySize and EphemeralStorage for a plain process, and a
        # core file would land in the code's directory on the host.
        assert limits["CORE"] == [0, 10240 * MiB]
        assert limits["DATA"] == [128 * MiB, 128 * MiB]
        assert limits["FSIZE"] == [64 * MiB, 64 * MiB]
        if os.geteuid() == 0:
            assert limits["NPROC"] == [742, 742]


# ------------------------------------------------------------------------- cancelled starts


def uids_running() -> set[int]:
    """The real uids of every live process on the host."""
    uids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                status = (entry / "status").read_text()
                if "\nState:\tZ" not in status:
                    uids.add(int(status.split("\nUid:\t", 1)[1].split("\t", 1)[0]))
    return uids


@pytest.mark.parametrize("kind", ["namespace", "namespace+template"])
def test_a_cancelled_start_gives_back_its_uid_only_once_nothing_runs_as_it(
    kind: str, task_root: Path
) -> None:
    """A start cancelled while its runtime is being forked: the fork goes on, and the uid it
    held must not be free for another environment while anything still runs as it."""
    available(kind)

    async def scenario() -> list[str]:
        outcomes = []
        async with open_backend(kind) as backend:
            assert isinstance(backend, NamespaceBackend)
            pool = backend._uids  # what the next environment's uid is taken from
            taken: list[int] = []
            acquire = pool.acquire

            def recorded() -> int:
                taken.append(acquire())
                return taken[-1]

            pool.acquire = recorded  # type: ignore[method-assign]
            # Cancelled at different points of the start: before, during and after its fork.
            for delay in (0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.02):
                free_before = set(pool._free)
                taken.clear()
                starting = asyncio.ensure_future(backend.start(make_spec(task_root, "sleep")))
                await asyncio.sleep(delay)
                starting.cancel()
                try:
                    sandbox = await starting
                except asyncio.CancelledError:
                    # Whatever the fork got to, it may yet run as the uid: still held.
                    assert not set(taken) & set(pool._free), f"{taken} free at once ({delay})"
                    outcomes.append("cancelled" if taken else "cancelled before a uid")
                else:
                    outcomes.append("started")
                    sandbox.kill()
                    await asyncio.wait_for(sandbox.wait(), 10)
                    sandbox.cleanup()
                deadline = asyncio.get_running_loop().time() + 10
                while True:
                    free = set(pool._free)
                    clash = uids_running() & free
                    assert not clash, f"uid {clash} is free while a process runs as it"
                    if free == free_before:
                        break
                    assert asyncio.get_running_loop().time() < deadline, "uid never given back"
                    await asyncio.sleep(0.001)
        return outcomes

    outcomes = asyncio.run(scenario())
    assert "cancelled" in outcomes, outcomes


def environments_with(variable: str) -> list[int]:
    """Host pids of live processes started with `variable` (NAME=value) in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if variable.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def test_a_start_under_way_when_the_backend_closes_leaves_nothing_running(
    task_root: Path,
) -> None:
    """`close` waits for a spawn under way; the start it belonged to must then end what it
    started rather than hand a runtime to a backend that is gone."""
    available("namespace")
    marker = f"TOKEN={uuid.uuid4().hex}"

    async def scenario() -> BaseException | None:
        cgroups, reason = open_manager()
        backend = NamespaceBackend(cgroups, reason, network=NetworkOptions(pool_size=2))
        spec = make_spec(task_root, "sleep", variables={"TOKEN": marker.split("=")[1]})
        starting = asyncio.ensure_future(backend.start(spec))
        # Until the spawn has gone to its thread (the start's await on it).
        while not backend._spawn_threads._threads and not starting.done():
            await asyncio.sleep(0.0005)
        backend.close()
        try:
            await asyncio.wait_for(starting, 10)
        except RuntimeError as error:
            return error
        return None

    outcome = asyncio.run(scenario())
    assert outcome is not None, "a runtime was handed to a closed backend"
    assert "closed" in str(outcome)
    deadline = time.monotonic() + 10
    while environments_with(marker):
        assert time.monotonic() < deadline, f"still running: {environments_with(marker)}"
        time.sleep(0.01)
