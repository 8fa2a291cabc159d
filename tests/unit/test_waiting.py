"""wait_until, the poll loop the integration tests share: returns, times out, tolerates."""

from __future__ import annotations

import pytest

from tests.support.waiting import wait_until


def test_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, [], {"ready": True}])
    assert wait_until(lambda: next(values), timeout=5, interval=0) == {"ready": True}


def test_a_timeout_names_the_condition_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"never ready \(within 0.05 s; last: \[\]\)"):
        wait_until(list, timeout=0.05, interval=0.01, message="never ready")


def test_the_message_may_be_rendered_at_the_end() -> None:
    state = {"seen": 0}

    def poll() -> bool:
        state["seen"] += 1
        return False

    with pytest.raises(AssertionError, match=r"polled [1-9]\d* times"):
        wait_until(
            poll, timeout=0.05, interval=0.01, message=lambda: f"polled {state['seen']} times"
        )


def test_ignored_errors_count_as_not_yet_and_others_escape() -> None:
    attempts = iter([ConnectionRefusedError(), ConnectionRefusedError(), "up"])

    def connect() -> str:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert wait_until(connect, timeout=5, interval=0, ignoring=(OSError,)) == "up"
    with pytest.raises(ValueError, match="broken"):
        wait_until(lambda: int("broken"), timeout=5, ignoring=(OSError,))
