"""A server that crashes takes its environments with it: nothing it started runs on as an
environment's uid once the server is gone (the uids may be handed out again by the next)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from lamina.sandbox.namespace import UID_BASE, probe
from tests.support.archives import make_package, make_zip
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

ROLE = "arn:aws:iam::123456789012:role/lambda-role"

# The handler leaves a process of its own behind (process 1 of the environment's PID
# namespace ending ends it too), then stays busy, never needing its Runtime API again.
BUSY_PYTHON = """
import subprocess, time

def handler(event, context):
    subprocess.Popen(["sleep", event["token"]])
    time.sleep(600)
"""

# A custom runtime that never asks for an event: running is all it does.
SLEEPING_BOOTSTRAP = "#!/bin/sh\nexec sleep {token}\n"


def running_with(token: str) -> list[int]:
    """Live processes whose command line carries `token` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def unique_seconds() -> str:
    """A `sleep` duration no other process on the machine is likely to have."""
    return f"{3000 + uuid.uuid4().int % 600}.{uuid.uuid4().int % 10**6:06d}"


@pytest.fixture(autouse=True)
def namespaces() -> None:
    if probe() is not None:
        pytest.skip("the environments' parent-death signal is the namespace backend's")


def test_a_crashed_servers_runtimes_end_with_it(tmp_path: Path) -> None:
    server = LaminaServer(tmp_path / "data", env={"LAMINA_IDLE_TIMEOUT": "600"}).start()
    python_token, custom_token = unique_seconds(), unique_seconds()
    try:
        client = server.client()
        client.create_function(
            FunctionName="busy-python",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Timeout=900,
            Code={"ZipFile": make_zip({"app.py": BUSY_PYTHON})},
        )
        client.create_function(
            FunctionName="sleeping-custom",
            Runtime="provided.al2023",
            Role=ROLE,
            Handler="unused",
            Code={
                "ZipFile": make_package(
                    {"bootstrap": SLEEPING_BOOTSTRAP.format(token=custom_token)}
                )
            },
        )
        payload = f'{{"token": "{python_token}"}}'.encode()
        client.invoke(FunctionName="busy-python", InvocationType="Event", Payload=payload)
        client.invoke(FunctionName="sleeping-custom", InvocationType="Event", Payload=b"{}")
        # A Python runtime forked by the template, and a fresh spawn that exec'd.
        wait_until(lambda: running_with(python_token) and running_with(custom_token), timeout=20)
    finally:
        server.kill()
    deadline = time.monotonic() + 10
    try:
        while left := running_with(python_token) + running_with(custom_token):
            assert time.monotonic() < deadline, f"still running after the crash: {left}"
            time.sleep(0.05)
    finally:
        # Whatever outlived the crash, and the environment's process 1 above it.
        for pid in running_with(python_token) + running_with(custom_token):
            with contextlib.suppress(OSError, ValueError):
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if Path(f"/proc/{parent}").stat().st_uid >= UID_BASE:
                    os.kill(parent, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
