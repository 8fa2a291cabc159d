"""What Lamina's use would cost on AWS Lambda, at AWS's list prices (configurable).

AWS bills each request and the compute it used: GB-seconds, i.e. memory (MB / 1024) times
billed duration, which is rounded up to the next millisecond and, since August 2025, includes
the INIT phase of on-demand cold starts (the engine puts both in `billed_ms`). Arm64 compute is
cheaper than x86_64; requests cost the same. Volume tiers and the free tier are not applied:
the figure is the first-tier list price of the use, before any allowance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lamina.settings import Settings

ARM64 = "arm64"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Prices:
    """USD list prices: per request and per GB-second of each architecture."""

    request: float
    gb_second_x86: float
    gb_second_arm64: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        return cls(
            request=settings.price_request_per_million / 1_000_000,
            gb_second_x86=settings.price_gb_second,
            gb_second_arm64=settings.price_gb_second_arm64,
        )

    def gb_second(self, architecture: str) -> float:
        return self.gb_second_arm64 if architecture == ARM64 else self.gb_second_x86

    def cost(self, architecture: str, requests: float, gb_seconds: float) -> float:
        return requests * self.request + gb_seconds * self.gb_second(architecture)


def gb_seconds(memory_mb: int, billed_ms: float) -> float:
    return memory_mb / 1024 * billed_ms / 1000


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `12h`, `7d`, `2w` ago, or an ISO date/time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS_S[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since takes a duration such as 30m, 12h or 7d, or an ISO date such as "
            f"2025-01-31 or 2025-01-31T08:00, not {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def month_start(now: datetime | None = None) -> datetime:
    """The start of the current billing month (UTC), the default for `lamina cost`."""
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
