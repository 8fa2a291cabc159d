"""A slow step of a server's stop is said while it runs, and how long it took once done."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lamina.stop_steps import stop_in_order, stop_step
from tests.support.waiting import wait_until


def test_a_slow_step_is_said_while_it_runs_then_how_long_it_took(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="lamina")
    with stop_step("the network namespaces", slow_after_s=0.05):
        # Said before the step ends: a stop killed meanwhile still names it.
        wait_until(
            lambda: "stopping: the network namespaces still runs after 0.05 s" in caplog.text,
            timeout=10,
            message=lambda: f"not said while running: {caplog.text!r}",
        )
    assert "stopping: the network namespaces took " in caplog.messages[-1]


def test_a_quick_step_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lamina")
    with stop_step("the templates", slow_after_s=5.0):
        pass
    assert not caplog.messages


def test_steps_stop_in_order_awaiting_those_that_are_coroutines() -> None:
    done: list[str] = []

    async def pollers() -> None:
        await asyncio.sleep(0)
        done.append("pollers")

    asyncio.run(
        stop_in_order(
            ("event source pollers", pollers),
            ("the invoke engine", lambda: done.append("engine")),
        )
    )
    assert done == ["pollers", "engine"]
