"""A worker's gate (cluster mode) over a real InvokeService: it runs a call on an idle warm
environment or within the memory it lends, evicts idle environments of other versions to
make room only when that is enough, and otherwise answers Busy before taking any
concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lamina.arns import FunctionRef
from lamina.cluster.gate import WorkerGate
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.invoke.service import WorkerBusy
from tests.support.domain import function_settings, source
from tests.unit.test_invoke_service import APP, RUNTIME, domain, engine, functions, request

__all__ = ["domain", "functions"]  # fixtures this module uses

MB = 128  # every version of `fn` has the default MemorySize


def test_a_busy_worker_answers_busy_before_taking_concurrency(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> None:
        async with engine(tmp_path, domain, functions) as e:
            gate = WorkerGate(e.service, capacity_mb=MB)
            running = asyncio.ensure_future(
                gate.invoke(request(FunctionRef("fn", "1"), None, "sleep"))
            )
            await asyncio.sleep(0)  # admitted, and counted, in its first step
            assert gate.in_flight == 1
            with pytest.raises(WorkerBusy):
                await gate.invoke(request(FunctionRef("fn", "1")))
            assert e.governor.in_flight("fn") == 1  # the refused call took nothing
            await running
            # Its environment is idle again: the next call runs on it.
            result = await gate.invoke(request(FunctionRef("fn", "1")))
            assert not result.outcome.function_error
            assert e.pool.environments_by_function() == {"fn": 1}
            assert gate.memory_used_mb == MB

    asyncio.run(scenario())


def test_idle_environments_of_other_versions_make_room(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    async def scenario() -> None:
        async with engine(tmp_path, domain, functions) as e:
            gate = WorkerGate(e.service, capacity_mb=MB)
            await gate.invoke(request(FunctionRef("fn", "1")))
            assert len(e.shutdowns.environments) == 0
            await gate.invoke(request(FunctionRef("fn", "2")))
            # Version 1's idle environment was destroyed for version 2's.
            assert len(e.shutdowns.environments) == 1
            assert gate.memory_used_mb == MB

    asyncio.run(scenario())


def test_nothing_is_evicted_when_eviction_cannot_make_room(
    tmp_path: Path, domain: Domain, functions: FunctionService
) -> None:
    functions.create(
        "big", function_settings(runtime=RUNTIME, memory_size=4 * MB), source({"app.py": APP})
    )

    async def scenario() -> None:
        async with engine(tmp_path, domain, functions) as e:
            gate = WorkerGate(e.service, capacity_mb=2 * MB)
            await gate.invoke(request(FunctionRef("fn", "1")))  # idle afterwards
            # 512 MB wanted, 128 free and 128 idle: evicting would not be enough.
            with pytest.raises(WorkerBusy):
                await gate.invoke(request(FunctionRef("big", None)))
            assert e.shutdowns.environments == []
            assert e.pool.environments_by_function() == {"fn": 1}

    asyncio.run(scenario())
