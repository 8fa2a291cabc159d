"""When an environment's CPU cap is written: after init, right behind its first event."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from lamina.sandbox import cgroups
from lamina.sandbox.cgroups import EnvironmentCgroup
from lamina.sandbox.cpu_cap import IDLE_GRACE_S, cap_after_init
from lamina.sandbox.runtime_api import Invocation, RuntimeChannel

Scenario = Callable[[RuntimeChannel, Path, list[Invocation]], Awaitable[None]]


@pytest.fixture(autouse=True)
def files_made_on_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The group is a plain directory: no kernel makes its control files, a write does."""
    monkeypatch.setattr(cgroups, "_WRITE_FLAGS", cgroups._WRITE_FLAGS | os.O_CREAT | os.O_TRUNC)


def run(tmp_path: Path, scenario: Scenario) -> None:
    """`scenario` with a channel whose environment's (v1) cpu group is `tmp_path`, capped
    for 128 MB by `cap_after_init`; the events the runtime was sent are in the list."""

    async def main() -> None:
        channel = RuntimeChannel()
        cap_after_init(channel, EnvironmentCgroup(1, {"cpu": tmp_path}), 128)
        await scenario(channel, tmp_path / "cpu.cfs_quota_us", [])

    asyncio.run(main())


def event(request_id: str) -> Invocation:
    return Invocation(request_id=request_id, payload=b"{}", deadline_ms=1, function_arn="arn")


def test_the_cap_is_written_right_after_the_first_event_is_handed_over(tmp_path: Path) -> None:
    async def scenario(channel: RuntimeChannel, quota: Path, sent: list[Invocation]) -> None:
        channel.want_next(sent.append)  # init is over: the runtime asks for its first event
        await asyncio.sleep(0)
        assert not quota.exists()  # not between init and the event a call waits for
        channel.deliver(event("first"))
        assert [invocation.request_id for invocation in sent] == ["first"]
        assert quota.read_text() == "1447"  # in the same step as the event, not later
        quota.unlink()
        await asyncio.sleep(IDLE_GRACE_S * 3)
        assert not quota.exists()  # written once: the fallback for idle ones was cancelled

    run(tmp_path, scenario)


def test_an_event_queued_before_the_runtime_asks_is_capped_once_it_is_sent(
    tmp_path: Path,
) -> None:
    async def scenario(channel: RuntimeChannel, quota: Path, sent: list[Invocation]) -> None:
        channel.deliver(event("early"))
        assert not quota.exists()
        # Asked while its request is parsed: the event goes out at the end of that step.
        channel.want_next(sent.append)
        assert [invocation.request_id for invocation in sent] == ["early"]
        assert not quota.exists()
        await asyncio.sleep(0)
        assert quota.read_text() == "1447"

    run(tmp_path, scenario)


def test_an_environment_no_call_takes_is_capped_shortly_after_its_init(tmp_path: Path) -> None:
    async def scenario(channel: RuntimeChannel, quota: Path, sent: list[Invocation]) -> None:
        await asyncio.sleep(IDLE_GRACE_S * 3)
        assert not quota.exists()  # init still runs: uncapped, however long it takes
        channel.want_next(sent.append)
        for _ in range(3):
            await asyncio.sleep(0)
        assert not quota.exists()  # not at the end of init, as a first call would wait
        for _ in range(100):  # IDLE_GRACE_S later, on however busy a machine
            if quota.exists():
                break
            await asyncio.sleep(IDLE_GRACE_S)
        assert quota.read_text() == "1447"  # whatever it left running is capped now
        quota.unlink()
        channel.deliver(event("later"))
        assert sent and not quota.exists()  # and not written a second time

    run(tmp_path, scenario)


def test_a_hook_that_fails_is_logged_and_the_event_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail() -> None:
        raise ValueError("no such controller")

    async def main() -> list[str]:
        channel = RuntimeChannel()
        sent: list[str] = []
        channel.on_first_event(fail)
        channel.want_next(lambda invocation: sent.append(invocation.request_id))
        channel.deliver(event("one"))
        return sent

    with caplog.at_level(logging.ERROR, logger="lamina.sandbox"):
        assert asyncio.run(main()) == ["one"]
    assert "a hook on a runtime's first event failed" in caplog.text
    assert "no such controller" in caplog.text


def test_a_hook_for_the_first_event_runs_at_once_when_it_has_been_handed_over() -> None:
    async def main() -> None:
        channel = RuntimeChannel()
        ran: list[str] = []
        channel.on_first_event(lambda: ran.append("before"))
        channel.want_next(lambda _: ran.append("sent"))
        channel.deliver(event("one"))
        channel.on_first_event(lambda: ran.append("after"))
        channel.want_next(lambda _: ran.append("sent again"))
        channel.deliver(event("two"))
        assert ran == ["sent", "before", "after", "sent again"]

    asyncio.run(main())
