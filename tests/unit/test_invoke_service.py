"""InvokeService without a server: real stores, the process backend and a tiny Python
function. Qualifiers, routing, throttling through the governor, and the warm pool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lamina.arns import FunctionRef
from lamina.constants import LATEST
from lamina.control.aliases import AliasService
from lamina.control.concurrency import ConcurrencyService
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.errors import ResourceNotFound, TooManyRequests
from lamina.invoke.cluster_governor import ClusterGovernor
from lamina.invoke.events import InvocationRecord
from lamina.invoke.governor import ConcurrencyGovernor
from lamina.invoke.pool import EnvironmentPool
from lamina.invoke.service import InvokeRequest, InvokeResult, InvokeService, Resolver
from lamina.model.functions import LoggingConfig
from lamina.observability.telemetry import Telemetry
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.after_answer import AfterAnswer
from lamina.sandbox.artifacts import ArtifactCache
from lamina.sandbox.lifecycle import EnvironmentEvent, EnvironmentListener, ShutDown
from lamina.sandbox.log_sink import LogSink, MemoryLogSink
from lamina.sandbox.output import EnvironmentOutput
from lamina.store.sqlite.metrics import SqliteMetricsStore
from tests.support.domain import fails_with, function_settings, open_domain, source
from tests.support.redis import nodes
from tests.support.sandboxes import TrackedBackend, eventually, process_gone

ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"
# The host's own interpreter stands in for the function's runtime.
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
APP = """
import os
import time

def handler(event, context):
    if event == "crash":
        os._exit(5)
    if event == "sleep":
        time.sleep(0.3)
    return {"pid": os.getpid(), "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
            "arn": context.invoked_function_arn, "stage": os.environ.get("STAGE")}
"""


class RecordingObserver:
    """Records what the engine reports after each invocation or refusal."""

    def __init__(self) -> None:
        self.records: list[InvocationRecord] = []
        self.throttles: list[tuple[str, str, str | None]] = []

    def invoked(self, record: InvocationRecord) -> None:
        self.records.append(record)

    def throttled(self, function_name: str, version: str, alias: str | None) -> None:
        self.throttles.append((function_name, version, alias))


class ShutDowns:
    """The engine's environment logging, reduced to noting which environments shut down."""

    def __init__(self) -> None:
        self.environments: list[str] = []

    def __call__(
        self,
        sink: LogSink,
        logging: LoggingConfig,
        function_name: str,
        version: str,
        initialization_type: str,
    ) -> tuple[LogSink, EnvironmentListener]:
        return sink, self

    def environment_event(self, event: EnvironmentEvent, output: EnvironmentOutput) -> None:
        if isinstance(event, ShutDown):
            self.environments.append(event.environment_id)


@dataclass
class Engine:
    domain: Domain
    functions: FunctionService
    service: InvokeService
    governor: ConcurrencyGovernor | ClusterGovernor
    pool: EnvironmentPool
    backend: TrackedBackend
    observer: RecordingObserver
    shutdowns: ShutDowns
    telemetry: Telemetry

    async def call(self, name: str, qualifier: str | None = None, event: Any = None) -> Any:
        result = await self.invoke(name, qualifier, event)
        assert not result.outcome.function_error, result.outcome.payload
        return json.loads(result.outcome.payload)

    async def invoke(
        self, name: str, qualifier: str | None = None, event: Any = None
    ) -> InvokeResult:
        ref = FunctionRef(*name.split(":", 1)) if ":" in name else FunctionRef(name, None)
        return await self.service.invoke(request(ref, qualifier, event))


def request(ref: FunctionRef, qualifier: str | None = None, event: Any = None) -> InvokeRequest:
    return InvokeRequest(ref=ref, qualifier=qualifier, payload=json.dumps(event).encode())


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    return open_domain(tmp_path / "data", account_concurrency=1000)


@pytest.fixture
def functions(domain: Domain) -> FunctionService:
    """`fn`: version 1 (STAGE=one), version 2 (STAGE=two), $LATEST (STAGE=latest)."""
    service = FunctionService(domain)
    fn = FunctionRef("fn", None)
    settings = function_settings(runtime=RUNTIME, environment={"STAGE": "one"})
    service.create("fn", settings, source({"app.py": APP}), publish=True)
    service.update_configuration(fn, {"environment": {"STAGE": "two"}}, None)
    service.publish_version(fn, None, None, None)
    service.update_configuration(fn, {"environment": {"STAGE": "latest"}}, None)
    return service


@contextlib.asynccontextmanager
async def engine(
    tmp_path: Path,
    domain: Domain,
    functions: FunctionService,
    account_limit: int = 1000,
    governor: ConcurrencyGovernor | ClusterGovernor | None = None,
) -> AsyncIterator[Engine]:
    governor = governor or ConcurrencyGovernor(account_limit)
    pool = EnvironmentPool(idle_timeout_s=600)
    backend = TrackedBackend()
    observer = RecordingObserver()
    shutdowns = ShutDowns()
    # The real consumer of the engine's level events.
    telemetry = Telemetry(SqliteMetricsStore(tmp_path / "metrics.db"), account_limit)
    service = InvokeService(
        account=domain.account,
        resolver=Resolver(functions, domain.stores.functions),
        governor=governor,
        pool=pool,
        backend=backend,
        artifacts=ArtifactCache(tmp_path / "artifacts", domain.stores.blobs),
        runtimes=RuntimeRegistry({RUNTIME: sys.executable}),
        log_sink=MemoryLogSink(),
        environment_logging=shutdowns,
        scratch_root=tmp_path / "environments",
        observer=observer,
        levels=telemetry,
    )
    try:
        yield Engine(
            domain, functions, service, governor, pool, backend, observer, shutdowns, telemetry
        )
    finally:
        service.close()
        await backend.settle()
        telemetry.store.close()


# --------------------------------------------------------------------------- qualifiers


def test_unqualified_calls_run_latest(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[InvokeResult, list[InvocationRecord]]:
        async with engine(tmp_path, domain, functions) as e:
            return await e.invoke("fn"), e.observer.records

    result, records = asyncio.run(scenario())
    answer = json.loads(result.outcome.payload)
    assert result.executed_version == LATEST
    assert (answer["version"], answer["stage"], answer["arn"]) == (LATEST, "latest", ARN)
    (record,) = records
    assert (record.request_id, record.function_name) == (result.request_id, "fn")
    assert (record.executed_version, record.alias, record.function_error) == (LATEST, None, False)
    assert record.init_ms is not None
    assert not record.provisioned


def test_versions_and_aliases_run_what_they_name(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    AliasService(domain, functions).create(FunctionRef("fn", None), "live", "1", None, None)

    async def scenario() -> list[tuple[str, Any]]:
        async with engine(tmp_path, domain, functions) as e:
            calls = []
            for name, qualifier in (("fn", "2"), ("fn:1", None), ("fn:live", None), ("fn", "live")):
                result = await e.invoke(name, qualifier)
                calls.append((result.executed_version, json.loads(result.outcome.payload)))
            assert [record.alias for record in e.observer.records] == [None, None, "live", "live"]
            return calls

    calls = asyncio.run(scenario())
    assert [(version, answer["stage"]) for version, answer in calls] == [
        ("2", "two"),
        ("1", "one"),
        ("1", "one"),
        ("1", "one"),
    ]
    # The runtime is told the ARN it was invoked by, qualifier included.
    assert [answer["arn"] for _, answer in calls] == [
        f"{ARN}:2",
        f"{ARN}:1",
        f"{ARN}:live",
        f"{ARN}:live",
    ]


@pytest.mark.parametrize(("weight", "expected"), [(1.0, "2"), (0.0, "1")])
def test_an_alias_routes_by_its_weights(
    tmp_path: Path, domain: Domain, functions: FunctionService, weight: float, expected: str
) -> None:
    aliases = AliasService(domain, functions)
    aliases.create(FunctionRef("fn", None), "canary", "1", None, {"2": weight})

    async def scenario() -> InvokeResult:
        async with engine(tmp_path, domain, functions) as e:
            return await e.invoke("fn", "canary")

    result = asyncio.run(scenario())
    assert result.executed_version == expected
    assert json.loads(result.outcome.payload)["arn"] == f"{ARN}:canary"


def test_an_unknown_qualifier_is_not_found_and_admits_nothing(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> int:
        async with engine(tmp_path, domain, functions) as e:
            with fails_with(ResourceNotFound, f"Function not found: {ARN}:7"):
                e.service.admit(request(FunctionRef("fn", None), "7"))
            with fails_with(
                ResourceNotFound,
                "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope",
            ):
                await e.invoke("nope")
            return e.governor.in_flight()

    assert asyncio.run(scenario()) == 0


def test_a_configuration_change_is_seen_by_the_next_call(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with engine(tmp_path, domain, functions) as e:
            before = await e.call("fn")
            functions.update_configuration(
                FunctionRef("fn", None), {"environment": {"STAGE": "changed"}}, None
            )
            return before, await e.call("fn")

    before, after = asyncio.run(scenario())
    assert (before["stage"], after["stage"]) == ("latest", "changed")
    # A new configuration means a new environment, as on AWS.
    assert before["pid"] != after["pid"]


# --------------------------------------------------------------------------- throttling


def test_reserved_concurrency_of_zero_throttles(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    ConcurrencyService(domain, functions).put_reserved(FunctionRef("fn", None), 0)

    async def scenario() -> tuple[TooManyRequests, list[tuple[str, str, str | None]]]:
        async with engine(tmp_path, domain, functions) as e:
            with pytest.raises(TooManyRequests) as raised:
                await e.invoke("fn", "1")
            assert e.observer.records == []
            assert e.backend.started == []
            return raised.value, e.observer.throttles

    error, throttles = asyncio.run(scenario())
    assert error.message == "Rate Exceeded."
    assert error.fields == {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}
    assert error.headers == {}  # AWS sends no Retry-After for a concurrency throttle
    assert throttles == [("fn", "1", None)]


def test_the_unreserved_pool_excludes_other_functions_reservations(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    functions.create("other", function_settings(runtime=RUNTIME), source({"app.py": APP}))
    ConcurrencyService(domain, functions).put_reserved(FunctionRef("other", None), 900)

    async def scenario() -> tuple[int, str | None]:
        async with engine(tmp_path, domain, functions) as e:
            admitted = []
            with pytest.raises(TooManyRequests) as raised:
                while True:
                    admitted.append(e.service.admit(request(FunctionRef("fn", None))))
            for admission in admitted:
                e.governor.release(admission.lease)
            return len(admitted), raised.value.fields.get("Reason")

    # 1,000 in the account, 900 reserved by `other`: 100 left for everyone else.
    assert asyncio.run(scenario()) == (100, "ConcurrentInvocationLimitExceeded")


def test_a_finished_invocation_gives_its_slot_back(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[str | None, Any, int]:
        async with engine(tmp_path, domain, functions, account_limit=1) as e:
            first = request(FunctionRef("fn", None))
            admission = e.service.admit(first)
            with pytest.raises(TooManyRequests) as raised:
                e.service.admit(request(FunctionRef("fn", None)))
            await e.service.run(admission, first)
            again = await e.call("fn")
            return raised.value.fields.get("Reason"), again, e.governor.in_flight()

    reason, again, in_flight = asyncio.run(scenario())
    assert reason == "ConcurrentInvocationLimitExceeded"
    assert again["stage"] == "latest"
    assert in_flight == 0


# --------------------------------------------------------------------------------- pool


def test_a_warm_environment_is_reused(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[list[Any], dict[str, int], list[float | None]]:
        async with engine(tmp_path, domain, functions) as e:
            answers = [await e.call("fn") for _ in range(3)]
            inits = [record.init_ms for record in e.observer.records]
            return answers, e.pool.environments_by_function(), inits

    answers, environments, inits = asyncio.run(scenario())
    assert len({answer["pid"] for answer in answers}) == 1
    assert environments == {"fn": 1}
    # Only the cold start reports an init.
    assert inits[0] is not None
    assert inits[1:] == [None, None]


def test_versions_get_environments_of_their_own(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[set[int], dict[str, int]]:
        async with engine(tmp_path, domain, functions) as e:
            pids = {(await e.call("fn", qualifier))["pid"] for qualifier in ("1", "2", "1", "2")}
            return pids, e.pool.environments_by_function()

    pids, environments = asyncio.run(scenario())
    assert len(pids) == 2
    assert environments == {"fn": 2}


def test_an_environment_that_crashed_is_discarded(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[InvokeResult, Any, Any, dict[str, int]]:
        async with engine(tmp_path, domain, functions) as e:
            warm = await e.call("fn")
            crashed = await e.invoke("fn", event="crash")
            left = e.pool.environments_by_function()
            return crashed, warm, await e.call("fn"), left

    crashed, warm, fresh, left = asyncio.run(scenario())
    assert crashed.outcome.function_error
    assert (crashed.outcome.status, crashed.outcome.error_type) == ("error", "Runtime.ExitError")
    assert left == {}
    assert fresh["pid"] != warm["pid"]
    assert process_gone(warm["pid"])


def test_an_environment_that_died_while_idle_is_not_handed_out(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[Any, Any, dict[str, int], int]:
        async with engine(tmp_path, domain, functions) as e:
            warm = await e.call("fn")
            os.kill(warm["pid"], signal.SIGKILL)
            # The environment notices its runtime's exit and shuts itself down.
            assert await eventually(lambda: len(e.shutdowns.environments) == 1)
            fresh = await e.call("fn")
            return warm, fresh, e.pool.environments_by_function(), len(e.observer.records)

    warm, fresh, environments, invocations = asyncio.run(scenario())
    assert fresh["pid"] != warm["pid"]
    # The dead one was dropped, not counted as still there.
    assert environments == {"fn": 1}
    assert invocations == 2


def test_close_destroys_every_environment(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[list[int], int]:
        async with engine(tmp_path, domain, functions) as e:
            pids = [(await e.call("fn", qualifier))["pid"] for qualifier in ("1", "2")]
            e.service.close()
            await e.backend.settle()
            return pids, len(e.shutdowns.environments)

    pids, shut = asyncio.run(scenario())
    assert all(process_gone(pid) for pid in pids)
    assert shut == 2


def test_the_slot_goes_back_even_when_returning_the_environment_fails(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[int, int]:
        async with engine(tmp_path, domain, functions) as e:
            release = e.pool.release

            def failing_release(environment: Any) -> None:
                release(environment)
                raise RuntimeError("the sandbox would not die")

            e.pool.release = failing_release  # type: ignore[method-assign]
            with pytest.raises(RuntimeError, match="would not die"):
                await e.invoke("fn")
            e.pool.release = release  # type: ignore[method-assign]
            return e.governor.in_flight(), e.telemetry.levels().account_in_flight

    assert asyncio.run(scenario()) == (0, 0)


def test_level_events_keep_the_gauges_without_reading_the_engine(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> list[tuple[int, int, dict[str, int], dict[str, int]]]:
        async with engine(tmp_path, domain, functions) as e:
            seen = []

            def levels() -> tuple[int, int, dict[str, int], dict[str, int]]:
                now = e.telemetry.levels()
                return (
                    now.account_in_flight,
                    now.unreserved_in_flight,
                    now.in_flight,
                    now.environments,
                )

            seen.append(levels())
            sleeping = asyncio.ensure_future(e.invoke("fn", event="sleep"))
            # Admitted first, then its environment starts: wait until both are counted.
            await eventually(lambda: levels() == (1, 1, {"fn": 1}, {"fn": 1}))
            seen.append(levels())
            await sleeping
            seen.append(levels())
            await e.call("fn", "1")  # a second environment, for version 1
            seen.append(levels())
            assert e.telemetry.levels().environments == e.pool.environments_by_function()
            await e.invoke("fn", event="crash")  # its environment is discarded
            seen.append(levels())
            return seen

    before, during, after, two, crashed = asyncio.run(scenario())
    assert before == (0, 0, {}, {})
    assert during == (1, 1, {"fn": 1}, {"fn": 1})
    assert after == (0, 0, {}, {"fn": 1})
    assert two == (0, 0, {}, {"fn": 2})
    assert crashed == (0, 0, {}, {"fn": 1})


# ------------------------------------------------------------------------------ failures


def test_an_init_failure_is_the_callers_function_error(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    functions.update_configuration(FunctionRef("fn", None), {"handler": "app.missing"}, None)

    async def scenario() -> tuple[InvokeResult, list[InvocationRecord]]:
        async with engine(tmp_path, domain, functions) as e:
            return await e.invoke("fn"), e.observer.records

    result, records = asyncio.run(scenario())
    assert result.outcome.function_error
    assert result.outcome.status == "error"
    error = json.loads(result.outcome.payload)
    assert (error["errorType"], error["errorMessage"]) == (
        "Runtime.HandlerNotFound",
        "Handler 'missing' missing on module 'app'",
    )
    assert [record.function_error for record in records] == [True]


def slots_held_around_the_answer(
    tmp_path: Path,
    domain: Domain,
    functions: FunctionService,
    governor: ConcurrencyGovernor | ClusterGovernor,
) -> tuple[int, int]:
    """Slots in flight when a call answered first (see `AfterAnswer`) has its answer, and
    once what follows the answer has run (when the engine's own count, given back with the
    slot, must be back to none as well)."""

    async def scenario() -> tuple[int, int]:
        async with engine(tmp_path, domain, functions, governor=governor) as e:
            after = AfterAnswer(asyncio.get_running_loop())
            answer_request = InvokeRequest(
                ref=FunctionRef("fn", None), qualifier=None, payload=b"{}", after_answer=after
            )
            result = await e.service.invoke(answer_request)
            assert not result.outcome.function_error, result.outcome.payload
            at_answer = e.governor.in_flight()
            after.run()
            assert e.telemetry.levels().account_in_flight == 0
            return at_answer, e.governor.in_flight()

    return asyncio.run(scenario())


def test_a_local_slot_is_given_back_after_the_answer(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    governor = ConcurrencyGovernor(1000)
    assert slots_held_around_the_answer(tmp_path, domain, functions, governor) == (1, 0)


def test_a_shared_slot_is_back_before_the_caller_has_its_answer(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    # Another node may be asked for the function the moment the caller is answered.
    with nodes(1) as (leases,):
        governor = ClusterGovernor(leases, account_limit=1000)
        assert slots_held_around_the_answer(tmp_path, domain, functions, governor) == (0, 0)


def test_a_runtime_that_cannot_start_is_the_callers_function_error(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    functions.create("custom", function_settings(runtime="provided.al2023"), source())

    async def scenario() -> tuple[InvokeResult, list[InvocationRecord], int]:
        async with engine(tmp_path, domain, functions) as e:
            result = await e.invoke("custom")
            return result, e.observer.records, e.governor.in_flight()

    result, records, in_flight = asyncio.run(scenario())
    assert result.outcome.function_error
    assert json.loads(result.outcome.payload) == {
        "errorType": "Runtime.InvalidEntrypoint",
        "errorMessage": "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]",
    }
    assert [(record.error_type, record.status) for record in records] == [
        ("Runtime.InvalidEntrypoint", "error")
    ]
    assert in_flight == 0
