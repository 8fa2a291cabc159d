"""ExecutionEnvironment with the process backend and Lamina's Python runtime: start, invoke,
function errors, timeouts, crashes, destroy, lifecycle events and the log tail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lamina.constants import LOG_TAIL_BYTES, SYNC_PAYLOAD_MAX_BYTES
from lamina.sandbox.after_answer import AfterAnswer
from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.environment import ExecutionEnvironment, InvokeOutcome, State
from lamina.sandbox.lifecycle import (
    EnvironmentEvent,
    InitStarted,
    InvokeEnded,
    InvokeStarted,
    ShutDown,
)
from lamina.sandbox.log_sink import MemoryLogSink
from lamina.sandbox.output import EnvironmentOutput
from lamina.sandbox.runtime_api import Invocation
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP
from lamina.sandbox.zygote import library_path
from tests.support.sandboxes import TrackedBackend, eventually, process_gone

GROUP = "/aws/lambda/unit"
STREAM = "2024/01/01/[$LATEST]0123"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:unit"

APP = """
import os, signal, sys, threading, time

print("init output", flush=True)

def echo(event, context):
    print("echo", json_dumps(event), flush=True)
    return {"event": event, "pid": os.getpid(), "request_id": context.aws_request_id,
            "arn": context.invoked_function_arn}

def json_dumps(value):
    import json
    return json.dumps(value)

def fail(event, context):
    print("failing now", flush=True)
    raise ValueError("bad input")

def slow(event, context):
    print("going to sleep", flush=True)
    time.sleep(30)

def nap(event, context):
    time.sleep(0.4)
    return "rested"

def crash(event, context):
    print("about to exit", flush=True)
    os._exit(3)

def killed(event, context):
    os.kill(os.getpid(), signal.SIGKILL)

def chatty(event, context):
    for n in range(200):
        print("line %03d %s" % (n, "x" * 40))
    return "done"

def huge(event, context):
    return "x" * (7 * 1024 * 1024)

def leave_later(event, context):
    threading.Timer(0.2, os._exit, (0,)).start()
    return os.getpid()
"""
MODULES = {
    "app.py": APP,
    "broken.py": 'print("loading broken", flush=True)\nraise RuntimeError("no config")\n',
    "exits.py": "import os\nos._exit(2)\n",
    "hangs.py": "import time\ntime.sleep(30)\n",
}


class Recorder:
    """A lifecycle listener that keeps the events and writes START/END lines as the platform
    log would, so the tail shows where they land."""

    def __init__(self) -> None:
        self.events: list[EnvironmentEvent] = []

    def environment_event(self, event: EnvironmentEvent, output: EnvironmentOutput) -> None:
        self.events.append(event)
        if isinstance(event, InvokeStarted):
            output.platform(f"START {event.request_id}")
        elif isinstance(event, InvokeEnded):
            output.platform(f"END {event.request_id}")

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    root.mkdir()
    for name, text in MODULES.items():
        (root / name).write_text(text)
    return root


class Harness:
    """Builds environments for one test and destroys whatever it built."""

    def __init__(self, task_root: Path) -> None:
        self.task_root = task_root
        self.backend = TrackedBackend()
        self.sink = MemoryLogSink()
        self.built: list[ExecutionEnvironment] = []

    def environment(
        self, handler: str, report_init: bool = True, listener: Recorder | None = None
    ) -> ExecutionEnvironment:
        spec = SandboxSpec(
            command=(sys.executable, "-u", str(PYTHON_BOOTSTRAP)),
            environment={
                "PATH": "/usr/bin:/bin",
                "LANG": "C.UTF-8",
                # As the invoke service sets it: a template forks such a runtime.
                "LD_LIBRARY_PATH": library_path(str(self.task_root), "/opt"),
                "_HANDLER": handler,
                "LAMBDA_TASK_ROOT": str(self.task_root),
            },
            task_root=self.task_root,
            opt_dir=None,
            memory_mb=256,
            ephemeral_mb=64,
            scratch_root=self.task_root.parent / "environments" / uuid.uuid4().hex,
        )
        environment = ExecutionEnvironment(
            self.backend,
            spec,
            256,
            "$LATEST",
            self.sink,
            GROUP,
            STREAM,
            report_init=report_init,
            listener=listener,
        )
        self.built.append(environment)
        return environment

    async def started(self, handler: str, **options: object) -> ExecutionEnvironment:
        environment = self.environment(handler, **options)  # type: ignore[arg-type]
        await environment.start()
        return environment

    def logged(self) -> list[str]:
        return [message for group, stream, _, message in self.sink.lines if group == GROUP]


@contextlib.asynccontextmanager
async def harness(task_root: Path) -> AsyncIterator[Harness]:
    built = Harness(task_root)
    try:
        yield built
    finally:
        for environment in built.built:
            environment.destroy()
        await built.backend.settle()


def invocation(payload: object = None, request_id: str | None = None) -> Invocation:
    return Invocation(
        request_id=request_id or str(uuid.uuid4()),
        payload=json.dumps(payload).encode(),
        deadline_ms=0,
        function_arn=ARN,
    )


def error_of(outcome: InvokeOutcome) -> dict[str, object]:
    document: dict[str, object] = json.loads(outcome.payload)
    return document


# --------------------------------------------------------------------------------- start


def test_start_leaves_an_idle_environment(task_root: Path) -> None:
    async def scenario() -> tuple[State, float | None, bytes | None, bool]:
        async with harness(task_root) as h:
            environment = await h.started("app.echo")
            return (
                environment.state,
                environment.init_ms,
                environment.init_error,
                (environment.alive),
            )

    state, init_ms, init_error, alive = asyncio.run(scenario())
    assert state is State.IDLE
    assert alive
    assert init_error is None
    assert init_ms is not None and 0 < init_ms < 10_000


def test_an_init_error_leaves_a_dead_environment_and_the_runtimes_error(task_root: Path) -> None:
    async def scenario() -> tuple[ExecutionEnvironment, list[str]]:
        async with harness(task_root) as h:
            environment = await h.started("broken.handler")
            return environment, h.logged()

    environment, logged = asyncio.run(scenario())
    assert environment.state is State.DEAD
    assert not environment.alive
    assert environment.init_error is not None
    error = json.loads(environment.init_error)
    assert (error["errorType"], error["errorMessage"]) == ("RuntimeError", "no config")
    # What the runtime printed before failing reaches the log stream and the tail.
    assert "loading broken" in logged
    assert b"loading broken" in environment.tail()


def test_a_missing_handler_is_an_init_error(task_root: Path) -> None:
    async def scenario() -> ExecutionEnvironment:
        async with harness(task_root) as h:
            return await h.started("app.missing")

    environment = asyncio.run(scenario())
    assert environment.state is State.DEAD
    assert environment.init_error is not None
    error = json.loads(environment.init_error)
    assert error["errorType"] == "Runtime.HandlerNotFound"
    assert error["errorMessage"] == "Handler 'missing' missing on module 'app'"


def test_a_runtime_exiting_during_init(task_root: Path) -> None:
    async def scenario() -> ExecutionEnvironment:
        async with harness(task_root) as h:
            return await h.started("exits.handler")

    environment = asyncio.run(scenario())
    assert environment.state is State.DEAD
    assert environment.init_error is not None
    assert json.loads(environment.init_error) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "Runtime exited with error: exit status 2",
    }


def test_init_that_never_finishes_times_out(
    task_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lamina.sandbox.environment.INIT_TIMEOUT_S", 0.5)

    async def scenario() -> ExecutionEnvironment:
        async with harness(task_root) as h:
            return await h.started("hangs.handler")

    environment = asyncio.run(scenario())
    assert environment.state is State.DEAD
    assert environment.init_error is not None
    assert json.loads(environment.init_error) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "Init phase timed out after 0.50 seconds",
    }
    assert environment.init_ms is not None and environment.init_ms >= 500


# -------------------------------------------------------------------------------- invoke


def test_invoke_returns_the_response_and_stays_warm(task_root: Path) -> None:
    async def scenario() -> tuple[ExecutionEnvironment, InvokeOutcome, InvokeOutcome]:
        async with harness(task_root) as h:
            environment = await h.started("app.echo")
            first = await environment.invoke(invocation({"n": 1}, "req-1"), 3)
            second = await environment.invoke(invocation({"n": 2}, "req-2"), 3)
            return environment, first, second

    environment, first, second = asyncio.run(scenario())
    one, two = json.loads(first.payload), json.loads(second.payload)
    assert one["event"] == {"n": 1}
    assert (one["request_id"], one["arn"]) == ("req-1", ARN)
    assert two["event"] == {"n": 2}
    # The same runtime process served both: the environment was reused.
    assert one["pid"] == two["pid"]
    assert environment.invocations == 2
    for outcome in (first, second):
        assert not outcome.function_error
        assert (outcome.status, outcome.error_type) == (None, None)
        assert outcome.duration_ms > 0
        assert outcome.max_memory_mb >= 1
    # Only the first invocation carries (and is billed for) the init.
    assert first.init_ms == environment.init_ms
    assert first.billed_ms >= first.duration_ms + (first.init_ms or 0)
    assert first.billed_ms < first.duration_ms + (first.init_ms or 0) + 1
    assert second.init_ms is None
    assert second.duration_ms <= second.billed_ms < second.duration_ms + 1


def test_init_is_not_reported_when_the_environment_was_prepared_ahead(task_root: Path) -> None:
    async def scenario() -> InvokeOutcome:
        async with harness(task_root) as h:
            environment = await h.started("app.echo", report_init=False)
            return await environment.invoke(invocation(), 3)

    outcome = asyncio.run(scenario())
    assert outcome.init_ms is None
    assert outcome.billed_ms < outcome.duration_ms + 1


def test_an_answer_after_its_wait_was_cancelled_is_still_taken(task_root: Path) -> None:
    """Cancelling an invocation's wait (its caller gone) cancels the future it awaited; the
    runtime's answer, when it comes, is still taken rather than refused as an unknown
    request id."""

    async def scenario() -> Invocation:
        async with harness(task_root) as h:
            environment = await h.started("app.nap")
            napping = invocation()
            waiting = asyncio.ensure_future(environment.invoke(napping, 3))
            await asyncio.sleep(0.1)  # the handler naps by now
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            assert await eventually(napping.outcome.done)
            return napping

    napping = asyncio.run(scenario())
    assert napping.outcome.result().body == b'"rested"'


def test_a_runtime_found_dead_as_an_invocation_begins_fails_it_at_once(
    task_root: Path,
) -> None:
    """A runtime can exit where its exit's callback has no invocation to end: while its
    environment is still starting, or while its last invocation is ending. The environment
    is then idle with a dead runtime, and the next invocation fails at once with the exit,
    rather than waiting out its timeout."""

    async def scenario() -> InvokeOutcome:
        async with harness(task_root) as h:
            environment = await h.started("app.echo")
            first = await environment.invoke(invocation(), 3)
            # The window, held open: the exit is seen while the environment is not idle.
            environment.state = State.NEW
            os.kill(json.loads(first.payload)["pid"], signal.SIGKILL)
            assert environment._exited is not None
            assert await eventually(environment._exited.done)
            await asyncio.sleep(0.05)  # its callbacks have run
            environment.state = State.IDLE
            return await asyncio.wait_for(environment.invoke(invocation(), 60), 10)

    outcome = asyncio.run(scenario())
    assert (outcome.status, outcome.error_type) == ("error", "Runtime.ExitError")
    assert error_of(outcome)["errorType"] == "Runtime.ExitError"


def test_a_function_error_keeps_the_environment(task_root: Path) -> None:
    async def scenario() -> tuple[State, InvokeOutcome, InvokeOutcome]:
        async with harness(task_root) as h:
            environment = await h.started("app.fail")
            first = await environment.invoke(invocation(), 3)
            second = await environment.invoke(invocation(), 3)
            return environment.state, first, second

    state, first, second = asyncio.run(scenario())
    assert first.function_error
    error = error_of(first)
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "bad input")
    # A handled error is the function's answer, not a failure of the environment.
    assert (first.status, first.error_type) == (None, None)
    assert second.function_error
    assert state is State.IDLE


def test_a_timeout_kills_the_environment(task_root: Path) -> None:
    async def scenario() -> tuple[ExecutionEnvironment, InvokeOutcome]:
        async with harness(task_root) as h:
            environment = await h.started("app.slow")
            return environment, await environment.invoke(invocation(None, "req-slow"), 0.5)

    environment, outcome = asyncio.run(scenario())
    assert environment.state is State.DEAD
    assert outcome.function_error
    assert outcome.status == "timeout"
    assert json.loads(outcome.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "RequestId: req-slow Error: Task timed out after 0.50 seconds",
    }
    assert 500 <= outcome.duration_ms < 3000
    assert b"going to sleep" in outcome.log_tail


def test_a_crash_is_reported_as_the_runtimes_exit(task_root: Path) -> None:
    async def scenario() -> tuple[ExecutionEnvironment, InvokeOutcome]:
        async with harness(task_root) as h:
            environment = await h.started("app.crash")
            return environment, await environment.invoke(invocation(None, "req-crash"), 5)

    environment, outcome = asyncio.run(scenario())
    assert environment.state is State.DEAD
    assert outcome.function_error
    assert (outcome.status, outcome.error_type) == ("error", "Runtime.ExitError")
    assert json.loads(outcome.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "RequestId: req-crash Error: Runtime exited with error: exit status 3",
    }
    # Output written just before the exit still reaches the tail.
    assert b"about to exit" in outcome.log_tail


def test_a_runtime_killed_by_a_signal(task_root: Path) -> None:
    async def scenario() -> InvokeOutcome:
        async with harness(task_root) as h:
            environment = await h.started("app.killed")
            return await environment.invoke(invocation(None, "req-kill"), 5)

    outcome = asyncio.run(scenario())
    assert outcome.status == "error"
    assert json.loads(outcome.payload)["errorMessage"] == (
        "RequestId: req-kill Error: Runtime exited with error: signal: killed"
    )


def test_an_oversized_response_is_a_function_error(task_root: Path) -> None:
    async def scenario() -> tuple[State, InvokeOutcome]:
        async with harness(task_root) as h:
            environment = await h.started("app.huge")
            outcome = await environment.invoke(invocation(), 10)
            return environment.state, outcome

    state, outcome = asyncio.run(scenario())
    assert outcome.function_error
    assert outcome.error_type == "Function.ResponseSizeTooLarge"
    assert json.loads(outcome.payload) == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size "
        f"({SYNC_PAYLOAD_MAX_BYTES} bytes).",
    }
    # The runtime answered (with too much): the environment lives on.
    assert outcome.status is None
    assert state is State.IDLE


def test_a_runtime_that_exits_while_idle_is_destroyed(task_root: Path) -> None:
    async def scenario() -> tuple[bool, int]:
        async with harness(task_root) as h:
            environment = await h.started("app.leave_later")
            outcome = await environment.invoke(invocation(), 3)
            died = await eventually(lambda: environment.state is State.DEAD)
            return died, json.loads(outcome.payload)

    died, pid = asyncio.run(scenario())
    assert died
    assert process_gone(pid)


# ------------------------------------------------------------------------------- destroy


def test_destroy_kills_the_runtime_and_is_idempotent(task_root: Path) -> None:
    async def scenario() -> tuple[ExecutionEnvironment, int, bool]:
        async with harness(task_root) as h:
            environment = await h.started("app.echo")
            outcome = await environment.invoke(invocation(), 3)
            pid = json.loads(outcome.payload)["pid"]
            environment.destroy()
            environment.destroy()
            return environment, pid, await eventually(lambda: process_gone(pid))

    environment, _, gone = asyncio.run(scenario())
    assert environment.state is State.DEAD
    assert not environment.alive
    assert gone


def test_an_invocation_ending_after_its_environment_was_destroyed_touches_it_no_more(
    task_root: Path,
) -> None:
    """The server going down destroys environments still busy; their invocations end after
    that. The output descriptor was closed then, and its number may be another file's by
    now: it is neither read nor closed again, the environment stays dead, and its shutdown
    is told once."""
    recorder = Recorder()

    async def scenario() -> tuple[bytes, InvokeOutcome, State]:
        async with harness(task_root) as h:
            environment = await h.started("app.slow", listener=recorder)
            assert environment._sandbox is not None
            output_fd = environment._sandbox.output_fd
            running = asyncio.ensure_future(environment.invoke(invocation(), 30))
            await asyncio.sleep(0.3)  # the handler sleeps by now
            environment.destroy()
            # Another file takes the freed number, with bytes waiting in it.
            read_end, write_end = os.pipe()
            os.write(write_end, b"a bystander's bytes")
            os.set_blocking(read_end, False)
            os.dup2(read_end, output_fd)
            try:
                outcome = await asyncio.wait_for(running, 10)
                left = os.read(output_fd, 64)
                return left, outcome, environment.state
            finally:
                for fd in (read_end, write_end, output_fd):
                    with contextlib.suppress(OSError):
                        os.close(fd)

    left, outcome, state = asyncio.run(scenario())
    assert left == b"a bystander's bytes"
    assert outcome.status is not None
    assert state is State.DEAD
    assert [type(event) for event in recorder.events].count(ShutDown) == 1


# --------------------------------------------------------------------- events and output


def test_lifecycle_events_in_order(task_root: Path) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with harness(task_root) as h:
            environment = h.environment("app.echo", listener=recorder)
            environment.log_init_start("python3.11", sys.executable)
            await environment.start()
            await environment.invoke(invocation(None, "req-a"), 3)
            await environment.invoke(invocation(None, "req-b"), 3)
            environment.destroy()

    asyncio.run(scenario())
    assert recorder.kinds() == [
        "InitStarted",
        "InvokeStarted",
        "InvokeEnded",
        "InvokeStarted",
        "InvokeEnded",
        "ShutDown",
    ]
    init, started, ended, _, second_end, _ = recorder.events
    assert init == InitStarted("python3.11", sys.executable)
    assert started == InvokeStarted("req-a", "$LATEST")
    assert isinstance(ended, InvokeEnded)
    assert (ended.request_id, ended.memory_mb, ended.status, ended.error_type) == (
        "req-a",
        256,
        None,
        None,
    )
    assert ended.init_ms is not None
    assert isinstance(second_end, InvokeEnded)
    assert second_end.init_ms is None


def test_a_timeout_ends_with_its_status_then_shuts_down(task_root: Path) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with harness(task_root) as h:
            environment = await h.started("app.slow", listener=recorder)
            await environment.invoke(invocation(None, "req-t"), 0.3)

    asyncio.run(scenario())
    ended = [event for event in recorder.events if isinstance(event, InvokeEnded)]
    assert [(event.request_id, event.status) for event in ended] == [("req-t", "timeout")]
    assert isinstance(recorder.events[-1], ShutDown)
    # One shutdown, although the test's clean-up destroys the environment again.
    assert recorder.kinds().count("ShutDown") == 1


def test_the_tail_holds_this_invocations_lines_in_order(task_root: Path) -> None:
    async def scenario() -> tuple[InvokeOutcome, InvokeOutcome, list[str]]:
        async with harness(task_root) as h:
            environment = await h.started("app.echo", listener=Recorder())
            first = await environment.invoke(invocation("one", "req-1"), 3)
            second = await environment.invoke(invocation("two", "req-2"), 3)
            return first, second, h.logged()

    first, second, logged = asyncio.run(scenario())
    assert first.log_tail.decode().splitlines() == ["START req-1", 'echo "one"', "END req-1"]
    assert second.log_tail.decode().splitlines() == ["START req-2", 'echo "two"', "END req-2"]
    assert first.log_result == "U1RBUlQgcmVxLTEKZWNobyAib25lIgpFTkQgcmVxLTEK"
    # The stream keeps everything, init output included.
    assert logged == [
        "init output",
        "START req-1",
        'echo "one"',
        "END req-1",
        "START req-2",
        'echo "two"',
        "END req-2",
    ]


def test_an_invocation_that_answers_first_keeps_no_tail(task_root: Path) -> None:
    """A caller that answers before END and REPORT reads no log tail, so none is kept;
    the next invocation that wants one has its own lines in it."""

    async def scenario() -> tuple[InvokeOutcome, bytes, InvokeOutcome, list[str]]:
        async with harness(task_root) as h:
            environment = await h.started("app.echo", listener=Recorder())
            after = AfterAnswer(asyncio.get_running_loop())
            first = await environment.invoke(invocation("one", "req-1"), 3, after=after)
            after.run()
            kept = environment.tail()
            second = await environment.invoke(invocation("two", "req-2"), 3)
            return first, kept, second, h.logged()

    first, kept, second, logged = asyncio.run(scenario())
    assert first.log_tail == kept == b""
    assert second.log_tail.decode().splitlines() == ["START req-2", 'echo "two"', "END req-2"]
    # The stream still has every line, in order.
    assert logged[1:4] == ["START req-1", 'echo "one"', "END req-1"]


def test_the_tail_keeps_the_last_4_kib(task_root: Path) -> None:
    async def scenario() -> InvokeOutcome:
        async with harness(task_root) as h:
            environment = await h.started("app.chatty")
            return await environment.invoke(invocation(), 3)

    outcome = asyncio.run(scenario())
    assert len(outcome.log_tail) == LOG_TAIL_BYTES
    assert outcome.log_tail.endswith(b"line 199 " + b"x" * 40 + b"\n")
    assert b"line 000" not in outcome.log_tail
