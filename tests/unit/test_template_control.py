"""The control socket to a Python template: requests stay whole and replies stay matched
to their requests when a cold start is given up on while its request is on its way."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.zygote import Template
from tests.support.sandboxes import eventually, process_gone


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


@pytest.fixture
def runtime_api() -> Iterator[str]:
    """The address of a Runtime API that accepts connections and never answers: children
    wait for their first event until they are ended."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def output() -> Iterator[int]:
    """The write end of the children's output pipe."""
    read_fd, write_fd = os.pipe()
    yield write_fd
    os.close(read_fd)
    os.close(write_fd)


def test_a_request_given_up_on_mid_send_goes_out_whole_and_its_child_is_ended(
    tmp_path: Path, runtime_api: str, output: int
) -> None:
    """A request larger than the socket holds, its caller cancelled while the template is
    not reading: the rest still goes out, so the template lives and the next request gets
    its own child; the child forked for the request given up on is killed."""
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()

    async def scenario() -> tuple[bool, str | None, list[int]]:
        template = Template(interpreter())
        await template.start()
        assert template.pid is not None
        try:
            base = {"AWS_LAMBDA_RUNTIME_API": runtime_api, "_HANDLER": "app.handler"}
            # Larger than the socket's buffer: the send has to wait for the template.
            big = {**base, "PADDING": "p" * (4 << 20)}
            os.kill(template.pid, signal.SIGSTOP)
            first = asyncio.ensure_future(template.fork(big, str(first_dir), {}, output))
            await asyncio.sleep(0.3)
            assert not first.done()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            os.kill(template.pid, signal.SIGCONT)
            child = await asyncio.wait_for(template.fork(base, str(second_dir), {}, output), 10)
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

    alive, own, left = asyncio.run(scenario())
    assert alive
    assert own == str(second_dir)
    assert left == []


def test_the_children_of_a_template_that_died_are_ended(
    tmp_path: Path, runtime_api: str, output: int
) -> None:
    """An unsandboxed child outlives its template (it has no parent-death signal): the
    platform ends it, and its group, once it sees the template gone."""

    async def scenario() -> tuple[int, int | None, bool]:
        template = Template(interpreter())
        await template.start()
        assert template.pid is not None
        try:
            variables = {"AWS_LAMBDA_RUNTIME_API": runtime_api, "_HANDLER": "app.handler"}
            child = await asyncio.wait_for(template.fork(variables, str(tmp_path), {}, output), 10)
            # Running as itself: moved from the template's directory to its own.
            assert await eventually(lambda: working_directory(child.pid) == str(tmp_path))
            os.kill(template.pid, signal.SIGKILL)
            status = await asyncio.wait_for(child.exited, 10)
            gone = await eventually(lambda: process_gone(child.pid))
            return status, child.poll(), gone
        finally:
            template.close()

    status, polled, gone = asyncio.run(scenario())
    assert status == -signal.SIGKILL
    assert polled == -signal.SIGKILL
    assert gone
