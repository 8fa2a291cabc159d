"""Waiting for a condition on a real server: the one poll loop the tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "the condition never held",
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    On timeout, raise AssertionError with `message` (a callable is rendered then, so it can
    describe the state at the end) and the predicate's last value. Exceptions of the types
    in `ignoring` count as "not yet" (a server still starting refuses connections).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignoring as error:
            last = error
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (within {timeout:g} s; last: {last!r})")
        time.sleep(interval)
