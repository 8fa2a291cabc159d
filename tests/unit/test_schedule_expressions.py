"""rate() and cron() expressions: what PutRule accepts, and when each expression fires.

Firing times are checked two ways: against dates worked out by hand from a calendar, and
against a reference written here from AWS's description of each wildcard, which decides
whether a given day matches (where the module generates the matching days of a month).
"""

from __future__ import annotations

import calendar
import random
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from lamina.schedules.cron import InvalidExpression
from lamina.schedules.expressions import RateSchedule, minute_floor, parse_schedule

JAN_2024 = calendar.timegm((2024, 1, 1, 0, 0, 0))


def at(text: str) -> int:
    return calendar.timegm(datetime.strptime(text, "%Y-%m-%d %H:%M").timetuple())


def show(moment: int | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M")


def ticks(expression: str, start: int, count: int) -> list[str | None]:
    schedule = parse_schedule(expression)
    found: list[str | None] = []
    moment: int | None = start
    for _ in range(count):
        assert moment is not None
        moment = schedule.next_after(moment, 0)
        found.append(show(moment))
        if moment is None:
            break
    return found


# --------------------------------------------------------------------------- rate()


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43200),
        ("rate(1 day)", 86400),
        ("rate(30 days)", 30 * 86400),
    ],
)
def test_valid_rates(expression: str, period: int) -> None:
    assert parse_schedule(expression) == RateSchedule(period)


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",  # the unit must be singular for 1 ...
        "rate(5 minute)",  # ... and plural otherwise
        "rate(1 hours)",
        "rate(2 day)",
        "rate(0 minutes)",
        "rate(-1 minutes)",
        "rate(1.5 minutes)",
        "rate(30 seconds)",
        "rate(1 week)",
        "rate(5 Minutes)",
        "rate(5minutes)",
        "rate( 5 minutes)",
        "rate(5 minutes",
        "rate()",
        "rate(minutes)",
        "RATE(5 minutes)",
        " rate(5 minutes)",
        "at(2030-01-01T00:00:00)",  # EventBridge Scheduler only, not rules
        "every 5 minutes",
        "",
    ],
)
def test_invalid_rates(expression: str) -> None:
    with pytest.raises(InvalidExpression):
        parse_schedule(expression)


def test_a_rate_counts_from_its_anchor() -> None:
    schedule = parse_schedule("rate(5 minutes)")
    anchor = at("2024-01-01 10:00")
    assert show(schedule.next_after(anchor, anchor)) == "2024-01-01 10:05"
    assert show(schedule.next_after(anchor + 299, anchor)) == "2024-01-01 10:05"
    assert show(schedule.next_after(anchor + 300, anchor)) == "2024-01-01 10:10"
    # The anchor itself is not a tick: a rate first fires one period after it is set.
    assert schedule.latest_until(anchor + 299, anchor) is None
    assert show(schedule.latest_until(anchor + 300, anchor)) == "2024-01-01 10:05"
    assert show(schedule.latest_until(anchor + 3 * 3600 + 7, anchor)) == "2024-01-01 13:00"


def test_a_rate_too_slow_for_the_calendar_never_fires() -> None:
    schedule = parse_schedule("rate(100000 days)")
    assert schedule.next_after(JAN_2024, JAN_2024) is None


def test_minute_floor() -> None:
    assert minute_floor(JAN_2024 + 59.9) == JAN_2024
    assert minute_floor(JAN_2024 + 60) == JAN_2024 + 60


# --------------------------------------------------------------------------- cron() syntax


@pytest.mark.parametrize(
    ("expression", "first_two"),
    [
        # Worked out from a calendar: 2024-01-01 is a Monday, February 2024 has 29 days.
        ("cron(0 10 * * ? *)", ["2024-01-01 10:00", "2024-01-02 10:00"]),
        ("cron(15 12 * * ? *)", ["2024-01-01 12:15", "2024-01-02 12:15"]),
        ("cron(0 18 ? * MON-FRI *)", ["2024-01-01 18:00", "2024-01-02 18:00"]),
        ("cron(0 8 1 * ? *)", ["2024-01-01 08:00", "2024-02-01 08:00"]),
        ("cron(0/15 * * * ? *)", ["2024-01-01 00:00", "2024-01-01 00:15"]),
        ("cron(0/10 * ? * MON-FRI *)", ["2024-01-01 00:00", "2024-01-01 00:10"]),
        ("cron(0/5 8-17 ? * MON-FRI *)", ["2024-01-01 08:00", "2024-01-01 08:05"]),
        ("cron(0 9 ? * 2#1 *)", ["2024-01-01 09:00", "2024-02-05 09:00"]),
        ("cron(0 12 L * ? *)", ["2024-01-31 12:00", "2024-02-29 12:00"]),
        ("cron(0 12 LW * ? *)", ["2024-01-31 12:00", "2024-02-29 12:00"]),
        ("cron(0 12 15W * ? *)", ["2024-01-15 12:00", "2024-02-15 12:00"]),
        ("cron(0 12 ? * 6L *)", ["2024-01-26 12:00", "2024-02-23 12:00"]),
        ("cron(0 12 ? * FRIL *)", ["2024-01-26 12:00", "2024-02-23 12:00"]),
        ("cron(0 12 ? * L *)", ["2024-01-06 12:00", "2024-01-13 12:00"]),
        ("cron(0 12 ? * mon-fri *)", ["2024-01-01 12:00", "2024-01-02 12:00"]),
        ("cron(0 12 1 jan,Jul ? *)", ["2024-01-01 12:00", "2024-07-01 12:00"]),
        # Each step leaves only its field's first value, and the year 2199.
        ("cron(*/59 */23 */31 */12 ? */229)", ["2199-01-01 00:00", "2199-01-01 00:59"]),
        ("cron(0 22-2 ? * FRI-MON *)", ["2024-01-01 00:00", "2024-01-01 01:00"]),
        ("cron(0 0 1 1 ? 1970-2199)", ["2024-01-01 00:00", "2025-01-01 00:00"]),
        # The first months of 2024 with five Sundays are March and June.
        ("cron(0 0 ? * SUN#5 *)", ["2024-03-31 00:00", "2024-06-30 00:00"]),
        ("cron(0  0  *  *  ?  *)", ["2024-01-01 00:00", "2024-01-02 00:00"]),
    ],
)
def test_valid_crons(expression: str, first_two: list[str]) -> None:
    assert ticks(expression, JAN_2024 - 60, 2) == first_two


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 10 * * *)",  # five fields, as Unix cron has
        "cron(0 10 * * ? * *)",  # seven
        "cron(7 20 * * 1-7 *)",  # both day fields given
        "cron(0 10 * * * *)",  # `*` in both day fields
        "cron(0 10 ? * ? *)",  # `?` in both
        "cron(*/60 * * * ? *)",  # step beyond the field
        "cron(0 */24 * * ? *)",
        "cron(0 0 * */13 ? *)",
        "cron(0 0 ? * */8 *)",
        "cron(0/0 * * * ? *)",
        "cron(15 12 ? * -1 *)",
        "cron(60 * * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 0 0 * ? *)",
        "cron(0 0 32 * ? *)",
        "cron(0 0 * 0 ? *)",
        "cron(0 0 * 13 ? *)",
        "cron(0 0 ? * 0 *)",
        "cron(0 0 ? * 8 *)",
        "cron(0 0 * * ? 1969)",
        "cron(0 0 * * ? 2200)",
        "cron(0 0 * * ? 2030-2025)",  # years do not wrap around
        "cron(L * * * ? *)",  # L, W, # and ? only where documented
        "cron(0 L * * ? *)",
        "cron(0 0 * L ? *)",
        "cron(0 0 * * ? L)",
        "cron(? 0 * * ? *)",
        "cron(0 0 * ? ? *)",
        "cron(0 0 ? * 1W *)",
        "cron(0 0 1#2 * ? *)",
        "cron(0 0 3L * ? *)",
        "cron(0 0 ? * 3#6 *)",  # a month has at most five of a weekday
        "cron(0 0 ? * 3#0 *)",
        "cron(0 0 ? * 8#1 *)",
        "cron(0 0 ? * 3#1,6#3 *)",  # `#` stands alone
        "cron(0 0 L,15 * ? *)",  # so do L and W
        "cron(0 0 1-5W * ? *)",
        "cron(0 0 0W * ? *)",
        "cron(0 0 32W * ? *)",
        "cron(0 0 ? * 8L *)",
        "cron(0 0 ? * MON-FRIL *)",
        "cron(1,,2 * * * ? *)",
        "cron(1- * * * ? *)",
        "cron(0 0 * FOO ? *)",
        "cron(0 0 ? * MONDAY *)",
        "cron(a b c d e f)",
        "cron()",
        "cron(0 0 * * ? *",
        "cron (0 0 * * ? *)",
        "CRON(0 0 * * ? *)",
    ],
)
def test_invalid_crons(expression: str) -> None:
    with pytest.raises(InvalidExpression):
        parse_schedule(expression)


# --------------------------------------------------------------------------- cron() firing


def test_every_five_minutes_in_working_hours_on_weekdays() -> None:
    # 2024-01-05 is a Friday.
    assert ticks("cron(0/5 8-17 ? * MON-FRI *)", at("2024-01-05 17:50"), 4) == [
        "2024-01-05 17:55",
        "2024-01-08 08:00",
        "2024-01-08 08:05",
        "2024-01-08 08:10",
    ]


def test_first_monday_of_the_month() -> None:
    assert ticks("cron(0 9 ? * 2#1 *)", JAN_2024 - 60, 4) == [
        "2024-01-01 09:00",
        "2024-02-05 09:00",
        "2024-03-04 09:00",
        "2024-04-01 09:00",
    ]


def test_last_day_of_the_month_follows_leap_years() -> None:
    assert ticks("cron(0 12 L 2 ? *)", JAN_2024, 3) == [
        "2024-02-29 12:00",
        "2025-02-28 12:00",
        "2026-02-28 12:00",
    ]


def test_last_weekday_of_the_month() -> None:
    # June 2024 ends on a Sunday, August 2024 on a Saturday, March 2025 on a Monday.
    assert ticks("cron(0 12 LW * ? *)", at("2024-06-01 00:00"), 10)[::2] == [
        "2024-06-28 12:00",
        "2024-08-30 12:00",
        "2024-10-31 12:00",
        "2024-12-31 12:00",
        "2025-02-28 12:00",
    ]
    assert ticks("cron(0 12 LW 3 ? *)", JAN_2024, 2) == ["2024-03-29 12:00", "2025-03-31 12:00"]


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        # The 1st is a Saturday: the nearest weekday inside the month is Monday the 3rd.
        ("cron(0 0 1W 6 ? *)", "2024-05-01 00:00", "2024-06-03 00:00"),
        # The 15th is a Saturday: Friday the 14th.
        ("cron(0 0 15W 6 ? *)", "2024-05-01 00:00", "2024-06-14 00:00"),
        # The 15th is a Sunday: Monday the 16th.
        ("cron(0 0 15W 9 ? *)", "2024-05-01 00:00", "2024-09-16 00:00"),
        # The 31st is a Sunday: Friday the 29th, not Monday in April.
        ("cron(0 0 31W 3 ? *)", "2024-01-01 00:00", "2024-03-29 00:00"),
        # A weekday is itself.
        ("cron(0 0 10W 1 ? *)", "2024-01-01 00:00", "2024-01-10 00:00"),
        # April has no 31st: nothing in April, the next is May 31st (a Friday).
        ("cron(0 0 31W 4,5 ? *)", "2024-04-01 00:00", "2024-05-31 00:00"),
    ],
)
def test_nearest_weekday(expression: str, start: str, expected: str) -> None:
    assert ticks(expression, at(start), 1) == [expected]


def test_last_friday_and_l_alone_is_saturday() -> None:
    assert ticks("cron(0 0 ? * 6L *)", at("2024-05-01 00:00"), 2) == [
        "2024-05-31 00:00",
        "2024-06-28 00:00",
    ]
    assert ticks("cron(0 0 ? * L *)", JAN_2024, 2) == ["2024-01-06 00:00", "2024-01-13 00:00"]


def test_fifth_thursday_skips_months_without_one() -> None:
    # January 2024 has four Thursdays; February 2024 (a leap month) has five.
    assert ticks("cron(0 0 ? * 5#5 *)", at("2024-01-05 00:00"), 2) == [
        "2024-02-29 00:00",
        "2024-05-30 00:00",
    ]


def test_ranges_wrap_around() -> None:
    # Friday 22:00 to Monday 02:59, hours 22, 23, 0, 1, 2.
    assert ticks("cron(0 22-2 ? * FRI-MON *)", at("2024-01-04 23:30"), 6) == [
        "2024-01-05 00:00",
        "2024-01-05 01:00",
        "2024-01-05 02:00",
        "2024-01-05 22:00",
        "2024-01-05 23:00",
        "2024-01-06 00:00",
    ]


def test_years_and_schedules_that_never_fire() -> None:
    assert ticks("cron(0 0 1 1 ? 2030)", JAN_2024, 2) == ["2030-01-01 00:00", None]
    assert ticks("cron(0 0 30 2 ? *)", JAN_2024, 1) == [None]
    assert parse_schedule("cron(0 0 1 1 ? 2030)").latest_until(JAN_2024, 0) is None


def test_next_is_strictly_after_and_latest_is_at_or_before() -> None:
    schedule = parse_schedule("cron(0/15 * * * ? *)")
    tick = at("2024-03-10 10:15")
    assert show(schedule.next_after(tick, 0)) == "2024-03-10 10:30"
    assert show(schedule.next_after(tick - 1, 0)) == "2024-03-10 10:15"
    assert show(schedule.latest_until(tick, 0)) == "2024-03-10 10:15"
    assert show(schedule.latest_until(tick + 59, 0)) == "2024-03-10 10:15"
    assert show(schedule.latest_until(tick - 1, 0)) == "2024-03-10 10:00"
    # Across a month and a year boundary, backwards.
    assert show(parse_schedule("cron(0 9 ? * 2#1 *)").latest_until(JAN_2024, 0)) == (
        "2023-12-04 09:00"
    )


# ------------------------------------------------------------------ against a reference

_DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def _number(text: str, names: Sequence[str], first: int) -> int:
    return list(names).index(text.upper()) + first if text.upper() in names else int(text)


def _expand(field: str, low: int, high: int, names: Sequence[str] = ()) -> set[int]:
    values: set[int] = set()
    for item in field.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (_number(part, names, low) for part in base.split("-"))
        else:
            start = _number(base, names, low)
            end = high if step else start
        value, seen = start, 0
        while True:
            if seen % int(step or 1) == 0:
                values.add(value)
            if value == end:
                break
            value = low if value == high else value + 1
            seen += 1
    return values


def _aws_weekday(day: date) -> int:
    return day.isoweekday() % 7 + 1  # Sunday 1 ... Saturday 7


def _is_weekday(day: date) -> bool:
    return day.isoweekday() <= 5


def _day_matches(day_of_month: str, day_of_week: str, day: date) -> bool:
    """Whether `day` matches, decided from the day itself and its neighbours."""
    next_week = day + timedelta(days=7)
    tomorrow = day + timedelta(days=1)
    if day_of_month != "?":
        if day_of_month == "L":
            return tomorrow.month != day.month
        if day_of_month == "LW":
            later = [day + timedelta(days=n) for n in range(1, 4)]
            return _is_weekday(day) and not any(
                _is_weekday(other) and other.month == day.month for other in later
            )
        if day_of_month.endswith("W"):
            wanted = int(day_of_month[:-1])
            try:
                target = day.replace(day=wanted)
            except ValueError:
                return False
            # The closest weekday to the target that lies in this month, trying the day
            # itself, then one day either side (the day before first), then two.
            candidates = [
                target + timedelta(days=offset)
                for offset in (0, -1, 1, -2, 2)
                if (target + timedelta(days=offset)).month == day.month
                and _is_weekday(target + timedelta(days=offset))
            ]
            return bool(candidates) and candidates[0] == day
        return day.day in _expand(day_of_month, 1, 31)
    if day_of_week == "L":
        return _aws_weekday(day) == 7
    last = re.fullmatch(r"(\w+)L", day_of_week)
    if last:
        weekday = _number(last[1], _DAY_NAMES, 1)
        return _aws_weekday(day) == weekday and next_week.month != day.month
    if "#" in day_of_week:
        weekday_text, nth = day_of_week.split("#")
        weekday = _number(weekday_text, _DAY_NAMES, 1)
        return _aws_weekday(day) == weekday and (day.day - 1) // 7 + 1 == int(nth)
    return _aws_weekday(day) in _expand(day_of_week, 1, 7, _DAY_NAMES)


def reference_ticks(expression: str, first: date, days: int) -> list[int]:
    fields = expression[len("cron(") : -1].split()
    minutes = sorted(_expand(fields[0], 0, 59))
    hours = sorted(_expand(fields[1], 0, 23))
    months = _expand(fields[3], 1, 12, _MONTH_NAMES)
    years = _expand(fields[5], 1970, 2199)
    result: list[int] = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        if day.year not in years or day.month not in months:
            continue
        if not _day_matches(fields[2], fields[4], day):
            continue
        for hour in hours:
            for minute in minutes:
                result.append(calendar.timegm((day.year, day.month, day.day, hour, minute, 0)))
    return result


REFERENCE_CASES = [
    ("cron(0 10 * * ? *)", 800),
    ("cron(0 18 ? * MON-FRI *)", 800),
    ("cron(0/15 * * * ? *)", 10),
    ("cron(0/5 8-17 ? * MON-FRI *)", 40),
    ("cron(5,35 */6 1-7,15 JAN,JUL ? 2024-2026)", 1200),
    ("cron(0 9 ? * 2#1 *)", 1500),
    ("cron(0 0 ? * 5#5 *)", 1500),
    ("cron(0 12 L * ? *)", 1500),
    ("cron(30 6 LW * ? *)", 1500),
    ("cron(0 0 1W * ? *)", 1500),
    ("cron(0 0 2W * ? *)", 1500),
    ("cron(0 0 28W * ? *)", 1500),
    ("cron(0 0 29W * ? *)", 1500),
    ("cron(0 0 15W * ? *)", 1500),
    ("cron(0 0 30W * ? *)", 1500),
    ("cron(0 0 31W * ? *)", 1500),
    ("cron(0 0 ? * 6L *)", 1500),
    ("cron(0 0 ? * 1L *)", 1500),
    ("cron(0 0 ? * L *)", 400),
    ("cron(0 0 29 2 ? *)", 3000),
    ("cron(0 22-2 ? * FRI-MON *)", 60),
    ("cron(10-50/20 1/7 ? 3-11/4 TUE,THU *)", 800),
    ("cron(0 0 1/10 */2 ? 2024/2)", 1500),
]


@pytest.mark.parametrize(("expression", "days"), REFERENCE_CASES)
def test_matches_the_reference(expression: str, days: int) -> None:
    first = date(2023, 12, 25)
    expected = reference_ticks(expression, first, days)
    assert expected, "a case that never fires in its window tests nothing"
    schedule = parse_schedule(expression)
    start = calendar.timegm(first.timetuple()) - 1
    produced: list[int] = []
    moment = schedule.next_after(start, 0)
    while moment is not None and moment < expected[-1] + 1:
        produced.append(moment)
        moment = schedule.next_after(moment, 0)
    assert [show(t) for t in produced] == [show(t) for t in expected]
    # latest_until agrees at random moments inside the window.
    rng = random.Random(expression)
    for _ in range(200):
        moment = rng.randrange(expected[0], expected[-1] + 1)
        before = [t for t in expected if t <= moment]
        after = [t for t in expected if t > moment]
        assert schedule.latest_until(moment, 0) == before[-1]
        if after:
            assert schedule.next_after(moment, 0) == after[0]
