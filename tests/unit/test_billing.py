"""Pricing use at AWS list prices, and `--since`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lamina.observability.billing import Prices, gb_seconds, month_start, parse_since
from lamina.settings import Settings


def test_gb_seconds_are_memory_in_gb_times_billed_seconds() -> None:
    assert gb_seconds(1024, 1000) == 1.0
    assert gb_seconds(128, 3) == pytest.approx(0.000375)
    assert gb_seconds(1769, 250) == pytest.approx(1769 / 1024 * 0.25)


def test_default_prices_are_aws_list_prices() -> None:
    prices = Prices.from_settings(Settings())
    assert prices.request == pytest.approx(0.0000002)
    assert prices.gb_second("x86_64") == 0.0000166667
    assert prices.gb_second("arm64") == 0.0000133334
    # One million 100 ms invocations at 128 MB on x86_64: $0.20 + 12,500 GB-s.
    cost = prices.cost("x86_64", 1_000_000, gb_seconds(128, 100) * 1_000_000)
    assert cost == pytest.approx(0.20 + 12_500 * 0.0000166667)


def test_prices_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "LAMINA_PRICE_REQUEST_PER_MILLION": "0.25",
            "LAMINA_PRICE_GB_SECOND": "0.00002",
            "LAMINA_PRICE_GB_SECOND_ARM64": "0.00001",
        }
    )
    prices = Prices.from_settings(settings)
    assert prices.cost("arm64", 4, 2.0) == pytest.approx(4 * 0.25e-6 + 2 * 0.00001)
    assert prices.cost("x86_64", 0, 2.0) == pytest.approx(0.00004)


NOW = datetime(2026, 3, 15, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("90s", NOW - timedelta(seconds=90)),
        ("1.5h", NOW - timedelta(minutes=90)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T08:00", datetime(2026, 3, 1, 8, tzinfo=UTC)),
        ("2026-03-01T08:00+02:00", datetime(2026, 3, 1, 6, tzinfo=UTC)),
    ],
)
def test_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "7 days", "-1d", "2026-13-01"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="--since takes"):
        parse_since(text, NOW)


def test_the_default_period_is_the_billing_month() -> None:
    assert month_start(NOW) == datetime(2026, 3, 1, tzinfo=UTC)
