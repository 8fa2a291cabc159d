"""The time schedules run on: the wall clock, or for tests the wall clock sped up.

With a scale below 1 schedule time runs faster than real time from a fixed origin:
`schedule = origin + (real - origin) / scale`, so with scale 0.01 a `rate(1 minute)` rule
fires every 0.6 real seconds. The origin is a setting rather than the start of the process,
so that a restarted server continues the same schedule time (and can be seen to have been
down for some ticks). Everything else about schedules runs unchanged on this clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScheduleClock:
    scale: float = 1.0
    origin: float = 0.0
    wall: Callable[[], float] = field(default=time.time)

    def now(self) -> float:
        real = self.wall()
        return self.origin + (real - self.origin) / self.scale

    def real_seconds(self, schedule_seconds: float) -> float:
        """How long `schedule_seconds` of schedule time take on the wall clock."""
        return schedule_seconds * self.scale
