"""Cold starts from a pre-initialised template process ("zygote") per Python interpreter.

A Python environment normally starts a fresh interpreter and imports the bootstrap: tens of
milliseconds. The zygote has done both already; starting an environment is a fork. Commands
that are not Lamina's Python bootstrap go to the wrapped backend unchanged.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import functools
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


async def send_message(sock: socket.socket, body: bytes, fds: Sequence[int] = ()) -> None:
    """A control message (length, then `body`) on a non-blocking socket, `fds` travelling
    with its first bytes; in one write where the socket takes it all (the reader would
    otherwise wait for the rest), waiting while it is full (a burst of cold starts)."""
    loop = asyncio.get_running_loop()
    message = _HEADER.pack(len(body)) + body
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    while True:
        try:
            sent = sock.sendmsg([message], rights)
            break
        except BlockingIOError:
            await writable(loop, sock)
    if sent < len(message):
        await loop.sock_sendall(sock, message[sent:])


# Room for the descriptors one read of the template's socket may bring.
_RIGHTS_SPACE = socket.CMSG_SPACE(16 * array.array("i").itemsize)


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

    def __init__(self, child: TemplateChild, output_fd: int, tmp_dir: Path):
        super().__init__(child.pid, output_fd, tmp_dir)
        self._child = child

    async def wait(self) -> int:
        return await asyncio.shield(self._child.exited)

    def kill(self) -> None:
        # Its tree and group are found by its pid, which is its own only until its template
        # reaps it; the template ends what is left of its group just before that.
        if self._child.poll() is None:
            super().kill()


# How many children a sandboxed template keeps forked and waiting in a PID namespace of
# their own, for the next cold starts: each saves a cold start a fork, a hop through the
# template and the common part of its root, for the price of a mostly shared process
# (about 1.5 MiB of private pages).
READY_CHILDREN = 4
# A ready child keeps the copy of the host's mounts its namespace was made with (new host
# mounts reach it only where they propagate): one older than this is replaced, not used.
READY_MAX_AGE_S = 60.0

# Where the `lamina` package lives, so a template can preload the sandbox code its children
# run (importing it in each child after the fork cost a namespace cold start ~15 ms).
LAMINA_PATH = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class ReadyRoot:
    """What a sandboxed template's ready children prepare of an environment's root ahead
    (`mounts.prepare_root`): the same for every environment of their namespace backend."""

    staging: str
    system: tuple[tuple[str, str], ...]
    hostname: str

    def message(self) -> dict[str, Any]:
        return {"staging": self.staging, "system": self.system, "hostname": self.hostname}

    def fits(self, sandbox: dict[str, Any] | None) -> bool:
        """Whether an environment's sandbox has the root a ready child prepared."""
        if sandbox is None:
            return False
        plan = sandbox["plan"]
        return bool(plan.system == self.system and plan.hostname == self.hostname)


@dataclass(frozen=True)
class ReadyChild:
    """A template's child waiting for an environment, and the socket that assigns it one."""

    pid: int
    assignments: socket.socket
    since: float  # when it was announced (monotonic)
    pidfd: int  # -1 where the kernel has none

    def discard(self) -> None:
        """Let it go unassigned: closing its socket ends it."""
        self.assignments.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)


# The library path a template's loader starts with: the part every function's begins with
# (`library_path`). The loader reads the variable once, as the process starts.
TEMPLATE_LIBRARY_PATH = "/var/lang/lib:/lib64:/usr/lib64"


def library_path(task_root: str, opt: str) -> str:
    """The LD_LIBRARY_PATH a function gets, as on Lambda: the runtime's and the system's
    directories, then its code's and its layers' (`opt`: where its layers are)."""
    return f"{TEMPLATE_LIBRARY_PATH}:{task_root}:{task_root}/lib:{opt}/lib"


# Variables the loader, the C library or the interpreter read once, as the process starts,
# which a forked runtime would therefore not honour; LD_LIBRARY_PATH is compared whole.
_READ_AT_START_PREFIXES = ("LD_", "MALLOC_", "PYTHON")
_READ_AT_START = frozenset({"GLIBC_TUNABLES"})
# ... but for these: `-u` already makes output unbuffered, and a forked runtime sets
# `sys.dont_write_bytecode` from PYTHONDONTWRITEBYTECODE itself.
_HONOURED_AFTER_FORK = frozenset({"LD_LIBRARY_PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})
# The interpreter takes its encodings from the locale as it starts; the template's is UTF-8,
# as Lamina's default LANG is.
_LOCALE = frozenset({"LC_ALL", "LC_CTYPE", "LANG"})


def starts_alike(spec: SandboxSpec) -> bool:
    """Whether a runtime forked from a template, with `spec`'s variables set after the fork,
    behaves as a fresh process started with them: no variable read only at start-up is set
    (a locale, if any, is UTF-8), the library path is the one Lamina gives, and the
    directories it adds to the template's hold nothing a library loaded by name could be.
    A function whose code or layers bring such libraries starts a fresh interpreter, whose
    loader searches them."""
    environment = spec.environment
    for name, value in environment.items():
        if name in _HONOURED_AFTER_FORK:
            continue
        if name.startswith(_READ_AT_START_PREFIXES) or name in _READ_AT_START:
            return False
        if name in _LOCALE and value and not _is_utf8(value):
            return False
    task_root = str(spec.task_root)
    opt = str(spec.opt_dir) if spec.opt_dir else "/opt"
    if environment.get("LD_LIBRARY_PATH") != library_path(task_root, opt):
        return False
    # The code's top directory holds the handler and, packaged with it, Python extension
    # modules, which are loaded by their full path; other shared objects there count.
    return not (
        _holds_libraries(task_root, _is_library_among_code)
        or _holds_libraries(f"{task_root}/lib", _is_library)
        or _holds_libraries(f"{opt}/lib", _is_library)
    )


def _is_utf8(locale: str) -> bool:
    return locale.lower().replace("-", "").endswith((".utf8", ".utf8@euro"))


def _is_library(name: str) -> bool:
    """A shared object's name: `*.so`, or `*.so.*` with its version (`libz.so.1`)."""
    return name.endswith(".so") or ".so." in name


def _is_library_among_code(name: str) -> bool:
    extension_module = ".cpython-" in name or ".abi3." in name
    return _is_library(name) and not extension_module


def _holds_libraries(directory: str, is_library: Callable[[str], bool]) -> bool:
    try:
        with os.scandir(directory) as found:
            return any(is_library(entry.name) for entry in found)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # unreadable here: a fresh start decides nothing wrongly


class Template:
    """One running template process and its control socket."""

    def __init__(
        self, interpreter: str, sandboxed: bool = False, ready_root: ReadyRoot | None = None
    ) -> None:
        self.interpreter = interpreter
        self._sandboxed = sandboxed
        self._ready_root = ready_root
        self._socket: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        # Fork requests the template has not answered yet, in order. Each answer is the
        # child, registered here to take its exit report before anything else can be read.
        self._pending: list[asyncio.Future[TemplateChild]] = []
        self._children: dict[int, TemplateChild] = {}
        self._buffer = b""
        # Descriptors the template sent, in order, until the message they came with is read.
        self._received_fds: collections.deque[int] = collections.deque()
        # Ready children, oldest first.
        self._ready_children: collections.deque[ReadyChild] = collections.deque()
        # Requests for more ready children under way (kept: a task must not be collected).
        self._asking: set[asyncio.Task[None]] = set()
        self._up: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [self.interpreter, "-u", str(TEMPLATE), str(theirs.fileno())]
        if self._sandboxed:
            command.append(LAMINA_PATH)
        self._process = subprocess.Popen(
            command,
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": "C.UTF-8",
                "LD_LIBRARY_PATH": TEMPLATE_LIBRARY_PATH,
            },
        )
        theirs.close()
        ours.setblocking(False)
        self._socket = ours
        self._up = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        try:
            await asyncio.wait_for(asyncio.shield(self._up), timeout=30)
            if self._sandboxed and self._ready_root is not None:
                message = {"make_ready": READY_CHILDREN, "root": self._ready_root.message()}
                await self._send(message)
        except BaseException:
            # Cancelled (its backend closing) or never up: no template is left running.
            self.close()
            raise

    @property
    def ready_children(self) -> list[int]:
        """The pids of the ready children this side holds, oldest first."""
        return [child.pid for child in self._ready_children]

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
        netns_fd: int | None = None,
    ) -> TemplateChild:
        """Fork a runtime; `sandbox` asks the child to enter the namespace sandbox first
        (a ready child takes it where there is one), and the network namespace `netns_fd`."""
        forked = await self.request_fork(environment, cwd, rlimits, output_fd, sandbox, netns_fd)
        return await forked

    async def request_fork(
        self,
        environment: dict[str, str],
        cwd: str,
        rlimits: limits.Limits,
        output_fd: int,
        sandbox: dict[str, Any] | None = None,
        netns_fd: int | None = None,
        ahead: tuple[int, int] | None = None,
    ) -> asyncio.Future[TemplateChild]:
        """`fork`'s request, once sent: the future of the child (a plain future, which a
        caller that stops waiting can still follow to its end).

        `ahead` (a runtime started ahead: its assignment pipe's read end and its waiting
        pipe's write end) goes to the template itself, never to a ready child: a ready
        child's copy of the host's mounts predates the mount points its code arrives on.
        """
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        request = {
            "env": environment,
            "cwd": cwd,
            "limits": rlimits,
            "sandbox": sandbox,
            "ahead": ahead is not None,
        }
        body = orjson.dumps(request)
        fds = [output_fd, *(ahead or ())]
        if netns_fd is not None:
            fds.append(netns_fd)
        reply: asyncio.Future[TemplateChild] = loop.create_future()
        if ahead is None and self._ready_root is not None and self._ready_root.fits(sandbox):
            assigned = await self._assign(body, fds)
            if assigned is not None:
                reply.set_result(assigned)
                return reply
        try:
            await self._send(body, fds, reply)
        except BaseException:
            # Cancelled, or it did not go out: a child forked for it all the same is killed
            # when its pid comes (see `_dispatch`).
            reply.cancel()
            raise
        return reply

    async def _send(
        self,
        message: dict[str, Any] | bytes,
        fds: Sequence[int] = (),
        reply: asyncio.Future[TemplateChild] | None = None,
    ) -> None:
        """One message to the template, `fds` with its first bytes; `reply` waits for its
        answer. Replies come in request order, so `reply` joins the queue as its request
        starts out, under the lock that keeps requests whole and in order. A caller
        cancelled meanwhile does not cut its request short (the template would read the
        rest of it as the next one's start, and garble every request after): the send
        runs on, and the lock is let go when it ends."""
        assert self._socket is not None
        body = message if isinstance(message, bytes) else orjson.dumps(message)
        await self._lock.acquire()
        if reply is not None:
            self._pending.append(reply)
        sending = asyncio.ensure_future(send_message(self._socket, body, fds))

        def sent(done: asyncio.Future[None]) -> None:
            self._lock.release()
            if reply is not None and (done.cancelled() or done.exception() is not None):
                # Nothing will answer it: the next reply is the next request's.
                with contextlib.suppress(ValueError):
                    self._pending.remove(reply)

        sending.add_done_callback(sent)
        await asyncio.shield(sending)

    async def _assign(self, body: bytes, fds: Sequence[int]) -> TemplateChild | None:
        """Hand the request straight to the oldest ready child that is young enough; that
        child, or None when none took it (none ready, or all of them gone or stale)."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        while self._ready_children:
            ready = self._ready_children.popleft()
            if now - ready.since > READY_MAX_AGE_S:
                # Its copy of the host's mounts is that old: let it go and have a new one made.
                ready.discard()
                self._ask_for_ready(1)
                continue
            # Registered first: a child that fails at once reports its exit to it.
            child = TemplateChild(ready.pid, loop.create_future(), ready.pidfd)
            self._children[ready.pid] = child
            try:
                await send_message(ready.assignments, body, fds)
            except OSError:
                # It died meanwhile (its exit report may have come while the send waited).
                self._children.pop(ready.pid, None)
                if not child.exited.done():
                    child.exited.set_result(-signal.SIGKILL)
                continue
            finally:
                ready.assignments.close()
            self._ask_for_ready(1)
            return child
        return None

    def _ask_for_ready(self, count: int) -> None:
        """Ask the template for more ready children, without waiting for the answer."""

        async def ask() -> None:
            with contextlib.suppress(OSError, RuntimeError):
                await self._send({"make_ready": count})

        task = asyncio.ensure_future(ask())
        self._asking.add(task)
        task.add_done_callback(self._asking.discard)

    def _on_readable(self) -> None:
        assert self._socket is not None
        try:
            # Close-on-exec: a socket that assigns a root process its environment must never
            # reach a process the server starts.
            data, ancillary, _, _ = self._socket.recvmsg(
                65536, _RIGHTS_SPACE, socket.MSG_CMSG_CLOEXEC
            )
        except BlockingIOError:
            return
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                self._received_fds.extend(fds)
        if not data:
            self._closed()
            return
        messages, self._buffer = split_frames(self._buffer + data)
        for message in messages:
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message and self._up is not None and not self._up.done():
            self._up.set_result(None)
        elif "pid" in message:
            forked = int(message["pid"])
            pidfd = self._pidfd_with(message)
            child = TemplateChild(forked, asyncio.get_running_loop().create_future(), pidfd)
            self._children[forked] = child
            waiter = self._pending.pop(0) if self._pending else None
            if waiter is not None and not waiter.done():
                waiter.set_result(child)
            else:
                # Its start was cancelled (and what it held released): nothing may run there.
                child.kill()
        elif "error" in message and self._pending:
            # The template could not fork for this request (and lives on).
            waiter = self._pending.pop(0)
            if not waiter.done():
                waiter.set_exception(RuntimeError(str(message["error"])))
        elif "ready_child" in message:
            if not self._received_fds:
                log.warning(
                    "template %s announced ready child %s without its socket",
                    self.pid,
                    message["ready_child"],
                )
                return
            assignments = socket.socket(fileno=self._received_fds.popleft())
            assignments.setblocking(False)
            self._ready_children.append(
                ReadyChild(
                    int(message["ready_child"]),
                    assignments,
                    time.monotonic(),
                    self._pidfd_with(message),
                )
            )
        elif "exit" in message:
            pid = int(message["exit"])
            ended = self._children.pop(pid, None)
            if ended is not None and not ended.exited.done():
                ended.exited.set_result(int(message["status"]))
            self._drop_ready_child(pid)

    def _pidfd_with(self, message: dict[str, Any]) -> int:
        """The pidfd that came with a report of a child forked, its message's last
        descriptor (-1: the template's kernel has none)."""
        if message.get("pidfd") and self._received_fds:
            return self._received_fds.popleft()
        return -1

    def _drop_ready_child(self, pid: int) -> None:
        """A ready child that ended before it was assigned (killed, or out of memory): one
        that had lived a while is replaced; one that failed at once is not, so that a
        template whose children cannot start does not fork them in a loop."""
        for child in self._ready_children:
            if child.pid == pid:
                self._ready_children.remove(child)
                child.discard()
                if time.monotonic() - child.since >= 1.0:
                    self._ask_for_ready(1)
                return

    def _close_ready_children(self) -> None:
        """Each closed socket ends its child, which was waiting on it."""
        for child in self._ready_children:
            child.discard()
        self._ready_children.clear()
        for fd in self._received_fds:
            os.close(fd)
        self._received_fds.clear()

    def _closed(self) -> None:
        """The template died: every child it had can no longer report, so treat them as gone."""
        assert self._socket is not None
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
        for child in self._children.values():
            child.kill_group()
        self._end_waits("the template process exited")
        self._close_ready_children()

    def _end_waits(self, why: str) -> None:
        """No reply or exit report can come any more: nobody is left waiting for one."""
        for waiter in self._pending:
            if not waiter.done():
                waiter.set_exception(RuntimeError(why))
        self._pending.clear()
        for child in self._children.values():
            if not child.exited.done():
                child.exited.set_result(-signal.SIGKILL)
        self._children.clear()

    def close(self) -> None:
        self._close_ready_children()
        if self._socket is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
        self._end_waits("the template was closed")
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


class TemplateChild:
    """A runtime forked by a template, seen through the Popen calls the sandboxes make.

    Its template reaps it, so once it has ended its pid may name another process, anyone's,
    before its exit report is read here: it is signalled through its pidfd, which names it
    alone, and by pid only where the kernel has no pidfds. The pidfd is closed once its exit
    is known.
    """

    def __init__(self, pid: int, exited: asyncio.Future[int], pidfd: int = -1) -> None:
        self.pid = pid
        self.exited = exited
        self._pidfd = pidfd
        if pidfd >= 0:
            exited.add_done_callback(self._forget_pidfd)

    def _forget_pidfd(self, _: asyncio.Future[int]) -> None:
        os.close(self._pidfd)
        self._pidfd = -1

    def kill(self) -> None:
        """SIGKILL it, unless it has ended (a sandboxed one is process 1 of its PID
        namespace: every process there ends with it)."""
        if self.exited.done():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self._pidfd >= 0:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)

    def kill_group(self) -> None:
        """SIGKILL its session's group, which it leads, and it, while it still runs: its
        template, which would end the group as it reaps it, is gone. (A sandboxed child
        is process 1 of its PID namespace: everything there ends with it anyway.)"""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self.kill()

    def poll(self) -> int | None:
        if self.exited.done():
            return self.exited.result()
        # When the server stops, nothing reads the template's reports any more; a child
        # that is gone (reaped by the template) is still over.
        return self._gone()

    def _gone(self) -> int | None:
        if self._pidfd >= 0:
            # Readable once it has ended, reaped or not.
            readable = select.poll()
            readable.register(self._pidfd, select.POLLIN)
            return -signal.SIGKILL if readable.poll(0) else None
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
        # Set by the namespace backend: what ready children prepare ahead (none without it).
        self.ready_root: ReadyRoot | None = None
        self._templates: dict[str, Template] = {}
        self._starting: dict[str, asyncio.Task[Template]] = {}
        self._closed = False

    @staticmethod
    def serves(command: tuple[str, ...]) -> bool:
        """Whether `command` is Lamina's Python bootstrap, which a template can fork."""
        return len(command) == 3 and command[1:] == ("-u", str(PYTHON_BOOTSTRAP))

    @staticmethod
    def forks(spec: SandboxSpec) -> bool:
        """Whether `spec`'s runtime is forked from a template: Lamina's Python bootstrap,
        unless what a process reads once as it starts would differ from a fresh one's."""
        return Templates.serves(spec.command) and starts_alike(spec)

    async def get(self, interpreter: str) -> Template:
        if self._closed:
            raise RuntimeError("the templates are closed")
        template = self._templates.get(interpreter)
        if template is not None and template.alive:
            return template
        task = self._starting.get(interpreter)
        if task is None:
            task = asyncio.ensure_future(self._start(interpreter))
            self._starting[interpreter] = task
            # Forgotten when it ends, not when a caller stops waiting: a caller cancelled
            # meanwhile must not let the next one start a second template beside it.
            task.add_done_callback(functools.partial(self._started, interpreter))
        return await asyncio.shield(task)

    def _started(self, interpreter: str, task: asyncio.Task[Template]) -> None:
        self._starting.pop(interpreter, None)
        if not task.cancelled():
            task.exception()  # each caller still waiting has it raised; none may be left

    async def _start(self, interpreter: str) -> Template:
        template = Template(interpreter, self._sandboxed, self.ready_root)
        await template.start()
        if self._closed:
            template.close()
            raise RuntimeError("the templates are closed")
        replaced = self._templates.get(interpreter)
        if replaced is not None:
            replaced.close()  # it died (see `get`): what it still holds goes with it
        self._templates[interpreter] = template
        return template

    def close(self) -> None:
        """Stop every template, and any still starting (each stops itself once cancelled)."""
        self._closed = True
        for template in self._templates.values():
            template.close()
        self._templates.clear()
        for starting in self._starting.values():
            starting.cancel()


class ZygoteBackend:
    """Forks Python runtimes from templates; everything else goes to `fallback`."""

    def __init__(self, fallback: SandboxBackend) -> None:
        self._fallback = fallback
        self.name = f"{fallback.name}+zygote"
        self._templates = Templates()

    async def listen(self, spec: SandboxSpec) -> socket.socket:
        return await self._fallback.listen(spec)

    def abandon(self, spec: SandboxSpec) -> None:
        self._fallback.abandon(spec)

    async def start(self, spec: SandboxSpec) -> Sandbox:
        if not Templates.forks(spec):
            return await self._fallback.start(spec)
        template = await self._templates.get(spec.command[0])
        tmp_dir = spec.scratch_root / "tmp"
        tmp_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        environment = {**spec.environment, "TMPDIR": str(tmp_dir), "LAMINA_TMP_DIR": str(tmp_dir)}
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        chosen = limits.process_limits(spec.memory_mb, spec.ephemeral_mb)
        try:
            child = await template.fork(environment, str(spec.task_root), chosen, write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return ZygoteSandbox(child, read_fd, tmp_dir)

    def describe(self) -> list[tuple[str, bool, str]]:
        return [
            *self._fallback.describe(),
            ("pre-initialised Python template (zygote)", True, "Python cold starts fork"),
        ]

    def close(self) -> None:
        self._templates.close()
        self._fallback.close()
