"""Cold starts from a sandboxed template's ready children (`zygote.py`, `READY_CHILDREN`).

A ready child has forked its runtime into a PID namespace of its own before any environment
asked for it; once assigned, it must end up in exactly the sandbox a freshly forked child
builds: the environment's cgroup, uid, root and limits, and nothing of the template's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lamina.sandbox import mounts, zygote
from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.cgroups import open_manager
from lamina.sandbox.namespace import UID_BASE, NamespaceBackend, probe
from lamina.sandbox.network import NetworkOptions
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP
from lamina.sandbox.zygote import READY_CHILDREN, Template, Templates, library_path
from tests.support.sandboxes import eventually, probe_task_root

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or probe() is not None, reason="the namespace backend needs root"
)

# Runs while the bootstrap imports it: what the runtime holds and where it stands.
PROBE = r"""
import json, os, sys
links = {}
for name in os.listdir("/proc/self/fd"):
    try:
        links[name] = os.readlink("/proc/self/fd/" + name)
    except OSError:
        pass
with open("/proc/self/status") as status:
    fields = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
report = {
    "fds": links,
    "uid": fields["Uid"].split(),
    "pid": os.getpid(),
    "hostname": os.uname().nodename,
    "cwd": os.getcwd(),
    "tag": os.environ["TAG"],
    "root": sorted(os.listdir("/")),
}
if os.environ.get("EAT"):
    try:
        block = b"\x01" * (256 * 1024 * 1024)
        report["ate"] = len(block)
    except MemoryError:
        report["ate"] = "MemoryError"
print("REPORT " + json.dumps(report), flush=True)
sys.exit(5)
"""


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    return probe_task_root(tmp_path, PROBE)


def spec(task_root: Path, tag: str, memory_mb: int = 128, **extra: str) -> SandboxSpec:
    return SandboxSpec(
        command=(sys.executable, "-u", str(PYTHON_BOOTSTRAP)),
        environment={
            "PATH": "/usr/bin:/bin",
            # As the invoke service sets it: a template forks such a runtime.
            "LD_LIBRARY_PATH": library_path(str(task_root), "/opt"),
            "TAG": tag,
            "_HANDLER": "probe.handler",
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9",
            **extra,
        },
        task_root=task_root,
        opt_dir=None,
        memory_mb=memory_mb,
        ephemeral_mb=64,
        scratch_root=task_root.parents[2] / "environments" / uuid.uuid4().hex,
    )


@contextlib.asynccontextmanager
async def sandboxed() -> AsyncIterator[tuple[NamespaceBackend, Template]]:
    cgroups, reason = open_manager()
    backend = NamespaceBackend(cgroups, reason, network=NetworkOptions(pool_size=2))
    templates = Templates(sandboxed=True)
    backend.use_templates(templates)
    try:
        yield backend, await templates.get(sys.executable)
    finally:
        templates.close()
        backend.close()


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def namespace_pids(pid: int) -> list[int]:
    """A process's pid in each PID namespace it is in, outermost first."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(value) for value in line.split()[1:]]
    return []


async def ready_children(template: Template) -> list[int]:
    """The template's children once it holds READY_CHILDREN, each process 1 of a PID
    namespace of its own."""
    assert template.pid is not None
    found: list[int] = []

    def full() -> bool:
        nonlocal found
        found = children(template.pid or 0)
        return (
            len(found) == READY_CHILDREN
            and all(namespace_pids(child)[-1] == 1 for child in found)
            and sorted(template.ready_children) == sorted(found)
        )

    assert await eventually(full, timeout=20), found
    return found


async def run(
    backend: NamespaceBackend, sandbox_spec: SandboxSpec
) -> tuple[int, int, dict[str, Any], bool]:
    """Start and collect the probe's report and exit status: (runtime pid, status, report,
    whether the cgroup saw an OOM kill)."""
    sandbox = await backend.start(sandbox_spec)
    output = b""
    try:
        deadline = time.monotonic() + 30
        while True:
            await asyncio.sleep(0.005)
            with contextlib.suppress(BlockingIOError):
                chunk = os.read(sandbox.output_fd, 65536)
                if not chunk:
                    break
                output += chunk
            assert time.monotonic() < deadline, output
        status = await asyncio.wait_for(sandbox.wait(), 30)
        oom = sandbox.oom_killed()
    finally:
        sandbox.kill()
        sandbox.cleanup()
    lines = [line for line in output.decode().splitlines() if line.startswith("REPORT ")]
    report = json.loads(lines[0][len("REPORT ") :]) if lines else {}
    return sandbox.pid, status, report, oom


def test_a_cold_start_takes_a_ready_child_into_the_full_sandbox(task_root: Path) -> None:
    async def scenario() -> tuple[list[int], list[tuple[int, int, dict[str, Any], bool]]]:
        async with sandboxed() as (backend, template):
            ready = await ready_children(template)
            # As many at once as there are ready children: each takes one.
            results = await asyncio.gather(
                *(run(backend, spec(task_root, f"t{index}")) for index in range(READY_CHILDREN))
            )
            return ready, list(results)

    ready, results = asyncio.run(scenario())
    assert sorted(pid for pid, _, _, _ in results) == sorted(ready)
    for index, (_, status, report, _) in enumerate(results):
        assert status == 5
        assert report["tag"] == f"t{index}"
        # Process 1 of its PID namespace, as the environment's uid, in its own root.
        assert report["pid"] == 1
        assert len(set(report["uid"])) == 1 and report["uid"][0] != "0"
        assert report["cwd"] == "/var/task"
        assert "var" in report["root"] and ".old" not in report["root"]
        # The ready children made after others held those others' assignment sockets, and
        # every one held the template's: none of them may reach function code.
        assert not [fd for fd, link in report["fds"].items() if link.startswith("socket:")]
        # Nor the template's pidfd, which they watch until their parent-death signal is set.
        assert not [fd for fd, link in report["fds"].items() if "pidfd" in link]
    uids = {report["uid"][0] for _, _, report, _ in results}
    assert len(uids) == READY_CHILDREN


def pidfds_held() -> set[int]:
    """The processes this process holds a pidfd of."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if "pidfd" in os.readlink(f"/proc/self/fd/{fd}"):
                info = Path(f"/proc/self/fdinfo/{fd}").read_text()
                held.add(int(info.split("\nPid:", 1)[1].split()[0]))
    return held


def test_ready_and_assigned_children_are_held_by_pidfds_until_they_end(task_root: Path) -> None:
    """The server ends a runtime through its pidfd (see `test_template_pid_reuse`): a ready
    child's comes with it, goes with it to its environment, and is let go once it ends."""

    async def scenario() -> tuple[list[int], set[int], int, set[int]]:
        async with sandboxed() as (backend, template):
            ready = await ready_children(template)
            while_ready = pidfds_held()
            pid, status, _, _ = await run(backend, spec(task_root, "t"))
            assert status == 5
            await asyncio.sleep(0)  # the exit's callbacks
            return ready, while_ready, pid, pidfds_held()

    ready, while_ready, pid, after = asyncio.run(scenario())
    assert set(ready) <= while_ready
    assert pid in ready
    assert pid not in after


def test_a_ready_child_is_held_to_its_environments_memory(task_root: Path) -> None:
    async def scenario() -> tuple[int, int, int, bool]:
        async with sandboxed() as (backend, template):
            relay = (await ready_children(template))[0]
            pid, status, _, oom = await run(backend, spec(task_root, "eat", EAT="1"))
            return relay, pid, status, oom

    relay, pid, status, oom = asyncio.run(scenario())
    # 256 MB in a 128 MB environment: the cgroup's OOM killer ends it.
    assert pid == relay
    assert (status, oom) == (-signal.SIGKILL, True)


def test_ready_children_that_died_are_passed_over(task_root: Path) -> None:
    async def scenario() -> tuple[list[int], int, int]:
        async with sandboxed() as (backend, template):
            ready = await ready_children(template)
            for pid in ready:
                os.kill(pid, signal.SIGKILL)
            # Once their exits are reported, none may be handed an environment.
            assert await eventually(lambda: not set(ready) & set(template.ready_children), 10)
            pid, status, report, _ = await run(backend, spec(task_root, "after"))
            assert report["tag"] == "after"
            return ready, pid, status

    ready, pid, status = asyncio.run(scenario())
    assert status == 5
    assert pid not in ready


def test_ready_children_too_old_are_replaced_not_used(
    task_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> tuple[list[int], int, int, list[int]]:
        async with sandboxed() as (backend, template):
            ready = await ready_children(template)
            monkeypatch.setattr(zygote, "READY_MAX_AGE_S", 0.0)
            pid, status, _, _ = await run(backend, spec(task_root, "fresh"))
            monkeypatch.undo()
            # Each stale child ends once its socket is closed; new ones take their place.
            assert await eventually(lambda: not set(ready) & set(children(template.pid or 0)), 10)
            return ready, pid, status, await ready_children(template)

    ready, pid, status, replaced = asyncio.run(scenario())
    assert status == 5
    assert pid not in ready
    assert not set(replaced) & set(ready)


def test_a_child_never_runs_without_the_network_namespace_it_was_given(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A request that names a network namespace whose descriptor did not arrive ends the
    child before it builds anything, on the ready path and on the fresh one alike (the
    template's own stderr, which this test's process lends it, says why)."""

    async def scenario() -> list[tuple[int, bytes]]:
        async with sandboxed() as (_, template):
            ready = await ready_children(template)
            results = []
            for _ in range(len(ready) + 1):  # the ready children, then a fresh fork
                read_fd, write_fd = os.pipe()
                plan = mounts.RootPlan(
                    staging=str(tmp_path),
                    task_root=str(tmp_path),
                    opt_dir=None,
                    runtime_dir=str(tmp_path),
                    tmp_bytes=1 << 20,
                    system=mounts.system_layout(),
                )
                sandbox = {"procs_files": [], "plan": plan, "uid": UID_BASE - 2, "netns": True}
                try:
                    child = await template.fork({}, "/", {}, write_fd, sandbox)
                finally:
                    os.close(write_fd)
                status = await asyncio.wait_for(child.exited, 20)
                with os.fdopen(read_fd, "rb") as output:
                    results.append((status, output.read()))
            return results

    results = asyncio.run(scenario())
    assert [status for status, _ in results] == [1] * (READY_CHILDREN + 1)
    # Nothing reached the environment's output: the child ended before it was set up.
    assert [output for _, output in results] == [b""] * (READY_CHILDREN + 1)
    stderr = capfd.readouterr().err
    refusals = stderr.count("RuntimeError: the environment's network namespace did not arrive")
    assert refusals == READY_CHILDREN + 1
