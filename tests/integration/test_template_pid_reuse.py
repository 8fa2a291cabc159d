"""A template's child is ended through its pidfd: once its template has reaped it, its pid
may belong to another process before the server has read the exit report.

The scenario runs as process 1 of a PID namespace of its own (`unshare`), where nothing else
forks: there, writing `ns_last_pid` makes the next fork take the pid a reaped child had.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.runtimes.registry import RuntimeRegistry

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or not hasattr(os, "pidfd_open"),
    reason="a PID namespace of the test's own needs root and util-linux's unshare; "
    "the server holds children by pidfd only where the kernel has them (Linux 5.3)",
)

SRC = Path(__file__).resolve().parents[2] / "src"

SCENARIO = r"""
import asyncio, os, socket, subprocess, sys, time

from pathlib import Path

from lamina.sandbox.zygote import Template, ZygoteSandbox


def reaped(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] == "X"
    except FileNotFoundError:
        return True


async def main(interpreter):
    template = Template(interpreter)
    await template.start()
    read_fd, write_fd = os.pipe()
    # A Runtime API that never answers: the child waits for its first event until killed.
    runtime_api = socket.create_server(("127.0.0.1", 0))
    address = "127.0.0.1:%d" % runtime_api.getsockname()[1]
    try:
        variables = {"AWS_LAMBDA_RUNTIME_API": address, "_HANDLER": "app.handler"}
        child = await template.fork(variables, "/", {}, write_fd)
        os.kill(child.pid, 9)  # it waits on the Runtime API: its pid is still its own
        # Blocking, so the event loop does not read the template's exit report meanwhile.
        deadline = time.monotonic() + 10
        while not reaped(child.pid):
            assert time.monotonic() < deadline, "the template did not reap its child"
            time.sleep(0.005)
        assert not child.exited.done()
        with open("/proc/sys/kernel/ns_last_pid", "w") as last:
            last.write(str(child.pid - 1))
        # A session and group of its own, as every template child leads.
        bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
        assert bystander.pid == child.pid, (bystander.pid, child.pid)
        assert child.poll() is not None, "a reaped child reads as running"
        # What ending its environment does, under each backend that forks from a template.
        child.kill()
        ZygoteSandbox(child, read_fd, Path("/tmp")).kill()
        time.sleep(0.2)
        survived = bystander.poll() is None
        bystander.kill()
        bystander.wait()
        status = await asyncio.wait_for(child.exited, 10)
        print(f"bystander survived={survived} status={status}")
    finally:
        template.close()
        runtime_api.close()
        os.close(read_fd)
        os.close(write_fd)


asyncio.run(main(sys.argv[1]))
"""


def test_a_reaped_childs_pid_given_to_another_process_is_not_signalled(tmp_path: Path) -> None:
    interpreter = RuntimeRegistry().interpreter("python3.12") or sys.executable
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, str(script), interpreter],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "bystander survived=True status=-9", result.stderr
