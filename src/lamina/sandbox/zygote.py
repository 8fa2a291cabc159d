"""Cold starts from a pre-initialised template process ("zygote") per Python interpreter.

A Python environment normally starts a fresh interpreter and imports the bootstrap: tens of
milliseconds. The zygote has done both already; starting an environment is a fork. Commands
that are not Lamina's Python bootstrap go to the wrapped backend unchanged.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from lamina.sandbox import limits
from lamina.sandbox.api import Sandbox, SandboxBackend, SandboxSpec
from lamina.sandbox.process import ProcessGroupSandbox
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP

log = logging.getLogger("lamina.sandbox")

_HEADER = struct.Struct(">I")
TEMPLATE = PYTHON_BOOTSTRAP.parent / "zygote.py"


async def writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_writer(sock.fileno())


class FrameTooLarge(ValueError):
    """A control message longer than its reader accepts."""


def split_frames(buffer: bytes, max_frame: int | None = None) -> tuple[list[dict[str, Any]], bytes]:
    """The whole messages at the start of what a control socket gave (a 4-byte big-endian
    length, then JSON), and the bytes of the next one not yet complete. `max_frame` bounds a
    message's length for a reader whose peer runs user code (FrameTooLarge beyond)."""
    messages = []
    while len(buffer) >= _HEADER.size:
        size = _HEADER.unpack_from(buffer)[0]
        if max_frame is not None and size > max_frame:
            raise FrameTooLarge(f"a control message of {size} bytes")
        if len(buffer) < _HEADER.size + size:
            break
        messages.append(orjson.loads(buffer[_HEADER.size : _HEADER.size + size]))
        buffer = buffer[_HEADER.size + size :]
    return messages, buffer


class ZygoteSandbox(ProcessGroupSandbox):
    """A runtime forked from a template; its exit status arrives over the control socket."""

    def __init__(self, pid: int, output_fd: int, tmp_dir: Path, exited: asyncio.Future[int]):
        super().__init__(pid, output_fd, tmp_dir)
        self._exited = exited

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


# How many children a sandboxed template keeps forked and waiting in a PID namespace of
# their own, for the next cold starts: each saves two forks (~3 ms) for the price of two
# mostly shared processes.
READY_CHILDREN = 4

# Where the `lamina` package lives, so a template can preload the sandbox code its children
# run (importing it in each child after the fork cost a namespace cold start ~15 ms).
LAMINA_PATH = str(Path(__file__).resolve().parents[2])


class Template:
    """One running template process and its control socket."""

    def __init__(self, interpreter: str, sandboxed: bool = False) -> None:
        self.interpreter = interpreter
        self._sandboxed = sandboxed
        self._socket: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: list[asyncio.Future[int]] = []
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._buffer = b""
        self._ready: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [self.interpreter, "-u", str(TEMPLATE), str(theirs.fileno())]
        if self._sandboxed:
            command += [LAMINA_PATH, str(READY_CHILDREN)]
        self._process = subprocess.Popen(
            command,
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
        theirs.close()
        ours.setblocking(False)
        self._socket = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        await asyncio.wait_for(asyncio.shield(self._ready), timeout=30)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def fork(
        self,
        environment: dict[str, str],
        cwd: str,
        rlimits: limits.Limits,
        output_fd: int,
        sandbox: dict[str, Any] | None = None,
    ) -> tuple[int, asyncio.Future[int]]:
        """Fork a runtime; `sandbox` asks the child to enter the namespace sandbox first."""
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        request = {"env": environment, "cwd": cwd, "limits": rlimits, "sandbox": sandbox}
        body = orjson.dumps(request)
        reply: asyncio.Future[int] = loop.create_future()
        async with self._lock:
            fds = array.array("i", [output_fd])
            header = _HEADER.pack(len(body))
            # The descriptor travels with the first bytes; the rest is plain data. The socket
            # is non-blocking and may be full under a burst of cold starts: wait, don't fail.
            while True:
                try:
                    sent = self._socket.sendmsg(
                        [header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
                    )
                    break
                except BlockingIOError:
                    await writable(loop, self._socket)
            await loop.sock_sendall(self._socket, header[sent:] + body)
            # Replies come in request order, so the waiter joins only once its request is out.
            self._pending.append(reply)
        pid = await reply
        exited: asyncio.Future[int] = loop.create_future()
        self._exits[pid] = exited
        return pid, exited

    def _on_readable(self) -> None:
        assert self._socket is not None
        try:
            data = self._socket.recv(65536)
        except BlockingIOError:
            return
        if not data:
            self._closed()
            return
        messages, self._buffer = split_frames(self._buffer + data)
        for message in messages:
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        elif "pid" in message and self._pending:
            self._pending.pop(0).set_result(int(message["pid"]))
        elif "exit" in message:
            exited = self._exits.pop(int(message["exit"]), None)
            if exited is not None and not exited.done():
                exited.set_result(int(message["status"]))

    def _closed(self) -> None:
        """The template died: every child it had can no longer report, so treat them as gone."""
        assert self._socket is not None
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
        for waiter in self._pending:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the template process exited"))
        for pid, exited in self._exits.items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if not exited.done():
                exited.set_result(-signal.SIGKILL)
        self._pending.clear()
        self._exits.clear()

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


class TemplateChild:
    """A runtime forked by a template, seen through the Popen calls the sandboxes make."""

    def __init__(self, pid: int, exited: asyncio.Future[int]) -> None:
        self.pid = pid
        self.exited = exited

    def poll(self) -> int | None:
        if self.exited.done():
            return self.exited.result()
        # When the server stops, nothing reads the template's reports any more; a child
        # that is gone (reaped by the template) is still over.
        return self._gone()

    def _gone(self) -> int | None:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return -signal.SIGKILL
        except PermissionError:
            pass
        return None

    def wait(self, timeout: float | None = None) -> int:
        """Synchronous wait (server shutdown only): the template has reaped it once it is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.exited.done():
            if (status := self._gone()) is not None:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.01)
        return self.exited.result()


class Templates:
    """One template process per interpreter, started on first use; `sandboxed` templates
    fork children that enter the namespace sandbox (see `NamespaceBackend.use_templates`)."""

    def __init__(self, sandboxed: bool = False) -> None:
        self._sandboxed = sandboxed
        self._templates: dict[str, Template] = {}
        self._starting: dict[str, asyncio.Task[Template]] = {}

    @staticmethod
    def serves(command: tuple[str, ...]) -> bool:
        """Whether `command` is Lamina's Python bootstrap, which a template can fork."""
        return len(command) == 3 and command[1:] == ("-u", str(PYTHON_BOOTSTRAP))

    async def get(self, interpreter: str) -> Template:
        template = self._templates.get(interpreter)
        if template is not None and template.alive:
            return template
        task = self._starting.get(interpreter)
        if task is None:
            task = asyncio.ensure_future(self._start(interpreter))
            self._starting[interpreter] = task
        try:
            return await asyncio.shield(task)
        finally:
            self._starting.pop(interpreter, None)

    async def _start(self, interpreter: str) -> Template:
        template = Template(interpreter, self._sandboxed)
        await template.start()
        self._templates[interpreter] = template
        return template

    def close(self) -> None:
        for template in self._templates.values():
            template.close()
        self._templates.clear()


class ZygoteBackend:
    """Forks Python runtimes from templates; everything else goes to `fallback`."""

    def __init__(self, fallback: SandboxBackend) -> None:
        self._fallback = fallback
        self.name = f"{fallback.name}+zygote"
        self._templates = Templates()

    async def listen(self, spec: SandboxSpec) -> socket.socket:
        return await self._fallback.listen(spec)

    async def start(self, spec: SandboxSpec) -> Sandbox:
        if not Templates.serves(spec.command):
            return await self._fallback.start(spec)
        template = await self._templates.get(spec.command[0])
        tmp_dir = spec.scratch_root / "tmp"
        tmp_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        environment = {**spec.environment, "TMPDIR": str(tmp_dir), "LAMINA_TMP_DIR": str(tmp_dir)}
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        chosen = limits.process_limits(spec.memory_mb, spec.ephemeral_mb)
        try:
            pid, exited = await template.fork(environment, str(spec.task_root), chosen, write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return ZygoteSandbox(pid, read_fd, tmp_dir, exited)

    def describe(self) -> list[tuple[str, bool, str]]:
        return [
            *self._fallback.describe(),
            ("pre-initialised Python template (zygote)", True, "Python cold starts fork"),
        ]

    def close(self) -> None:
        self._templates.close()
        self._fallback.close()
