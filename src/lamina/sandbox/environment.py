"""One execution environment: a sandboxed runtime, its Runtime API, and its output.

An environment serves one invocation at a time. After a timeout, a crash or an out-of-memory
kill it is dead and is never used again. What happens to it is told to its listener as
lifecycle events (`lamina.sandbox.lifecycle`); it writes no platform line itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import functools
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from lamina.constants import (
    FUNCTION_RESPONSE_SIZE_TOO_LARGE,
    INIT_TIMEOUT_S,
    RUNTIME_EXIT_ERROR,
    RUNTIME_INVALID_ENTRYPOINT,
    RUNTIME_OUT_OF_MEMORY,
    SANDBOX_TIMEDOUT,
    SYNC_PAYLOAD_MAX_BYTES,
)
from lamina.sandbox.after_answer import AfterAnswer
from lamina.sandbox.api import EntrypointError, Sandbox, SandboxBackend, SandboxSpec
from lamina.sandbox.lifecycle import (
    EnvironmentEvent,
    EnvironmentListener,
    InitStarted,
    InvokeEnded,
    InvokeStarted,
    RestoreReported,
    RestoreStarted,
    ShutDown,
    Unheard,
)
from lamina.sandbox.log_sink import LogSink
from lamina.sandbox.output import READ_PER_WAKE, EnvironmentOutput, read_output
from lamina.sandbox.runtime_api import Invocation, Outcome, RuntimeApiProtocol, RuntimeChannel

_MIB = 1024 * 1024


class State(enum.Enum):
    NEW = "new"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass(frozen=True)
class InvokeOutcome:
    """What an invocation produced, as the Invoke API reports it."""

    payload: bytes
    function_error: bool
    log_tail: bytes
    duration_ms: float
    billed_ms: int
    init_ms: float | None
    max_memory_mb: int
    status: str | None = None
    error_type: str | None = None

    @property
    def log_result(self) -> str:
        return base64.b64encode(self.log_tail).decode()


def _error_payload(error_type: str, message: str) -> bytes:
    return orjson.dumps({"errorType": error_type, "errorMessage": message})


def _reported_error_type(error_type: str | None) -> str:
    """The `Error Type` REPORT gives a failed init: the runtime's own `Runtime.*` types pass,
    an exception's class name (`ValueError`) reads `Runtime.Unknown`."""
    if error_type and error_type.startswith(("Runtime.", "Function.")):
        return error_type
    return "Runtime.Unknown"


# What an invocation the runtime never answered (it exited, or its time ran out) resolves
# to: the environment wakes its waiting invocation with it at once, in the step where it
# learns of the end, so an answer's wake-up takes no extra step through the event loop.
# Told apart by identity: an empty answer from the runtime is equal to it, never it.
_NO_ANSWER = Outcome(b"")


def _give_up(invocation: Invocation) -> None:
    """End the wait for `invocation`'s answer, unless the answer is in."""
    if not invocation.outcome.done():
        invocation.outcome.set_result(_NO_ANSWER)


def _keep_taking_answers(invocation: Invocation) -> None:
    """After the wait for `invocation` was cancelled. A cancelled wait cancels the future
    it awaited (unless the answer or the marker was in already); the runtime may still
    answer, and its answer is taken as before, into a future nobody waits on."""
    if invocation.outcome.cancelled():
        invocation.outcome = asyncio.get_running_loop().create_future()


def unstarted_invocation(
    listener: EnvironmentListener,
    output: EnvironmentOutput,
    request_id: str,
    version: str,
    memory_mb: int,
    payload: bytes,
    error_type: str,
    xray: tuple[str, str] | None = None,
) -> InvokeOutcome:
    """An invocation no environment could take (its runtime cannot start on this host).

    On AWS every invocation has its START, END and REPORT in the function's log stream, so
    it gets them here too, in `output`'s stream, with the error in REPORT.
    """
    listener.environment_event(InvokeStarted(request_id, version), output)
    listener.environment_event(
        InvokeEnded(request_id, 0.0, 0, memory_mb, 0, None, "error", error_type, xray), output
    )
    return InvokeOutcome(payload, True, output.tail(), 0.0, 0, None, 0, "error", error_type)


class ExecutionEnvironment:
    """Starts a sandbox, initialises the runtime, then runs invocations one at a time."""

    def __init__(
        self,
        backend: SandboxBackend,
        spec: SandboxSpec,
        memory_mb: int,
        version: str,
        log_sink: LogSink,
        log_group: str,
        log_stream: str,
        environment_id: str | None = None,
        report_init: bool = True,
        listener: EnvironmentListener | None = None,
        restored: bool = False,
    ) -> None:
        self.id = environment_id or uuid.uuid4().hex
        self.state = State.NEW
        self.memory_mb = memory_mb
        self.version = version
        self.invocations = 0
        self.last_used = time.monotonic()
        self._backend = backend
        self._spec = spec
        self.output = EnvironmentOutput(log_sink, log_group, log_stream)
        self._listener = listener or Unheard()
        self._sandbox: Sandbox | None = None
        self._server: asyncio.AbstractServer | None = None
        self._channel: RuntimeChannel | None = None
        self._exited: asyncio.Task[int] | None = None
        self._init_ms: float | None = None
        self._init_reported = not report_init
        self.init_error: bytes | None = None
        # How a failed init ends in REPORT: "error" or "timeout", and the error type.
        self._init_status = "error"
        self._init_error_type: str | None = None
        self._peak_bytes = 0
        # Forked from its version's snapshot (SnapStart): its start is a restore, reported
        # as RESTORE_REPORT and in the first REPORT's `Restore Duration`, not as an init.
        self.restored = restored

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the runtime and wait (at most 10 s) until it asks for its first event."""
        loop = asyncio.get_running_loop()
        channel = self._channel = RuntimeChannel()
        listener = await self._backend.listen(self._spec)
        try:
            self._server = await loop.create_server(
                lambda: RuntimeApiProtocol(channel), sock=listener
            )
        except BaseException:
            listener.close()
            self._backend.abandon(self._spec)
            raise
        host, port = listener.getsockname()[:2]
        spec_env = {**self._spec.environment, "AWS_LAMBDA_RUNTIME_API": f"{host}:{port}"}
        spec = SandboxSpec(
            **{**self._spec.__dict__, "environment": spec_env, "runtime_api": self._channel}
        )
        started = time.perf_counter()
        try:
            self._sandbox = await self._backend.start(spec)
        except EntrypointError as error:
            self._init_ms = (time.perf_counter() - started) * 1000
            # AWS's wording (its init is written in Go): "fork/exec <path>: <errno text>".
            self._init_error_type = RUNTIME_INVALID_ENTRYPOINT
            self.init_error = _error_payload(
                RUNTIME_INVALID_ENTRYPOINT,
                f"fork/exec {self._inside(error.path)}: {error.reason.lower()}",
            )
            self.destroy()
            return
        loop.add_reader(self._sandbox.output_fd, self._on_output)
        self._exited = asyncio.ensure_future(self._sandbox.wait())
        self._exited.add_done_callback(self._on_exit)
        init = asyncio.ensure_future(asyncio.shield(self._channel.initialized))
        waiters: set[asyncio.Future[Any]] = {init, self._exited}
        done, _ = await asyncio.wait(
            waiters, timeout=INIT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        self._init_ms = (time.perf_counter() - started) * 1000
        # A reading while the runtime is surely there: a failed init is over soon after.
        self._max_memory_mb()
        if init in done and init.result() is None:
            self.state = State.IDLE
            if self.restored:
                self._emit(RestoreReported(self._init_ms))
            return
        init.cancel()
        self._drain_output()
        if init in done:
            outcome = init.result()
            assert outcome is not None
            self.init_error = outcome.body or _error_payload(outcome.error_type or "Unknown", "")
            self._init_error_type = _reported_error_type(outcome.error_type)
        elif self._exited in done:
            self._init_error_type = RUNTIME_EXIT_ERROR
            self.init_error = _error_payload(
                RUNTIME_EXIT_ERROR,
                f"Runtime exited with error: {self._exit_description(self._exited.result())}",
            )
        else:
            self._init_status = "timeout"
            self.init_error = _error_payload(
                SANDBOX_TIMEDOUT, f"Init phase timed out after {INIT_TIMEOUT_S:.2f} seconds"
            )
        self.destroy()

    def _on_exit(self, _: asyncio.Future[int]) -> None:
        """A runtime that ends between invocations (as AWS's do after a fatal error) leaves
        a dead environment: destroy it now, so no invocation is handed to it. One that ends
        during an invocation ends the wait for its answer."""
        if self.state is State.IDLE:
            self.destroy()
        elif self._channel is not None and self._channel.current is not None:
            _give_up(self._channel.current)

    def destroy(self) -> None:
        """Kill every process of the environment and release what it held."""
        if self.state is State.DEAD:
            return
        self._terminate()
        self._emit(ShutDown(self.id))

    def _terminate(self) -> None:
        """`destroy` without telling the listener, for an invocation that still has to
        report how it ended: its END and REPORT come before the environment's shutdown.
        Once only: the output descriptor is closed by the first, and its number may be
        another file's by a second (an invocation ending after the server destroyed its
        environment on the way down)."""
        if self.state is State.DEAD:
            return
        self.state = State.DEAD
        if self._sandbox is not None:
            self._max_memory_mb()  # the last reading, while the processes are still there
            self._sandbox.kill()
            self._drain_output()
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self._sandbox.output_fd)
            self._sandbox.cleanup()
        if self._server is not None:
            self._server.close()

    def _inside(self, path: str) -> str:
        """`path` as the function sees it: its code under /var/task, its layers under /opt."""
        for host, inside in ((self._spec.task_root, "/var/task"), (self._spec.opt_dir, "/opt")):
            if host is not None and path.startswith(f"{host}/"):
                return inside + path[len(str(host)) :]
        return path

    def _max_memory_mb(self) -> int:
        """The environment's peak memory so far in MB, at least 1 and at most its MemorySize:
        AWS never reports more than the function may use."""
        if self._sandbox is not None:
            self._peak_bytes = max(self._peak_bytes, self._sandbox.max_memory_bytes() or 0)
        return min(self.memory_mb, max(1, math.ceil(self._peak_bytes / _MIB)))

    def report_init_failure(
        self, request_id: str, xray: tuple[str, str] | None = None
    ) -> InvokeOutcome:
        """Answer an invocation with this environment's failed init. Its START, END and
        REPORT (with the init's status and error type) follow the init's own output in the
        stream, as AWS logs an invocation whose init failed."""
        assert self.init_error is not None
        init_ms = None if self._init_reported else self._init_ms
        self._init_reported = True
        status, error_type = self._init_status, self._init_error_type
        billed = math.ceil(init_ms or 0)
        max_memory_mb = self._max_memory_mb()
        self._emit(InvokeStarted(request_id, self.version))
        self._emit(
            InvokeEnded(
                request_id,
                0.0,
                billed,
                self.memory_mb,
                max_memory_mb,
                init_ms,
                status,
                error_type,
                xray,
            )
        )
        return InvokeOutcome(
            payload=self.init_error,
            function_error=True,
            log_tail=self.output.tail(),
            duration_ms=0.0,
            billed_ms=billed,
            init_ms=init_ms,
            max_memory_mb=max_memory_mb,
            status=status,
            error_type=error_type,
        )

    def log_init_start(self, runtime: str, interpreter: str) -> None:
        """Report that `runtime` is starting on `interpreter` (INIT_START, or RESTORE_START
        for an environment restored from a snapshot), before `start`."""
        self._emit(
            RestoreStarted(runtime, interpreter)
            if self.restored
            else InitStarted(runtime, interpreter)
        )

    @property
    def restore_timed_out(self) -> bool:
        """A restored environment whose runtime and after-restore hooks took longer than
        the restore may (10 s on AWS, as the init here)."""
        return self.restored and self.init_error is not None and self._init_status == "timeout"

    @property
    def init_ms(self) -> float | None:
        return self._init_ms

    def tail(self) -> bytes:
        return self.output.tail()

    @property
    def alive(self) -> bool:
        return self.state in {State.IDLE, State.BUSY}

    # ------------------------------------------------------------------- invoking

    async def invoke(
        self,
        invocation: Invocation,
        timeout_s: float,
        xray: tuple[str, str] | None = None,
        after: AfterAnswer | None = None,
    ) -> InvokeOutcome:
        """Run one invocation; `xray` (trace id, segment id) marks one the platform traces.

        `after`: the caller reads no log tail and answers its client first. An invocation
        that ended by answering leaves its END and REPORT lines to it; the environment is
        released only after them, so no other invocation of it comes between."""
        assert self.state is State.IDLE and self._channel and self._exited and self._sandbox
        self.state = State.BUSY
        self.invocations += 1
        init_ms = None if self._init_reported else self._init_ms
        self._init_reported = True
        # A caller that answers first reads no log tail (see `after` above).
        self.output.reset_tail(keep=after is None)
        started = time.perf_counter()
        self._channel.deliver(invocation)
        # START is written while the runtime works on the event, not before it has it: no
        # output of the function's can be read before this step of the loop ends, so the
        # line still comes first in its stream.
        self._emit(InvokeStarted(invocation.request_id, self.version))
        timer = self._end_wait_at_timeout_or_exit(invocation, timeout_s)
        try:
            outcome = await invocation.outcome
        except asyncio.CancelledError:
            _keep_taking_answers(invocation)
            raise
        finally:
            timer.cancel()
        duration_ms = (time.perf_counter() - started) * 1000
        status = error_type = None
        if outcome is not _NO_ANSWER:
            payload, failed = self._payload_of(outcome)
            if outcome.oversize is not None:
                error_type = FUNCTION_RESPONSE_SIZE_TOO_LARGE
        else:
            payload, status, error_type = self._unanswered(invocation.request_id, timeout_s)
            failed = True
        max_memory_mb = self._max_memory_mb()
        # Only an invocation that ended by answering leaves its END and REPORT to `after`.
        end_later = after if status is None else None
        # Destroyed meanwhile (the server going down): its output descriptor is closed, and
        # its number may be another file's; it stays dead, and its shutdown was told.
        destroyed = self.state is State.DEAD
        if end_later is None and not destroyed:
            # Everything the function printed before answering is in the pipe by now.
            self._drain_output()
        if status is not None:
            self._terminate()
        elif not destroyed:
            self.state = State.IDLE
        self.last_used = time.monotonic()
        restore_ms = billed_restore = None
        if self.restored and init_ms is not None:
            # AWS bills the restore (loading the runtime, the after-restore hooks) with the
            # first invocation; here the whole restore is that work.
            restore_ms, init_ms = init_ms, None
            billed_restore = math.ceil(restore_ms)
        billed = math.ceil(duration_ms + (init_ms or 0) + (billed_restore or 0))
        ended = InvokeEnded(
            invocation.request_id,
            duration_ms,
            billed,
            self.memory_mb,
            max_memory_mb,
            init_ms,
            status,
            error_type if status else None,
            xray,
            restore_ms,
            billed_restore,
        )
        if end_later is not None:
            end_later.add(functools.partial(self._end, ended))
        else:
            self._emit(ended)
        if status is not None and not destroyed:
            self._emit(ShutDown(self.id))
        return InvokeOutcome(
            payload=payload,
            function_error=failed,
            log_tail=self.output.tail() if end_later is None else b"",
            duration_ms=duration_ms,
            billed_ms=billed,
            init_ms=init_ms,
            max_memory_mb=max_memory_mb,
            status=status,
            error_type=error_type,
        )

    def _end_wait_at_timeout_or_exit(
        self, invocation: Invocation, timeout_s: float
    ) -> asyncio.TimerHandle:
        """The timer that ends the wait for `invocation`'s answer after `timeout_s`. A
        runtime that has exited already ends it now: its exit's callback may have run
        before this invocation, while the environment was starting or its last invocation
        was ending, and left it to this check."""
        assert self._exited is not None
        if self._exited.done():
            _give_up(invocation)
        return asyncio.get_running_loop().call_later(timeout_s, _give_up, invocation)

    def _unanswered(self, request_id: str, timeout_s: float) -> tuple[bytes, str, str | None]:
        """(payload, REPORT status, error type) of an invocation its runtime never answered:
        it exited, or the time ran out."""
        assert self._exited is not None and self._sandbox is not None
        if self._exited.done():
            oom = self._sandbox.oom_killed()
            description = self._exit_description(self._exited.result())
            payload = _error_payload(
                RUNTIME_EXIT_ERROR,
                f"RequestId: {request_id} Error: Runtime exited with error: {description}",
            )
            return payload, "error", RUNTIME_OUT_OF_MEMORY if oom else RUNTIME_EXIT_ERROR
        payload = _error_payload(
            SANDBOX_TIMEDOUT,
            f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds",
        )
        return payload, "timeout", None

    def _end(self, ended: InvokeEnded) -> None:
        """An invocation's END and REPORT, after what it printed before answering (read
        unless the environment is gone: its output's descriptor is closed then)."""
        if self.state is not State.DEAD:
            self._drain_output()
        self._emit(ended)

    @staticmethod
    def _payload_of(outcome: Outcome) -> tuple[bytes, bool]:
        if outcome.oversize is not None:
            return (
                _error_payload(
                    FUNCTION_RESPONSE_SIZE_TOO_LARGE,
                    "Response payload size exceeded maximum allowed payload size "
                    f"({SYNC_PAYLOAD_MAX_BYTES} bytes).",
                ),
                True,
            )
        if outcome.error_type is not None:
            return outcome.body or _error_payload(outcome.error_type, ""), True
        return outcome.body, False

    def _exit_description(self, status: int) -> str:
        if status < 0:
            return "signal: killed" if status == -9 else f"signal: {-status}"
        return f"exit status {status}"

    # ---------------------------------------------------------------------- logs

    def _emit(self, event: EnvironmentEvent) -> None:
        self._listener.environment_event(event, self.output)

    def _on_output(self) -> None:
        """Output is readable; read some of it unless the log sink asks producers to wait."""
        if not self.output.saturated:
            self._drain_output(READ_PER_WAKE)
            return
        # Pause reading: the pipe fills and the function's writes block until the sink
        # catches up, so a chatty function cannot grow the platform's memory.
        assert self._sandbox is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(RuntimeError, ValueError):
            loop.remove_reader(self._sandbox.output_fd)
        loop.call_later(0.01, self._resume_output)

    def _resume_output(self) -> None:
        if self.state is not State.DEAD and self._sandbox is not None:
            asyncio.get_running_loop().add_reader(self._sandbox.output_fd, self._on_output)

    def _drain_output(self, limit: int | None = None) -> None:
        """Read whatever the runtime has written so far (at most `limit` bytes), without
        blocking; what is left wakes the reader again."""
        if self._sandbox is None:
            return
        if read_output(self._sandbox.output_fd, self.output, limit):
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(self._sandbox.output_fd)
