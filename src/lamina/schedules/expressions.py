"""Schedule expressions as PutRule takes them: `rate(value unit)` or `cron(six fields)`.

Both kinds answer the same two questions in epoch seconds: the first tick after a moment, and
the last tick at or before one (the scheduler fires that one after downtime, and only that
one). A rate counts from its anchor, the minute the schedule was set, as EventBridge's rates
start when the rule is created; cron ignores the anchor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from lamina.schedules.cron import MINUTE, InvalidExpression, parse_cron

_RATE = re.compile(r"rate\(([0-9]+) +(minute|minutes|hour|hours|day|days)\)")
_CRON = re.compile(r"cron\((.*)\)", re.DOTALL)
_UNITS = {"minute": MINUTE, "hour": 60 * MINUTE, "day": 24 * 60 * MINUTE}
# No tick is scheduled past the last year cron accepts (2199); a rate that slow never fires,
# and tick times stay within what the store's 64-bit integers hold.
HORIZON = 7_258_118_400  # 2200-01-01T00:00:00Z


class Schedule(Protocol):
    def next_after(self, moment: int, anchor: int) -> int | None:
        """The first tick strictly after `moment`; None if it never fires again."""
        ...

    def latest_until(self, moment: int, anchor: int) -> int | None:
        """The last tick at or before `moment`; None if there was none yet."""
        ...


@dataclass(frozen=True)
class RateSchedule:
    """Every `period` seconds from the anchor: anchor + period, anchor + 2 x period, ..."""

    period: int

    def next_after(self, moment: int, anchor: int) -> int | None:
        elapsed = max(0, moment - anchor)
        tick = anchor + (elapsed // self.period + 1) * self.period
        return tick if tick < HORIZON else None

    def latest_until(self, moment: int, anchor: int) -> int | None:
        periods = (moment - anchor) // self.period
        return anchor + periods * self.period if periods >= 1 else None


def minute_floor(moment: float) -> int:
    return int(moment) // MINUTE * MINUTE


@lru_cache(maxsize=1024)
def parse_schedule(expression: str) -> Schedule:
    """Parse (cached: rules are re-read on every tick); raises InvalidExpression."""
    rate = _RATE.fullmatch(expression)
    if rate:
        value, unit = int(rate[1]), rate[2]
        if value < 1:
            raise InvalidExpression("a rate must be a positive number")
        # EventBridge insists on the singular for 1 and the plural otherwise.
        if (value == 1) != (not unit.endswith("s")):
            number = "singular" if value == 1 else "plural"
            raise InvalidExpression(f"rate({rate[1]} {unit}): the unit must be {number}")
        return RateSchedule(value * _UNITS[unit.rstrip("s")])
    cron = _CRON.fullmatch(expression)
    if cron:
        return parse_cron(cron[1])
    raise InvalidExpression("a schedule is rate(value unit) or cron(six fields)")
