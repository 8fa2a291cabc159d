"""`PrestartPool`'s bookkeeping: which kinds keep runtimes started ahead, and for how long.

The runtimes here are stand-ins that only know whether they are alive and how old they are;
the real ones, in their sandboxes, are tested over HTTP in test_prestarted_node.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from lamina.sandbox import prestarted
from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.prestarted import PER_KIND, PrestartKey, PrestartPool


class Runtime:
    def __init__(self, key: PrestartKey) -> None:
        self.key = key
        self.alive = True
        self.born = time.monotonic()

    def usable(self, now: float) -> bool:
        return self.alive and now - self.born < prestarted.MAX_AGE_S


class Pool:
    """A pool whose runtimes are made at once and remembered when discarded."""

    def __init__(self) -> None:
        self.made: list[Runtime] = []
        self.discarded: list[Runtime] = []
        self.pool = PrestartPool(self._make, self.discarded.append)  # type: ignore[arg-type]
        self.starting = asyncio.Event()
        self.starting.set()

    async def _make(self, key: PrestartKey, template: SandboxSpec) -> Any:
        # Only what every environment of the kind shares reaches the runtimes.
        assert template.environment == dict(key.startup)
        assert template.runtime_api is None
        await self.starting.wait()
        runtime = Runtime(key)
        self.made.append(runtime)
        return runtime


def kind(memory_mb: int = 128) -> PrestartKey:
    return PrestartKey(("node", "bootstrap.cjs"), (("TZ", ":UTC"),), memory_mb, 512, None)


def spec() -> SandboxSpec:
    return SandboxSpec(
        command=("node", "bootstrap.cjs"),
        environment={"TZ": ":UTC", "AWS_SECRET_ACCESS_KEY": "secret"},
        task_root=Path("/code"),
        opt_dir=None,
        memory_mb=128,
        ephemeral_mb=512,
        scratch_root=Path("/scratch/env"),
    )


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prestarted, "REFILL_DELAY_S", 0.0)


def test_a_kind_fills_after_its_first_cold_start_and_refills_after_each_take() -> None:
    async def scenario() -> None:
        pools = Pool()
        assert pools.pool.take(kind(), spec()) is None  # the first starts afresh
        await settle()
        assert pools.pool.ready(kind()) == PER_KIND
        taken = pools.pool.take(kind(), spec())
        assert taken is pools.made[0]  # type: ignore[comparison-overlap]
        # Not replaced yet: a replacement waits until the environment is initialised.
        await settle()
        assert pools.pool.ready(kind()) == PER_KIND - 1
        pools.pool.refill_soon(kind())
        await settle()
        assert pools.pool.ready(kind()) == PER_KIND
        pools.pool.close()
        assert len(pools.discarded) == PER_KIND

    asyncio.run(scenario())


def test_dead_and_old_runtimes_are_discarded_not_used() -> None:
    async def scenario() -> None:
        pools = Pool()
        pools.pool.take(kind(), spec())
        await settle()
        dead, old = pools.made
        dead.alive = False
        old.born -= prestarted.MAX_AGE_S
        assert pools.pool.take(kind(), spec()) is None
        assert pools.discarded == [dead, old]
        await settle()
        assert pools.pool.ready(kind()) == PER_KIND
        pools.pool.close()

    asyncio.run(scenario())


def test_kinds_are_bounded_and_let_go_when_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        pools = Pool()
        for memory in range(prestarted.MAX_KINDS + 1):
            assert pools.pool.take(kind(128 + memory), spec()) is None
        await settle()
        assert pools.pool.ready(kind(128 + prestarted.MAX_KINDS)) == 0
        assert len(pools.made) == prestarted.MAX_KINDS * PER_KIND
        # Past MAX_AGE_S without a cold start, every kind is let go at the next sweep.
        kept = prestarted.MAX_AGE_S
        monkeypatch.setattr(prestarted, "MAX_AGE_S", 0.0)
        pools.pool._sweep()
        assert sorted(map(id, pools.discarded)) == sorted(map(id, pools.made))
        monkeypatch.setattr(prestarted, "MAX_AGE_S", kept)
        assert pools.pool.take(kind(128 + prestarted.MAX_KINDS), spec()) is None
        await settle()
        assert pools.pool.ready(kind(128 + prestarted.MAX_KINDS)) == PER_KIND
        pools.pool.close()

    asyncio.run(scenario())


def test_runtimes_being_made_when_the_pool_closes_are_not_kept() -> None:
    async def scenario() -> None:
        pools = Pool()
        pools.starting.clear()
        pools.pool.take(kind(), spec())
        await settle()
        pools.pool.close()  # while the runtimes are being made
        pools.starting.set()
        await settle()
        assert pools.pool.ready(kind()) == 0
        assert pools.discarded == pools.made
        assert pools.pool.take(kind(), spec()) is None

    asyncio.run(scenario())


def test_a_kind_whose_runtimes_fail_starts_afresh_for_a_while() -> None:
    async def scenario() -> None:
        failures = []

        async def failing(key: PrestartKey, template: SandboxSpec) -> Any:
            failures.append(key)
            raise OSError("node refused its options")

        pool = PrestartPool(failing, lambda entry: None)
        assert pool.take(kind(), spec()) is None
        await settle()
        assert len(failures) == PER_KIND
        assert pool.take(kind(), spec()) is None
        await settle()
        assert len(failures) == PER_KIND  # not tried again until FAILED_KIND_S pass
        pool.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("variables", "ahead"),
    [
        ({"NODE_OPTIONS": "--enable-source-maps --max-http-header-size=9000"}, True),
        ({"NODE_OPTIONS": "--require /var/task/preload.js"}, False),
        ({"NODE_OPTIONS": "-r dd-trace/init"}, False),
        ({"NODE_OPTIONS": "--import=./register.mjs"}, False),
        ({"NODE_OPTIONS": "--experimental-loader ./loader.mjs"}, False),
        ({"LD_PRELOAD": "/opt/lib/libjemalloc.so"}, False),
        ({"NODE_EXTRA_CA_CERTS": "/var/task/ca.pem"}, False),
        ({"NODE_EXTRA_CA_CERTS": "/etc/ssl/extra.pem"}, True),
        ({"LD_LIBRARY_PATH": "/var/task/lib:/opt/lib", "NODE_PATH": "/opt/nodejs"}, True),
    ],
)
def test_which_kinds_can_start_ahead(variables: dict[str, str], ahead: bool) -> None:
    assert prestarted.can_start_ahead(prestarted.startup_variables(variables)) is ahead


def test_library_directories_get_placeholders_under_the_code_points() -> None:
    startup = prestarted.startup_variables(
        {"LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/var/task:/var/task/lib:/opt/lib:/opt/../etc"}
    )
    assert prestarted.library_directories(startup) == ["task", "task/lib", "opt/lib"]


def test_start_up_variables_are_those_read_at_start() -> None:
    environment = {
        "NODE_OPTIONS": "--enable-source-maps",
        "LD_LIBRARY_PATH": "/var/task/lib",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "_HANDLER": "index.handler",
        "PATH": "/usr/bin",
    }
    assert prestarted.startup_variables(environment) == (
        ("LANG", "en_US.UTF-8"),
        ("LD_LIBRARY_PATH", "/var/task/lib"),
        ("NODE_OPTIONS", "--enable-source-maps"),
        ("TZ", ":UTC"),
    )


def test_stale_code_points_another_server_removed_first_are_passed_over(tmp_path: Path) -> None:
    """Two servers starting together both clean up after a crashed one: a directory the
    other removed meanwhile is passed over, and the rest is still cleaned up."""
    dead = 999_999_999  # above any pid_max: no such process
    (tmp_path / str(dead + 1) / "node-1").mkdir(parents=True)
    # As a directory listed, then removed by the other server before it is read.
    (tmp_path / str(dead)).symlink_to(tmp_path / "removed-meanwhile")
    prestarted.remove_stale_code_points(tmp_path)
    assert not (tmp_path / str(dead + 1)).exists()
