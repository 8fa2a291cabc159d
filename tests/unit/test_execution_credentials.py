"""Execution-role credentials without a server: real stores, the process backend and a tiny
Python function that reports the credentials its environment got. A session per cold start,
kept for the environment's life (none issued on a warm invocation), retired by age before it
expires (a pool clock moved by hand: no sleeping for hours), and purged once expired."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lamina.arns import FunctionRef
from lamina.control.context import Domain
from lamina.control.execution_role import (
    RETIRE_MARGIN_S,
    SESSION_LIFETIME_S,
    ExecutionRoleSessions,
)
from lamina.control.functions import FunctionService
from lamina.invoke.governor import ConcurrencyGovernor
from lamina.invoke.pool import EnvironmentPool
from lamina.invoke.service import InvokeRequest, InvokeService, Resolver
from lamina.model.functions import LoggingConfig
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.artifacts import ArtifactCache
from lamina.sandbox.lifecycle import EnvironmentEvent, EnvironmentListener
from lamina.sandbox.log_sink import LogSink, MemoryLogSink
from lamina.sandbox.output import EnvironmentOutput
from tests.support.domain import ACCOUNT, function_settings, open_domain, source
from tests.support.sandboxes import TrackedBackend

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
ROLE = "arn:aws:iam::123456789012:role/service-role/worker-role"
ENDPOINT = "http://127.0.0.1:9999"
APP = """
import os
import time

def handler(event, context):
    if event == "sleep":
        time.sleep(0.5)
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
             "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY")
    return {name: os.environ.get(name) for name in names} | {"pid": os.getpid()}
"""


class Quiet:
    """Environment logging that keeps nothing."""

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
        pass


class Clock:
    """The pool's monotonic clock, moved forward by hand."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@dataclass
class Engine:
    service: InvokeService
    pool: EnvironmentPool
    clock: Clock

    async def call(self, name: str, event: Any = None) -> dict[str, Any]:
        request = InvokeRequest(FunctionRef(name, None), None, json.dumps(event).encode())
        result = await self.service.invoke(request)
        assert not result.outcome.function_error, result.outcome.payload
        answer: dict[str, Any] = json.loads(result.outcome.payload)
        return answer


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    return open_domain(tmp_path / "data")


@pytest.fixture
def functions(domain: Domain) -> FunctionService:
    service = FunctionService(domain)
    service.create("fn", function_settings(runtime=RUNTIME, role=ROLE), source({"app.py": APP}))
    own_endpoint = {"AWS_ENDPOINT_URL": "http://elsewhere:1"}
    service.create(
        "own",
        function_settings(runtime=RUNTIME, role=ROLE, environment=own_endpoint),
        source({"app.py": APP}),
    )
    return service


@contextlib.asynccontextmanager
async def engine(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> AsyncIterator[Engine]:
    clock = Clock()
    # Idle environments are kept far longer than any test moves the clock: only age retires.
    pool = EnvironmentPool(idle_timeout_s=10 * SESSION_LIFETIME_S, clock=clock)
    backend = TrackedBackend()
    service = InvokeService(
        account=domain.account,
        resolver=Resolver(functions, domain.stores.functions),
        governor=ConcurrencyGovernor(1000),
        pool=pool,
        backend=backend,
        artifacts=ArtifactCache(tmp_path / "artifacts", domain.stores.blobs),
        runtimes=RuntimeRegistry({RUNTIME: sys.executable}),
        log_sink=MemoryLogSink(),
        environment_logging=Quiet(),
        scratch_root=tmp_path / "environments",
        endpoint=ENDPOINT,
        iam=domain.stores.iam,
    )
    try:
        yield Engine(service, pool, clock)
    finally:
        service.close()
        await backend.settle()


def test_a_cold_start_gets_a_stored_session_of_the_role_named_after_the_function(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with engine(tmp_path, domain, functions) as e:
            return await e.call("fn"), await e.call("fn")

    before = time.time()
    cold, warm = asyncio.run(scenario())
    key = cold["AWS_ACCESS_KEY_ID"]
    assert key.startswith("ASIA") and len(key) == 20
    session = domain.stores.iam.get_session(key)
    assert session is not None
    assert session.principal_arn == (
        f"arn:aws:sts::{ACCOUNT.account_id}:assumed-role/worker-role/fn"
    )
    assert (session.role_arn, session.session_name, session.account) == (
        ROLE,
        "fn",
        ACCOUNT.account_id,
    )
    assert (cold["AWS_SECRET_ACCESS_KEY"], cold["AWS_SESSION_TOKEN"]) == (
        session.secret,
        session.token,
    )
    assert cold["AWS_ACCESS_KEY"] == key
    assert before + SESSION_LIFETIME_S <= session.expires <= time.time() + SESSION_LIFETIME_S
    assert cold["AWS_ENDPOINT_URL"] == ENDPOINT
    # The warm environment kept its credentials: nothing was issued for the second call.
    assert warm == cold


def test_the_functions_own_endpoint_wins(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> dict[str, Any]:
        async with engine(tmp_path, domain, functions) as e:
            return await e.call("own")

    assert asyncio.run(scenario())["AWS_ENDPOINT_URL"] == "http://elsewhere:1"


def test_two_cold_environments_get_different_keys(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with engine(tmp_path, domain, functions) as e:
            # Concurrent calls each need an environment of their own.
            return list(await asyncio.gather(e.call("fn", "sleep"), e.call("fn", "sleep")))

    first, second = asyncio.run(scenario())
    assert first["pid"] != second["pid"]
    assert first["AWS_ACCESS_KEY_ID"] != second["AWS_ACCESS_KEY_ID"]
    assert first["AWS_SECRET_ACCESS_KEY"] != second["AWS_SECRET_ACCESS_KEY"]
    for answer in (first, second):
        assert domain.stores.iam.get_session(answer["AWS_ACCESS_KEY_ID"]) is not None


def test_an_environment_past_its_credentials_lifetime_is_not_handed_out_again(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    lifetime = SESSION_LIFETIME_S - RETIRE_MARGIN_S

    async def scenario() -> list[dict[str, Any]]:
        async with engine(tmp_path, domain, functions) as e:
            answers = [await e.call("fn")]
            # Just short of the age: kept and handed out again.
            e.clock.offset = lifetime - 60
            e.pool.reap()
            answers.append(await e.call("fn"))
            # Past it: retired by the reaper, so the next call starts a new environment.
            e.clock.offset = lifetime + 1
            assert e.pool.reap() == 1
            answers.append(await e.call("fn"))
            return answers

    first, kept, fresh = asyncio.run(scenario())
    assert kept == first
    assert fresh["pid"] != first["pid"]
    assert fresh["AWS_ACCESS_KEY_ID"] != first["AWS_ACCESS_KEY_ID"]


def test_a_busy_environment_past_its_age_goes_when_its_invocation_ends(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with engine(tmp_path, domain, functions) as e:
            first = await e.call("fn")
            running = asyncio.ensure_future(e.call("fn", "sleep"))
            # Wait until the call holds the environment, then age it while it is busy.
            while e.pool.has_idle(("fn", "$LATEST", _revision(functions))):
                await asyncio.sleep(0.01)
            e.clock.offset = SESSION_LIFETIME_S
            reaped = e.pool.reap()
            busy = await running
            return reaped, first, busy, await e.call("fn")

    reaped, first, busy, after = asyncio.run(scenario())
    assert reaped == 0
    assert busy["pid"] == first["pid"]
    assert after["pid"] != first["pid"]
    assert after["AWS_ACCESS_KEY_ID"] != first["AWS_ACCESS_KEY_ID"]


def _revision(functions: FunctionService) -> str:
    return functions.resolve(FunctionRef("fn", None)).runnable.revision_id


def test_expired_sessions_are_purged(domain: Domain) -> None:
    now = [time.time()]
    sessions = ExecutionRoleSessions(domain.stores.iam, ACCOUNT, clock=lambda: now[0])
    old = sessions.issue("fn", ROLE)
    now[0] += SESSION_LIFETIME_S / 2
    young = sessions.issue("fn", ROLE)
    now[0] = old.expires
    assert sessions.purge() == 1
    assert domain.stores.iam.get_session(old.access_key_id) is None
    assert domain.stores.iam.get_session(young.access_key_id) == young
