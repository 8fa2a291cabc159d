"""Running real sandboxes inside a test's event loop, and leaving nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from lamina.sandbox.api import Sandbox, SandboxSpec
from lamina.sandbox.process import ProcessBackend, ProcessSandbox


class TrackedBackend(ProcessBackend):
    """The process backend, remembering its sandboxes so a test can wait for their end."""

    def __init__(self) -> None:
        self.started: list[Sandbox] = []

    async def start(self, spec: SandboxSpec) -> ProcessSandbox:
        sandbox = await super().start(spec)
        self.started.append(sandbox)
        return sandbox

    async def settle(self) -> None:
        """Wait until every runtime it started has exited and the loop has seen its
        connections close (destroying an environment only starts both), so a test's loop
        ends without processes or transports still open."""
        for sandbox in self.started:
            await asyncio.wait_for(sandbox.wait(), 5)
        for _ in range(5):
            await asyncio.sleep(0)


async def eventually(condition: Callable[[], object], timeout: float = 5) -> bool:
    """Poll `condition` on the running loop (which keeps serving meanwhile) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def process_gone(pid: int) -> bool:
    """Whether host process `pid` has exited (a zombie counts: it runs no more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def probe_task_root(tmp_path: Path, probe: str) -> Path:
    """Function code laid out as the artifact cache lays it out (the namespace backend hides
    the parents): `probe.py` holding `probe`."""
    root = tmp_path / "artifacts" / "code" / "probe"
    root.mkdir(parents=True)
    (root / "probe.py").write_text(probe)
    return root
