"""Steps of a server's stop that are slow, said while they are slow.

A stop is short: its steps wait for work in flight and end what the server started. One that
is not leaves whoever stops the server (a service manager, a test harness) waiting, and may
get the server killed before it finishes: then nothing would say which step it was. So a step
that runs past a few seconds is logged as it passes that mark, not only once it ends.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("lamina")

# Past this, a step of the stop is said to be slow (a normal stop takes well under a second).
SLOW_AFTER_S = 2.0


@contextlib.contextmanager
def stop_step(what: str, slow_after_s: float = SLOW_AFTER_S) -> Iterator[None]:
    """Run one step of the stop; say so if it runs past `slow_after_s`, and how long it took."""
    started = time.monotonic()
    said = ("stopping: %s still runs after %g s", what, slow_after_s)
    alarm = threading.Timer(slow_after_s, log.warning, said)
    alarm.daemon = True
    alarm.start()
    try:
        yield
    finally:
        alarm.cancel()
        took = time.monotonic() - started
        if took >= slow_after_s:
            log.warning("stopping: %s took %.1f s", what, took)


async def stop_in_order(*steps: tuple[str, Callable[[], object]]) -> None:
    """Each `(what, close)` in turn, as a `stop_step`; a close may be a coroutine function."""
    for what, close in steps:
        with stop_step(what):
            result = close()
            if inspect.isawaitable(result):
                await result
