"""The control socket to a Python template: requests stay whole and replies stay matched
to their requests when a cold start is given up on while its request is on its way."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.zygote import Template


def interpreter() -> str:
    """The functions' Python, as the platform's templates run on it."""
    return RuntimeRegistry().interpreter("python3.12") or sys.executable


def working_directory(pid: int) -> str | None:
    """Where process `pid` runs (each request below names its own), None once it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def children_in(parent: int, directory: str) -> list[int]:
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return []
    return [int(pid) for pid in children if working_directory(int(pid)) == directory]


def test_a_request_given_up_on_mid_send_goes_out_whole_and_its_child_is_ended(
    tmp_path: Path,
) -> None:
    """A request larger than the socket holds, its caller cancelled while the template is
    not reading: the rest still goes out, so the template lives and the next request gets
    its own child; the child forked for the request given up on is killed."""
    # A Runtime API that accepts connections and never answers: children wait in /next.
    runtime_api = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{runtime_api.getsockname()[1]}"
    read_fd, write_fd = os.pipe()

    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()

    async def scenario() -> tuple[bool, str | None, list[int]]:
        template = Template(interpreter())
        await template.start()
        assert template.pid is not None
        try:
            base = {"AWS_LAMBDA_RUNTIME_API": address, "_HANDLER": "app.handler"}
            # Larger than the socket's buffer: the send has to wait for the template.
            big = {**base, "PADDING": "p" * (4 << 20)}
            os.kill(template.pid, signal.SIGSTOP)
            first = asyncio.ensure_future(template.fork(big, str(first_dir), {}, write_fd))
            await asyncio.sleep(0.3)
            assert not first.done()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            os.kill(template.pid, signal.SIGCONT)
            child = await asyncio.wait_for(template.fork(base, str(second_dir), {}, write_fd), 10)
            pid = child.pid
            for _ in range(500):  # the child moves there a moment after its fork
                own = working_directory(pid)
                if own != "/":
                    break
                await asyncio.sleep(0.01)
            # The first request's child, forked once the template read it whole, is ended.
            for _ in range(500):
                left = children_in(template.pid, str(first_dir))
                if not left:
                    break
                await asyncio.sleep(0.01)
            return template.alive, own, left
        finally:
            template.close()

    with runtime_api:
        alive, own, left = asyncio.run(scenario())
    os.close(read_fd)
    os.close(write_fd)
    assert alive
    assert own == str(second_dir)
    assert left == []
