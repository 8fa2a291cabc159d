"""SnapStart: a version's initialised process, and environments forked from it.

`Snapshot` runs `runtimes/python/snapshot.py` once per published version: the function's
init (and its before-snapshot hooks) runs there, once. `RestoredBackend` is the sandbox
backend of that version's environments: each one is a fork of the snapshot, which runs the
after-restore hooks and serves with the module imported before the fork.

Isolation under the namespace backend (root). The snapshot runs user code, so it is started
exactly as a fresh environment is (`namespace.enter_sandbox`: its own PID, mount, IPC, UTS and
cgroup namespaces, the read-only root, a cgroup, a network namespace from the pool, an
unprivileged host uid, no_new_privs), then enters a user namespace of its own. The platform
maps that namespace's uid 0 to the snapshot's host uid and uids 1..n to n host uids taken
from the same pool as every environment's, one consecutive run. The snapshot holds
capabilities only inside that user namespace, which owns nothing of the host's. Each fork,
before any user code runs: joins a cgroup of its own (memory, pids and CPU limits and
measurements, as any environment) through its `cgroup.procs` files, which the platform
opened and passed to it; unshares its own mount, IPC, UTS, cgroup and network namespaces;
mounts a fresh tmpfs over /tmp sized to EphemeralStorage; brings its loopback up and waits
while the platform moves the `eth0` of a slot from the pool into its network namespace
(configured as in the slot: the firewall, NAT and the gateway apply as to any environment);
then takes its own uid (k, a host uid no other environment has), which clears
every capability, and only then runs the hooks and the handler. Its Runtime API is a
connected socket the platform hands it, never a listening port.

A version is one security domain. Its init code runs in the snapshot, with capabilities in
the snapshot's user namespace, and every environment is a fork of that interpreter: code
that init left behind (patched functions, at-fork hooks, threads) runs in each fork before
the uid drop, and can keep privileges over the version's own namespaces. What it can reach
is the version's own: its environments (their processes, their Runtime API sockets, which
pass through the snapshot), its network namespaces and their interfaces. Not the host, other
functions or other versions: the namespaces are owned by the snapshot's user namespace,
whose uids map to host uids no one else has, and the host's firewall admits from each
environment's interface only that environment's own address (no forged or un-NATed
packets, no IPv6). The snapshot's side of the control socket is untrusted: its messages
are bounded and checked, and a snapshot that stops reading or answering is killed.
The platform never acts on a bare pid number of the snapshot's: the snapshot reaps its own
children, and could let a pid go to another process (anyone's) before the platform uses it.
Its children are held by pidfds checked once open; an interface is moved into a namespace
named by a descriptor opened while its process lived; forks join their cgroups themselves.
After its init, the snapshot's own cgroup (what stays in it: threads, held namespaces, a fork
that never joined its group) gets the CPU of one environment.
What remains shared within a version is why an operator can turn SnapStart off
(LAMINA_SNAPSTART=off).

What is relaxed, exactly, compared to an environment started fresh (and why):
- the environments of one version share the snapshot's PID namespace (a fork cannot leave
  it): each sees the others' processes in /proc, names and pids, but not their memory,
  environment or files, since the uids differ and no capability is left;
- their uid inside is k (1..n), mapped to the host uid, and /etc/passwd names the
  snapshot's uid; /tmp starts empty (what the init wrote to /tmp is not in the snapshot);
- at most `ENVIRONMENTS_PER_SNAPSHOT` of a version's environments run at once.
Other functions, other versions and the host stay as far out of reach as from any
environment. Under the process backend (not root) children fork without any of this, as
that backend's environments run anyway (TMPDIR and rlimits of their own).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import functools
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from lamina.model.networks import NetworkPolicy
from lamina.sandbox import limits, mounts
from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.cgroups import EnvironmentCgroup
from lamina.sandbox.cpu_cap import cap_after_init
from lamina.sandbox.mounts import PathMapping
from lamina.sandbox.network import NetworkIsolation, Slot
from lamina.sandbox.process import ProcessGroupSandbox
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP
from lamina.sandbox.zygote import FrameTooLarge, split_frames, writable

log = logging.getLogger("lamina.sandbox")

SNAPSHOT_SCRIPT = PYTHON_BOOTSTRAP.parent / "snapshot.py"
_HEADER = struct.Struct(">I")
# The uids a snapshot's user namespace maps for its environments: at most this many of a
# version's environments run at once.
ENVIRONMENTS_PER_SNAPSHOT = 256
# AWS: "The AWS_LAMBDA_LOG_GROUP_NAME and AWS_LAMBDA_LOG_STREAM_NAME environment variables
# are not available in Lambda SnapStart functions." Nor are the execution role's keys: a
# snapshot and its environments get container credentials instead (`CredentialsServer`).
HIDDEN_VARIABLES = (
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
# What a restored runtime reads as its Runtime API (it uses the socket it was given).
RUNTIME_API_ADDRESS = "127.0.0.1:9001"


class CredentialsServer(Protocol):
    """Where a SnapStart version's code fetches its credentials (container credentials): the
    variables that name it, and serving it on a listener of an environment's network."""

    variables: dict[str, str]

    async def serve(self, listener: socket.socket) -> Callable[[], None]:
        """Answer on `listener` until the returned function is called."""
        ...


class InitFailed(Exception):
    """The snapshot's init failed: the runtime's error payload, or its exit, or a timeout."""

    def __init__(self, status: str, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", ""))
        self.status = status  # "error" or "timeout"
        self.payload = payload


@dataclass
class SnapshotIsolation:
    """What the namespace backend set up for one snapshot, released with it."""

    uids: list[int]  # host uid of inside uid k = uids[k]; uids[0] is the snapshot's own
    cgroup: EnvironmentCgroup | None
    release: Callable[[], None]
    # 127.0.0.1:9001 in the snapshot's network namespace, for its credentials (None: it
    # shares the host's network)
    listener: socket.socket | None = None
    # inside uids 1..n not in use by an environment
    free: list[int] = field(default_factory=list)

    def uid_map(self) -> str:
        """Consecutive host uids collapse into one line (the kernel takes a few hundred)."""
        lines: list[list[int]] = []
        for inside, host in enumerate(self.uids):
            last = lines[-1] if lines else None
            if last is not None and last[1] + last[2] == host and last[0] + last[2] == inside:
                last[2] += 1
            else:
                lines.append([inside, host, 1])
        return "".join(f"{inside} {host} {count}\n" for inside, host, count in lines)


# The snapshot runs user code, so its side of the control socket is untrusted: its messages
# are bounded and checked, and it must read and answer within this long, or it is killed.
CONTROL_FRAME_MAX = 64 * 1024
CONTROL_TIMEOUT_S = 10.0
# Exit reports of children not yet known (their pid's reply still on its way) kept at most.
_EARLY_EXITS_MAX = 1024


class ControlViolation(RuntimeError):
    """The snapshot broke its side of the control protocol (it has been killed)."""


class Snapshot:
    """One initialised process and its control socket."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        control: socket.socket,
        isolation: SnapshotIsolation | None,
    ) -> None:
        self.process = process
        self.isolation = isolation
        self.init_ms = 0.0
        self._control = control
        self._buffer = b""
        self._ready: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pending: list[asyncio.Future[int]] = []
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._early_exits: dict[int, int] = {}
        # Forks whose pid was answered and whose exit nobody has asked for yet: only their
        # exits are kept early (process 1 also reaps what handlers leave behind).
        self._unclaimed: set[int] = set()
        self._ended = False
        self._mapped = False
        self._lock = asyncio.Lock()
        # The event loop and pidfd watching for the death of a snapshot closed without
        # waiting (see `close`).
        self._watching: tuple[asyncio.AbstractEventLoop, int] | None = None
        control.setblocking(False)
        asyncio.get_running_loop().add_reader(control.fileno(), self._on_readable)

    @property
    def alive(self) -> bool:
        return not self._ended and self.process.poll() is None

    async def ready(self, timeout_s: float) -> float:
        """Wait for the init to end; its duration in ms, or InitFailed."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except TimeoutError:
            self.close()
            raise InitFailed(
                "timeout",
                {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"Init phase timed out after {timeout_s:.2f} seconds",
                },
            ) from None

    async def fork(
        self,
        request: dict[str, Any],
        fds: list[int],
        gone: asyncio.Future[None] | None = None,
    ) -> tuple[int, asyncio.Future[int]]:
        """Fork one environment; its pid (in the snapshot's PID namespace) and exit status.
        Never blocks the event loop: a snapshot that stops reading or answering is killed
        after CONTROL_TIMEOUT_S (ControlViolation). A call cancelled before it returns
        resolves `gone` once its fork holds nothing any more: never made, or ended."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[int] = loop.create_future()
        try:
            body = orjson.dumps(request)
            header = _HEADER.pack(len(body))
            await self._lock.acquire()
        except BaseException:
            _resolve(gone)  # nothing was sent
            raise
        # Waiting before the request goes out: its reply may be read before the send
        # returns. Replies come in request order, which the lock keeps: it is held until the
        # whole request is out, even by a caller cancelled meanwhile (a request cut short
        # would garble the next one), so the send runs as a task of its own.
        self._pending.append(reply)
        send = asyncio.ensure_future(
            asyncio.wait_for(self._send_with(header, body, fds), CONTROL_TIMEOUT_S)
        )
        send.add_done_callback(lambda _: self._lock.release())
        send.add_done_callback(lambda sent: self._sent(sent, reply))
        try:
            await asyncio.shield(send)
        except asyncio.CancelledError:
            # Sent or being sent: its child is ended when its pid comes (a request that
            # failed to go out cancels the reply, which resolves `gone` at once).
            reply.add_done_callback(lambda answered: self._orphaned(answered, gone))
            raise
        except TimeoutError:
            _resolve(gone)
            # `_sent` has killed it already.
            raise ControlViolation("the snapshot was stopped: it stopped reading") from None
        except Exception:
            _resolve(gone)  # the request did not go out: nothing was forked
            raise
        try:
            pid = await asyncio.wait_for(asyncio.shield(reply), CONTROL_TIMEOUT_S)
        except TimeoutError:
            _resolve(gone)  # killed: its children went with it
            raise self._violated("it did not answer a fork request") from None
        except Exception:
            _resolve(gone)  # the snapshot ended: its children went with it
            raise
        except asyncio.CancelledError:
            # The request is out: a child is (being) forked that nobody will admit. Its
            # pid, when it comes, ends it (it also ends by itself once its pipes close).
            reply.add_done_callback(lambda answered: self._orphaned(answered, gone))
            raise
        return pid, self._exit_of(pid)

    def _exit_of(self, pid: int) -> asyncio.Future[int]:
        """The exit status of child `pid`, which may have been reported already."""
        exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._unclaimed.discard(pid)
        early = self._early_exits.pop(pid, None)
        if early is not None:
            exited.set_result(early)
        elif self._ended:
            exited.set_result(-signal.SIGKILL)  # the snapshot is gone, and its children
        else:
            self._exits[pid] = exited
        return exited

    def _sent(self, sent: asyncio.Future[None], reply: asyncio.Future[int]) -> None:
        """A request that did not go out whole has no reply to wait for."""
        if sent.cancelled() or sent.exception() is not None:
            if reply in self._pending:
                self._pending.remove(reply)
            reply.cancel()
            if not sent.cancelled() and isinstance(sent.exception(), TimeoutError):
                self._violated("it stopped reading its control socket")

    def _orphaned(self, reply: asyncio.Future[int], gone: asyncio.Future[None] | None) -> None:
        """A fork whose caller gave up: end it, and claim its exit (so that no later child
        given its pid is taken for ended), which resolves `gone`."""
        if reply.cancelled() or reply.exception() is not None:
            _resolve(gone)  # no child: the request did not go out, or the snapshot died
            return
        pid = reply.result()
        self._exit_of(pid).add_done_callback(lambda _: _resolve(gone))
        with contextlib.suppress(RuntimeError, OSError):
            self.child(pid).end()

    async def _send_with(self, header: bytes, body: bytes, fds: list[int]) -> None:
        """The header with `fds` (SCM_RIGHTS), then the body, without blocking."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sent = self._control.sendmsg(
                    [header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                )
                break
            except BlockingIOError:
                await writable(loop, self._control)
        await loop.sock_sendall(self._control, header[sent:] + body)

    def child(self, inner_pid: int) -> ChildProcess:
        """The snapshot's child known by its pid in the snapshot's PID namespace, held by a
        pidfd. The snapshot reaps its own children, so a pid number alone could by now name
        a process the kernel gave it to afterwards, anyone's: it is checked once the pidfd
        is open, and every later action goes through the pidfd."""
        own = self.process.pid
        with open(f"/proc/{own}/task/{own}/children", encoding="ascii") as listing:
            children = [int(pid) for pid in listing.read().split()]
        for pid in children:
            if _is_child_of(pid, own, inner_pid):
                try:
                    fd = os.pidfd_open(pid)
                except ProcessLookupError:
                    break
                if _is_child_of(pid, own, inner_pid):
                    return ChildProcess(pid, fd)
                os.close(fd)
                break
        raise ChildEnded(f"the snapshot's child {inner_pid} is gone")

    def _send(self, message: dict[str, Any]) -> None:
        """A short reply, sent from the reader callback: it must go out whole at once (the
        socket's buffer is empty while the snapshot waits for it), else the snapshot is
        not following the protocol."""
        body = orjson.dumps(message)
        data = _HEADER.pack(len(body)) + body
        try:
            sent = self._control.send(data)
        except BlockingIOError:
            sent = 0
        if sent != len(data):
            self._violated("its control socket would not take a reply")

    def _on_readable(self) -> None:
        try:
            data = self._control.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._closed()
            return
        try:
            messages, self._buffer = split_frames(self._buffer + data, CONTROL_FRAME_MAX)
            for message in messages:
                self._dispatch(message)
        except (FrameTooLarge, ValueError, TypeError, KeyError, OSError) as error:
            self._violated(f"a malformed control message ({error})")

    def _violated(self, why: str) -> ControlViolation:
        """Kill a snapshot that broke the protocol; the error to raise where one is due."""
        log.warning("SnapStart snapshot %s killed: %s", self.process.pid, why)
        self.close(wait=False)  # its owner closes it again, waiting, when the server stops
        return ControlViolation(f"the snapshot was stopped: {why}")

    def _dispatch(self, message: dict[str, Any]) -> None:
        if not isinstance(message, dict):
            raise TypeError("not an object")
        if "userns" in message:
            # Once, before the init: the map is written by root on the snapshot's word.
            if self._mapped or self._ready.done():
                raise ValueError("a second user namespace")
            self._mapped = True
            self._map_user_namespace()
        elif "ready" in message:
            self.init_ms = float(message.get("init_ms") or 0.0)
            if not self._ready.done():
                self._ready.set_result(self.init_ms)
        elif "init_error" in message:
            if not self._ready.done():
                self._ready.set_exception(InitFailed("error", message["init_error"]))
        elif "pid" in message and self._pending:
            waiter = self._pending.pop(0)
            if not waiter.done():
                self._unclaimed.add(int(message["pid"]))
                waiter.set_result(int(message["pid"]))
        elif "exit" in message:
            pid, status = int(message["exit"]), int(message["status"])
            exited = self._exits.pop(pid, None)
            if exited is None and pid in self._unclaimed:
                # Its pid's reply was read, not yet seen by `fork`.
                if len(self._early_exits) >= _EARLY_EXITS_MAX:
                    self._early_exits.pop(next(iter(self._early_exits)))
                self._early_exits[pid] = status
            elif exited is not None and not exited.done():
                exited.set_result(status)

    def _map_user_namespace(self) -> None:
        """The snapshot made its user namespace: map its uids (written by root, here)."""
        assert self.isolation is not None
        pid = self.process.pid
        with open(f"/proc/{pid}/uid_map", "w", encoding="ascii") as uid_map:
            uid_map.write(self.isolation.uid_map())
        with open(f"/proc/{pid}/setgroups", "w", encoding="ascii") as setgroups:
            setgroups.write("deny")
        with open(f"/proc/{pid}/gid_map", "w", encoding="ascii") as gid_map:
            gid_map.write(self.isolation.uid_map())
        self._send({"mapped": True})

    def _closed(self) -> None:
        """The snapshot ended: its environments cannot report any more; treat them as gone."""
        self._stopped()
        self._environments_gone()

    def _stopped(self) -> None:
        """Whoever waits on the snapshot itself (its init, a fork's pid) hears it is gone."""
        self._ended = True
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            asyncio.get_running_loop().remove_reader(self._control.fileno())
        if not self._ready.done():
            status = self.process.poll()
            self._ready.set_exception(
                InitFailed(
                    "error",
                    {
                        "errorType": "Runtime.ExitError",
                        "errorMessage": "RequestId:  Error: Runtime exited with error: "
                        + (f"exit status {status}" if status is not None else "signal: killed"),
                    },
                )
            )
        for waiter in self._pending:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the snapshot process exited"))
        self._pending.clear()

    def _environments_gone(self) -> None:
        """Its environments are reported ended (killed with it)."""
        for exited in self._exits.values():
            if not exited.done():
                exited.set_result(-signal.SIGKILL)
        self._exits.clear()

    def close(self, wait: bool = True) -> None:
        """Kill the snapshot (its environments, in its PID namespace, go with it) and release
        what it held once it is gone.

        Its death can take a while: the kernel ends every environment in its PID namespace
        first, and one holding much memory takes time to free it. With `wait` False (a
        snapshot stopped while the server serves), the event loop learns of the death from
        the process's pidfd instead of blocking on it. Closing again waits (the server
        stopping: nothing it held is left behind)."""
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            asyncio.get_running_loop().remove_reader(self._control.fileno())
        self._stopped()  # whoever waits on it hears it is gone
        with contextlib.suppress(OSError):
            self._control.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            if not wait and self._finish_once_gone():
                return
            self._stop_watching()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        self._stop_watching()
        self._finish()

    @property
    def finished(self) -> bool:
        """Dead, reaped, and what it held released."""
        return self.process.poll() is not None and self.isolation is None

    def _finish(self) -> None:
        """Once it is dead: its environments are reported ended (so their own groups are
        removed only now, when nothing is left in them), then what it held is released."""
        self._environments_gone()
        self._release_isolation()

    def _finish_once_gone(self) -> bool:
        """`_finish` when the killed process has died, from the event loop; False where that
        cannot be watched for (no loop, or no pidfd on this system)."""
        if self._watching is not None:
            return True
        try:
            loop = asyncio.get_running_loop()
            pidfd = os.pidfd_open(self.process.pid)
        except (RuntimeError, OSError, AttributeError):
            return False

        def gone() -> None:
            self._stop_watching()
            self.process.poll()  # reaps it
            self._finish()

        try:
            loop.add_reader(pidfd, gone)
        except BaseException:
            os.close(pidfd)
            raise
        self._watching = (loop, pidfd)
        return True

    def _stop_watching(self) -> None:
        if self._watching is None:
            return
        loop, pidfd = self._watching
        self._watching = None
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            loop.remove_reader(pidfd)
        os.close(pidfd)

    def _release_isolation(self) -> None:
        if self.isolation is not None:
            isolation, self.isolation = self.isolation, None
            if isolation.cgroup is not None:
                isolation.cgroup.kill()
            isolation.release()


def _settled() -> asyncio.Future[None]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _is_child_of(pid: int, parent: int, inner_pid: int) -> bool:
    """Whether host pid `pid` is `parent`'s child known there as `inner_pid`."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    nspid = fields.get("NSpid", "").split()
    return fields.get("PPid", "").strip() == str(parent) and nspid[-1:] == [str(inner_pid)]


class ChildEnded(RuntimeError):
    """A snapshot's child ended, or is ending: what it alone held is closed or gone, though
    its pidfd turns readable only a moment later (the kernel closes a process's files and
    namespaces before it marks the process as exited)."""


class AdmissionFailed(RuntimeError):
    """A snapshot's child said its own admission steps failed (joining its cgroup, making
    its namespaces): the platform's failure, whether or not the child has ended yet."""


class ChildProcess:
    """A process of a snapshot's, held by a pidfd (see `Snapshot.child`)."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd = pidfd

    @property
    def alive(self) -> bool:
        """A pidfd turns readable once its process has ended."""
        if self._pidfd < 0:
            return False
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        return not poller.poll(0)

    def namespace(self, kind: str) -> int:
        """A descriptor of the process's namespace `kind`, opened while the process lives
        (so the pid it was opened by was still the process's own)."""
        try:
            fd = os.open(f"/proc/{self.pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            raise ChildEnded(f"the snapshot's child {self.pid} ended") from None
        if not self.alive:
            os.close(fd)
            raise ChildEnded(f"the snapshot's child {self.pid} ended")
        return fd

    def kill(self) -> None:
        if self._pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def end(self) -> None:
        """Kill it, and let go of it."""
        self.kill()
        self.close()

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


@dataclass
class _HeldNetwork:
    """A child of the snapshot holding a network namespace with a slot's interface in it."""

    inner_pid: int  # in the snapshot's PID namespace: what the environment joins by
    process: ChildProcess
    slot: Slot
    # Stops the credentials served in the namespace; the environment that joins takes it.
    unserve: Callable[[], None] = lambda: None

    def stop(self) -> None:
        self.process.end()


# What a fork that ended before its admission is held by: nothing to signal any more.
_ENDED = ChildProcess(0, -1)


class RestoredSandbox(ProcessGroupSandbox):
    """One environment forked from a snapshot."""

    def __init__(
        self,
        pid: int,
        output_fd: int,
        tmp_dir: Path,
        exited: asyncio.Future[int],
        cgroup: EnvironmentCgroup | None,
        release: Callable[[], None],
        process: ChildProcess | None = None,
    ) -> None:
        super().__init__(pid, output_fd, tmp_dir)
        self._exited = exited
        self.cgroup = cgroup
        self._release = release
        self._released = False
        # Under the namespace backend: the runtime by its pidfd, the rest by its cgroup.
        self._process = process
        self._on_cleanup: list[Callable[[], None]] = []

    def on_cleanup(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, when the environment is cleaned up."""
        self._on_cleanup.append(callback)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if self._process is None:
            super().kill()
        else:
            if self.cgroup is None and self._process.alive:
                # No group to end what it started by: its process tree, while its pid is
                # still its own.
                super().kill()
            self._process.kill()
        if self.cgroup is not None:
            self.cgroup.kill()

    def max_memory_bytes(self) -> int | None:
        measured = super().max_memory_bytes()
        group = self.cgroup.peak_bytes() if self.cgroup is not None else None
        return max(filter(None, (measured, group)), default=None)

    def oom_killed(self) -> bool:
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    def cleanup(self) -> None:
        super().cleanup()
        if self._released:
            return
        self._released = True
        for callback in self._on_cleanup:
            callback()
        if self._process is not None:
            self._process.close()
        if self.cgroup is None:
            self._release()
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self._remove_group())

    async def _remove_group(self) -> None:
        assert self.cgroup is not None
        await _remove_group(self.cgroup, self._exited)
        self._release()


class RuntimeSockets:
    """Where restored environments' Runtime APIs listen for the one connection the platform
    makes and hands to the runtime: a root-only directory; each path is unlinked once used."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="lamina-snap-"))

    def listener(self, environment_id: str) -> socket.socket:
        path = self.directory / f"{environment_id[:16]}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.setblocking(False)
        return listener

    def connect(self, environment_id: str) -> socket.socket:
        path = self.directory / f"{environment_id[:16]}.sock"
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(str(path))
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
        return client

    def close(self) -> None:
        for path in self.directory.glob("*.sock"):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()


class RestoredBackend:
    """The sandbox backend of one SnapStart version's environments: forks of its snapshot."""

    def __init__(
        self,
        snapshot: Snapshot,
        sockets: RuntimeSockets,
        cgroups: Callable[[str, int], EnvironmentCgroup | None],
        mapping: PathMapping,
        name: str,
        network: NetworkIsolation | None = None,
        credentials: CredentialsServer | None = None,
    ) -> None:
        self.name = f"{name}+snapstart"
        # Served in each environment's own network namespace (else the snapshot's serves all).
        self._credentials = credentials
        self.snapshot = snapshot
        self._sockets = sockets
        self._cgroups = cgroups
        self._mapping = mapping
        # Each environment's own network namespace gets the interface of one of its slots.
        self._network = network
        # Network namespaces made ahead by the snapshot, each holding a slot's interface
        # already: moving an interface costs ~20 ms of the kernel's time, off the cold path.
        self._held: deque[_HeldNetwork] = deque()
        self._holding: asyncio.Task[None] | None = None
        self._policy: NetworkPolicy | None = None
        self._closed = False
        # Environments restored and not yet cleaned up.
        self.live = 0

    async def listen(self, spec: SandboxSpec) -> socket.socket:
        return self._sockets.listener(spec.scratch_root.name)

    def abandon(self, spec: SandboxSpec) -> None:
        """Nothing to give back: the listener was all `listen` made."""

    async def start(self, spec: SandboxSpec) -> RestoredSandbox:
        environment = {
            key: mounts.inside_paths(value, self._mapping)
            for key, value in spec.environment.items()
            if key not in HIDDEN_VARIABLES
        }
        environment["AWS_LAMBDA_RUNTIME_API"] = RUNTIME_API_ADDRESS
        if self._credentials is not None:
            environment.update(self._credentials.variables)
        spec.scratch_root.mkdir(parents=True, exist_ok=True)
        runtime = self._sockets.connect(spec.scratch_root.name)
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self.live += 1
        try:
            if self.snapshot.isolation is None:
                sandbox = await self._fork_plain(spec, environment, read_fd, write_fd, runtime)
            else:
                sandbox = await self._fork_isolated(spec, environment, read_fd, write_fd, runtime)
        except BaseException:
            self.live -= 1
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
            runtime.close()
        sandbox.on_cleanup(self._ended)
        return sandbox

    def _ended(self) -> None:
        self.live -= 1

    async def _fork_plain(
        self,
        spec: SandboxSpec,
        environment: dict[str, str],
        read_fd: int,
        write_fd: int,
        runtime: socket.socket,
    ) -> RestoredSandbox:
        """Under the process backend: a fork with its own TMPDIR and rlimits, no more."""
        tmp_dir = spec.scratch_root / "tmp"
        tmp_dir.mkdir(mode=0o700, exist_ok=True)
        environment["TMPDIR"] = environment["LAMINA_TMP_DIR"] = str(tmp_dir)
        chosen = limits.process_limits(spec.memory_mb, spec.ephemeral_mb)
        request = {"env": environment, "cwd": str(spec.task_root), "limits": chosen}
        inner, exited = await self.snapshot.fork(request, [write_fd, runtime.fileno()])
        return RestoredSandbox(inner, read_fd, tmp_dir, exited, None, lambda: None)

    async def _fork_isolated(
        self,
        spec: SandboxSpec,
        environment: dict[str, str],
        read_fd: int,
        write_fd: int,
        runtime: socket.socket,
    ) -> RestoredSandbox:
        """Under the namespace backend: see the module's docstring for what the child does;
        here, its cgroup, and the interface of its own network namespace."""
        isolation = self.snapshot.isolation
        assert isolation is not None
        network = self._network
        held, slot = await self._network_for(spec)
        inside_uid = self._take_uid(isolation, held, slot)
        cgroup: EnvironmentCgroup | None = None
        pipes: list[int] = []
        child: ChildProcess | None = None
        exited: asyncio.Future[int] | None = None
        # When what was forked for it is gone: nothing yet, so at once.
        gone = _settled()
        # Its credentials: served in its namespace, or in the held one it joins.
        unserve = held.unserve if held is not None else _nothing

        def release() -> None:
            isolation.free.append(inside_uid)
            if slot is not None and network is not None:
                network.discard(slot)  # its interface went with the environment

        try:
            cgroup = self._cgroups(spec.scratch_root.name, spec.memory_mb)
            request = _fork_request(spec, environment, cgroup, inside_uid, slot, held)
            go_read, go_write, ready_read, ready_write, joining = _admission_fds(cgroup, pipes)
            fds = [write_fd, runtime.fileno(), go_read, ready_write, *joining]
            gone = asyncio.get_running_loop().create_future()  # `fork` resolves it
            inner, exited = await self.snapshot.fork(request, fds, gone)
            _close_all(pipes, [ready_write, *joining])  # the child's now
            child = self.snapshot.child(inner)
            lent = None if held is not None else slot  # a held namespace has its interface
            unserve = await self._admit(spec, child, cgroup, lent, ready_read) or unserve
            os.write(go_write, b"g")
        except BaseException as error:
            unserve()
            if held is not None:
                held.stop()
            # Whether it ended by itself (init code left something behind that ends forks)
            # is asked before it is killed here: a failure of the platform's is not the
            # function's.
            alone = isinstance(error, ChildEnded) or (
                isinstance(error, Exception)
                and not isinstance(error, AdmissionFailed)
                and (child is None or not child.alive)
            )
            if child is not None:
                child.end()
            abandon = functools.partial(_abandon, cgroup, exited or gone, release)
            if alone and exited is not None and await _ended_by_itself(exited, abandon):
                # Its runtime exited before it could be admitted, as the invocation will say.
                tmp = spec.scratch_root / "tmp"
                return RestoredSandbox(0, read_fd, tmp, exited, cgroup, release, _ENDED)
            abandon()
            raise
        finally:
            for fd in pipes:
                os.close(fd)
        if held is not None:
            held.stop()  # the environment is in its namespace: the holder's job is done
        sandbox = RestoredSandbox(
            child.pid, read_fd, spec.scratch_root / "tmp", exited, cgroup, release, child
        )
        sandbox.on_cleanup(unserve)
        return sandbox

    def _take_uid(
        self, isolation: SnapshotIsolation, held: _HeldNetwork | None, slot: Slot | None
    ) -> int:
        """A uid of the snapshot's for a new environment, which was given `held` and `slot`
        (given back if none is left)."""
        if not isolation.free:
            self._give_back(held, slot)
            raise RuntimeError(
                f"all {ENVIRONMENTS_PER_SNAPSHOT} environments of the snapshot are in use"
            )
        return isolation.free.pop()

    def _give_back(self, held: _HeldNetwork | None, slot: Slot | None) -> None:
        """What `_network_for` gave an environment that will not start."""
        if held is not None:
            held.stop()
            held.unserve()
        if slot is not None and self._network is not None:
            self._network.discard(slot)

    def _hold_ahead(self) -> None:
        """Keep one network namespace made ahead, filling it in the background."""
        if self._network is None or self._closed or self._held:
            return
        if self._holding is None or self._holding.done():
            self._holding = asyncio.ensure_future(self._hold_one())

    async def _hold_one(self) -> None:
        network = self._network
        assert network is not None
        slot = await network.take(self._policy)
        ready_read, ready_write = os.pipe()
        child: ChildProcess | None = None
        try:
            inner, _ = await self.snapshot.fork({"hold": True}, [ready_write])
            os.close(ready_write)
            ready_write = -1
            child = self.snapshot.child(inner)
            await _readable(ready_read, 10.0)
            unserve = await _lend(network, slot, child, self._credentials) or _nothing
        except BaseException as error:
            if child is not None:
                child.end()
            network.discard(slot)
            if not isinstance(error, Exception):
                raise  # cancelled: the backend is closing
            log.exception("preparing a network namespace for a SnapStart environment failed")
            return
        finally:
            os.close(ready_read)
            if ready_write >= 0:
                os.close(ready_write)
        held = _HeldNetwork(inner, child, slot, unserve)
        if self._closed:
            held.stop()
            held.unserve()
            network.discard(slot)
            return
        self._held.append(held)

    def prepare(self, policy: NetworkPolicy | None) -> None:
        """Start making what the first environment will use: a network namespace of the
        network `policy` names (the version's placement; None: the default network)."""
        self._policy = policy
        self._hold_ahead()

    def _drop_held(self) -> None:
        while self._held:
            held = self._held.popleft()
            held.stop()
            held.unserve()
            if self._network is not None:
                self._network.discard(held.slot)

    async def _network_for(self, spec: SandboxSpec) -> tuple[_HeldNetwork | None, Slot | None]:
        """A network namespace made ahead and its slot, else a slot to move in now."""
        if spec.network != self._policy:
            # Made ahead for another network (the version's placement changed): not usable.
            self._policy = spec.network
            self._drop_held()
        held = self._held.popleft() if self._held else None
        self._hold_ahead()
        if held is not None:
            return held, held.slot
        if self._network is None:
            return None, None
        return None, await self._network.take(spec.network)

    async def _admit(
        self,
        spec: SandboxSpec,
        child: ChildProcess,
        cgroup: EnvironmentCgroup | None,
        slot: Slot | None,
        ready_read: int,
    ) -> Callable[[], None] | None:
        """Once the new child is in its cgroup and its namespaces exist: `slot`'s interface
        into its network namespace (off the event loop's thread: moving an interface waits
        on the kernel for tens of ms), and its credentials served there; what stops them
        (None: nothing was served)."""
        await _readable(ready_read, 10.0)
        unserve = None
        if slot is not None and self._network is not None:
            unserve = await _lend(self._network, slot, child, self._credentials)
        channel = spec.runtime_api
        if cgroup is not None and channel is not None:
            cap_after_init(channel, cgroup, spec.memory_mb)
        return unserve

    def describe(self) -> list[tuple[str, bool, str]]:
        return [("SnapStart: environments forked from an initialised snapshot", True, "")]

    def close(self) -> None:
        """Give back what was made ahead (the snapshot's owner closes the snapshot)."""
        self._closed = True
        if self._holding is not None:
            self._holding.cancel()
        self._drop_held()


def _fork_request(
    spec: SandboxSpec,
    environment: dict[str, str],
    cgroup: EnvironmentCgroup | None,
    uid: int,
    slot: Slot | None,
    held: _HeldNetwork | None,
) -> dict[str, Any]:
    return {
        "env": environment,
        "cwd": "/var/task",
        "limits": limits.namespace_limits(None if cgroup else spec.memory_mb),
        "isolation": _isolation(spec, uid, slot, held),
    }


def _isolation(
    spec: SandboxSpec, uid: int, slot: Slot | None, held: _HeldNetwork | None
) -> dict[str, Any]:
    """What a restored child makes its own (see `runtimes/python/snapshot.py`)."""
    return {
        "uid": uid,
        "tmp_bytes": spec.ephemeral_mb << 20,
        # A namespace of its own with a slot's interface moved in now, or one made ahead.
        "own_network": slot is not None and held is None,
        "netns_holder": held.inner_pid if held is not None else None,
    }


def _abandon(
    cgroup: EnvironmentCgroup | None,
    gone: asyncio.Future[Any],
    release: Callable[[], None],
) -> None:
    """Undo what a fork that will not be an environment holds: its cgroup emptied and removed,
    and its uid given back, once it is gone (`gone`: its exit, or that it never was)."""
    if cgroup is not None:
        cgroup.kill()
        removing = asyncio.ensure_future(_remove_group(cgroup, gone))
        _REMOVING.add(removing)
        removing.add_done_callback(_REMOVING.discard)
    if gone.done():
        release()
    else:
        gone.add_done_callback(lambda _: release())


# Removals of abandoned forks' cgroups under way (a task needs a reference to live).
_REMOVING: set[asyncio.Future[None]] = set()


async def _ended_by_itself(exited: asyncio.Future[int], abandon: Callable[[], None]) -> bool:
    """Whether a fork that failed its admission ended (its exit is reported shortly after);
    a caller cancelled meanwhile still has what the fork held undone."""
    try:
        # Asked only of a fork that is gone or no longer alive: its exit is on its way, but
        # a loaded machine may take seconds to report it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), CONTROL_TIMEOUT_S)
    except BaseException:
        abandon()
        raise
    return exited.done()


async def _remove_group(cgroup: EnvironmentCgroup, gone: asyncio.Future[Any]) -> None:
    """Remove an environment's cgroup once its processes are gone: a group is busy until
    the last one has exited, which can take a moment after SIGKILL."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(gone), 5)
    await cgroup.remove_once_empty()


async def _lend(
    network: NetworkIsolation,
    slot: Slot,
    child: ChildProcess,
    credentials: CredentialsServer | None,
) -> Callable[[], None] | None:
    """`slot`'s interface into `child`'s network namespace, named by descriptor, and with
    `credentials`, those served at 127.0.0.1:9001 there; what stops serving them."""
    netns = child.namespace("net")
    # The thread owns these descriptors (and closes them): a caller cancelled meanwhile must
    # not close them under the thread, whose numbers could by then name other namespaces. The
    # slot's own is duplicated for it: a caller that gives up discards the slot at once.
    try:
        slot_netns = os.dup(slot.fd)
    except BaseException:
        os.close(netns)
        raise
    moving = asyncio.ensure_future(
        asyncio.to_thread(
            _move_interface, network, slot, slot_netns, netns, credentials is not None
        )
    )
    try:
        listener = await asyncio.shield(moving)
    except asyncio.CancelledError:
        moving.add_done_callback(_close_listener)
        raise
    if listener is None or credentials is None:
        return None
    try:
        return await credentials.serve(listener)
    except BaseException:
        listener.close()
        raise


def _move_interface(
    network: NetworkIsolation, slot: Slot, slot_netns: int, netns: int, listen: bool
) -> socket.socket | None:
    try:
        network.lend(slot, slot_netns, netns)
        return network.listen_in(netns) if listen else None
    finally:
        os.close(slot_netns)
        os.close(netns)


def _close_listener(moved: asyncio.Future[socket.socket | None]) -> None:
    """The listener a move made for a caller that gave up on it."""
    if not moved.cancelled() and moved.exception() is None and (listener := moved.result()):
        listener.close()


def _nothing() -> None:
    return None


def _close_all(opened: list[int], closing: list[int]) -> None:
    for fd in closing:
        os.close(fd)
        opened.remove(fd)


def _admission_fds(
    cgroup: EnvironmentCgroup | None, opened: list[int]
) -> tuple[int, int, int, int, list[int]]:
    """A fork's go pipe, its ready pipe, and its cgroup's `cgroup.procs` files: the child
    joins its cgroup itself, by files opened here, so that no pid is ever written. Each
    descriptor is noted in `opened` as soon as it exists."""
    go_read, go_write = os.pipe()
    opened += [go_read, go_write]
    ready_read, ready_write = os.pipe()
    opened += [ready_read, ready_write]
    joining: list[int] = []
    for name in cgroup.procs_files if cgroup else []:
        joining.append(_open_for_joining(name))
        opened.append(joining[-1])
    return go_read, go_write, ready_read, ready_write, joining


def _open_for_joining(procs: str) -> int:
    """A cgroup's `cgroup.procs` opened by root: whoever holds it can write "0" to move
    itself in (the kernel checks the opener's credentials)."""
    return os.open(procs, os.O_WRONLY | os.O_CLOEXEC)


async def _readable(fd: int, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout_s)
    finally:
        loop.remove_reader(fd)
    said = os.read(fd, 1)
    if not said:
        # Only the child holds the pipe's other end by now, and it closed it unasked.
        raise ChildEnded("the restored environment ended before its network was set up")
    if said != b"r":
        raise AdmissionFailed("the restored environment could not be set up")


def spawn_snapshot(
    argv: list[str],
    environment: dict[str, str],
    output_fd: int,
    control_fd: int,
    enter: Callable[[], None] | None,
) -> subprocess.Popen[bytes]:
    """Start the snapshot process; with `enter`, as process 1 of a new PID namespace that
    `enter` isolates between fork and exec (see `namespace.enter_sandbox`)."""
    own = -1
    if enter is not None:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        mounts.unshare(mounts.CLONE_NEWPID)
    try:
        return subprocess.Popen(
            argv,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output_fd,
            stderr=output_fd,
            pass_fds=(control_fd,),
            start_new_session=enter is None,
            cwd=None if enter is not None else environment.get("LAMBDA_TASK_ROOT"),
            # The child runs only system calls before exec (see `enter_sandbox`).
            preexec_fn=enter,  # noqa: PLW1509
        )
    finally:
        if own >= 0:
            mounts.setns(own, mounts.CLONE_NEWPID)
            os.close(own)


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
