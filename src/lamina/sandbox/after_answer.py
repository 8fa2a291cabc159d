"""Work an invocation's answer does not wait for, done right after the answer is written.

Invoke's fast path writes its client's answer before the invocation's END and REPORT lines,
its records and the release of its environment and concurrency (a concurrency slot other
nodes count goes back before the answer: see `Governor.shared`). The front runs them right
after that write, in the same step of the event loop, so no other request's work, on any
connection, comes between the invocation and them; before the write when it must first wait
for a client that is not reading. Should the front never get to write (it failed first),
the loop's next callback runs them instead: they are never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("lamina.invoke")


class AfterAnswer:
    """Steps run once, in the order added: by `run`, or else by the loop's next callback."""

    __slots__ = ("_fallback", "_loop", "_steps")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._steps: list[Callable[[], None]] = []
        self._fallback: asyncio.Handle | None = None

    def add(self, step: Callable[[], None]) -> None:
        self._steps.append(step)
        if self._fallback is None:
            self._fallback = self._loop.call_soon(self.run)

    def run(self) -> None:
        """Run what was added, each step whatever the ones before it raised."""
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        steps, self._steps = self._steps, []
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("finishing an invocation after its answer failed")
