"""EventBridge cron expressions: `minutes hours day-of-month month day-of-week year`, in UTC.

The syntax is the Quartz-derived one EventBridge documents: `, - * /` everywhere, `?` in one of
the two day fields (exactly one of them, and only there), `L` and `W` in day-of-month, `L` and
`#` in day-of-week. Where the documentation is silent this follows Quartz, which EventBridge's
behaviour matches: a step may not exceed the field's largest value (so `*/60` is refused),
`L`, `LW`, `nW`, `nL` and `n#k` stand alone in their field, a range such as `FRI-MON` wraps
around, and `L` alone in day-of-week means Saturday, the last day of the week.

Times are epoch seconds. Ticks fall on whole minutes; the finest resolution is one minute.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

MINUTE = 60
FIRST_YEAR = 1970
LAST_YEAR = 2199


class InvalidExpression(ValueError):
    """A schedule expression EventBridge would refuse; the message says what is wrong."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    max_step: int
    names: Mapping[str, int] | None = None
    cyclic: bool = True  # whether a range may wrap around (FRI-MON); years do not

    def value(self, text: str) -> int:
        if re.fullmatch(r"[0-9]{1,4}", text):
            value = int(text)
        elif self.names is not None and text.upper() in self.names:
            value = self.names[text.upper()]
        else:
            raise InvalidExpression(f"{self.name}: {text!r} is not a value")
        if not self.low <= value <= self.high:
            raise InvalidExpression(f"{self.name}: {value} is outside {self.low}-{self.high}")
        return value

    def values(self, text: str) -> frozenset[int]:
        """A comma-separated list of `*`, `a`, `a-b`, each optionally with `/step`."""
        result: set[int] = set()
        for item in text.split(","):
            result.update(self._item(item))
        return frozenset(result)

    def _item(self, item: str) -> list[int]:
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not re.fullmatch(r"[0-9]{1,4}", step_text):
                raise InvalidExpression(f"{self.name}: {item!r} has no valid step")
            step = int(step_text)
            if not 1 <= step <= self.max_step:
                raise InvalidExpression(f"{self.name}: step {step} is outside 1-{self.max_step}")
        if base == "*":
            start, end = self.low, self.high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = self.value(first), self.value(last)
            if start > end and not self.cyclic:
                raise InvalidExpression(f"{self.name}: range {base!r} runs backwards")
        else:
            start = self.value(base)
            # `a/step` means from a to the end of the field.
            end = self.high if slash else start
        span = self.high - self.low + 1
        count = (end - start) % span + 1
        return [self.low + (start - self.low + offset) % span for offset in range(0, count, step)]


# Spelled out rather than taken from `calendar`, whose names follow the process's locale.
_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_DAY_NAMES = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}

MINUTES = _Field("minutes", 0, 59, 59)
HOURS = _Field("hours", 0, 23, 23)
DAYS_OF_MONTH = _Field("day-of-month", 1, 31, 31)
MONTHS = _Field("month", 1, 12, 12, _MONTH_NAMES)
DAYS_OF_WEEK = _Field("day-of-week", 1, 7, 7, _DAY_NAMES)
YEARS = _Field("year", FIRST_YEAR, LAST_YEAR, LAST_YEAR - FIRST_YEAR, cyclic=False)


def weekday(year: int, month: int, day: int) -> int:
    """EventBridge's numbering: 1 is Sunday, 7 is Saturday."""
    return (calendar.weekday(year, month, day) + 1) % 7 + 1


def _month_length(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


# ------------------------------------------------------------------ day rules


class DayRule(Protocol):
    def days(self, year: int, month: int) -> list[int]:
        """The days of this month the rule selects, ascending."""
        ...


@dataclass(frozen=True)
class MonthDays:
    """Listed days of the month (`*`, `1,15`, `1-7`, `5/10`)."""

    values: frozenset[int]

    def days(self, year: int, month: int) -> list[int]:
        length = _month_length(year, month)
        return sorted(day for day in self.values if day <= length)


@dataclass(frozen=True)
class LastDay:
    """`L` in day-of-month."""

    def days(self, year: int, month: int) -> list[int]:
        return [_month_length(year, month)]


@dataclass(frozen=True)
class LastWeekday:
    """`LW`: the last Monday-to-Friday day of the month."""

    def days(self, year: int, month: int) -> list[int]:
        day = _month_length(year, month)
        while weekday(year, month, day) in (1, 7):
            day -= 1
        return [day]


@dataclass(frozen=True)
class NearestWeekday:
    """`nW`: the weekday nearest day n, never leaving the month (1W on a Saturday is the 3rd)."""

    day: int

    def days(self, year: int, month: int) -> list[int]:
        length = _month_length(year, month)
        day = self.day
        if day > length:
            return []
        match weekday(year, month, day):
            case 7:  # Saturday: Friday before, unless that leaves the month
                day = day - 1 if day > 1 else day + 2
            case 1:  # Sunday: Monday after, unless that leaves the month
                day = day + 1 if day < length else day - 2
        return [day]


@dataclass(frozen=True)
class Weekdays:
    """Listed days of the week (`MON-FRI`, `1,7`; `L` alone is 7, Saturday)."""

    values: frozenset[int]

    def days(self, year: int, month: int) -> list[int]:
        length = _month_length(year, month)
        return [day for day in range(1, length + 1) if weekday(year, month, day) in self.values]


@dataclass(frozen=True)
class LastWeekdayOf:
    """`nL` in day-of-week: the last such weekday of the month (6L: the last Friday)."""

    weekday: int

    def days(self, year: int, month: int) -> list[int]:
        day = _month_length(year, month)
        while weekday(year, month, day) != self.weekday:
            day -= 1
        return [day]


@dataclass(frozen=True)
class NthWeekday:
    """`n#k`: the k-th such weekday of the month; months without one are skipped."""

    weekday: int
    nth: int

    def days(self, year: int, month: int) -> list[int]:
        first = (self.weekday - weekday(year, month, 1)) % 7 + 1
        day = first + 7 * (self.nth - 1)
        return [day] if day <= _month_length(year, month) else []


def _day_of_month(text: str) -> DayRule | None:
    if text == "?":
        return None
    if text == "L":
        return LastDay()
    if text == "LW":
        return LastWeekday()
    nearest = re.fullmatch(r"([0-9]{1,2})W", text)
    if nearest:
        return NearestWeekday(DAYS_OF_MONTH.value(nearest[1]))
    return MonthDays(DAYS_OF_MONTH.values(text))


def _day_of_week(text: str) -> DayRule | None:
    if text == "?":
        return None
    if text == "L":
        return Weekdays(frozenset({7}))
    last = re.fullmatch(r"([0-9]|[A-Za-z]{3})L", text)
    if last:
        return LastWeekdayOf(DAYS_OF_WEEK.value(last[1]))
    nth = re.fullmatch(r"([0-9]|[A-Za-z]{3})#([0-9])", text)
    if nth:
        if not 1 <= int(nth[2]) <= 5:
            raise InvalidExpression(f"day-of-week: {text!r}: a month has at most 5 of a weekday")
        return NthWeekday(DAYS_OF_WEEK.value(nth[1]), int(nth[2]))
    return Weekdays(DAYS_OF_WEEK.values(text))


# ------------------------------------------------------------------ schedule


def _first_at_or_after(
    hours: Sequence[int], minutes: Sequence[int], hour: int, minute: int
) -> tuple[int, int] | None:
    for h in hours:
        if h < hour:
            continue
        for m in minutes:
            if h > hour or m >= minute:
                return h, m
    return None


def _last_at_or_before(
    hours: Sequence[int], minutes: Sequence[int], hour: int, minute: int
) -> tuple[int, int] | None:
    for h in reversed(hours):
        if h > hour:
            continue
        for m in reversed(minutes):
            if h < hour or m <= minute:
                return h, m
    return None


def _moment(year: int, month: int, day: int, hour: int, minute: int) -> int:
    return calendar.timegm((year, month, day, hour, minute, 0))


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression; `anchor` arguments exist for rate()'s sake and are ignored."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    day: DayRule
    months: frozenset[int]
    years: frozenset[int]

    def next_after(self, moment: int, anchor: int = 0) -> int | None:
        """The first tick strictly after `moment`, or None if there is none before 2200."""
        start = datetime.fromtimestamp((moment // MINUTE + 1) * MINUTE, UTC)
        year, month = start.year, start.month
        while year <= LAST_YEAR:
            if year not in self.years:
                year, month = year + 1, 1
                continue
            if month in self.months:
                for day in self.day.days(year, month):
                    if (year, month, day) < (start.year, start.month, start.day):
                        continue
                    same_day = (year, month, day) == (start.year, start.month, start.day)
                    floor = (start.hour, start.minute) if same_day else (0, 0)
                    found = _first_at_or_after(self.hours, self.minutes, *floor)
                    if found:
                        return _moment(year, month, day, *found)
            year, month = (year, month + 1) if month < 12 else (year + 1, 1)
        return None

    def latest_until(self, moment: int, anchor: int = 0) -> int | None:
        """The last tick at or before `moment`, or None if there is none since 1970."""
        end = datetime.fromtimestamp(moment // MINUTE * MINUTE, UTC)
        year, month = end.year, end.month
        while year >= FIRST_YEAR:
            if year not in self.years:
                year, month = year - 1, 12
                continue
            if month in self.months:
                for day in reversed(self.day.days(year, month)):
                    if (year, month, day) > (end.year, end.month, end.day):
                        continue
                    same_day = (year, month, day) == (end.year, end.month, end.day)
                    ceiling = (end.hour, end.minute) if same_day else (23, 59)
                    found = _last_at_or_before(self.hours, self.minutes, *ceiling)
                    if found:
                        return _moment(year, month, day, *found)
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        return None


def parse_cron(body: str) -> CronSchedule:
    """The six fields between `cron(` and `)`."""
    fields = body.split()
    if len(fields) != 6:
        raise InvalidExpression(f"a cron expression has 6 fields, not {len(fields)}")
    minutes, hours, day_of_month, month, day_of_week, year = fields
    by_month = _day_of_month(day_of_month)
    by_week = _day_of_week(day_of_week)
    if (by_month is None) == (by_week is None):
        raise InvalidExpression("exactly one of day-of-month and day-of-week must be '?'")
    day = by_month if by_month is not None else by_week
    assert day is not None
    return CronSchedule(
        minutes=tuple(sorted(MINUTES.values(minutes))),
        hours=tuple(sorted(HOURS.values(hours))),
        day=day,
        months=MONTHS.values(month),
        years=YEARS.values(year),
    )
