"""X-Ray trace headers: what each invocation's function sees, and which ones Lamina records.

Every invocation reaches its function with a trace header (`Lambda-Runtime-Trace-Id`, which
the runtimes export as `_X_AMZN_TRACE_ID`), as on AWS:

- `PassThrough` (the default): the caller's `X-Amzn-Trace-Id` unchanged; without one, a new
  `Root=1-<epoch hex>-<24 hex>` and nothing else. Since 2024 Lambda sends no `Parent` or
  `Sampled` here, which the X-Ray SDKs read as "propagate the root, record nothing".
- `Active`: the caller's root (or a new one), `Parent=` the id of the span Lamina records for
  the invocation, and `Sampled=` the caller's decision or, without one, X-Ray's default rule
  (`Sampler`). `Lineage=` (Lambda's recursion counter) is passed along as it came.

Only sampled `Active` invocations carry a `Trace` with `sampled` set: they get the `XRAY`
part of their REPORT line and, when an OTLP endpoint is configured, spans
(`tracing_export`). Everything else pays for the header alone.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lamina.settings import DEFAULT_TRACE_SAMPLE_RATE

if TYPE_CHECKING:
    pass

ACTIVE = "Active"

_ROOT = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def new_root(now: float | None = None) -> str:
    """A new X-Ray trace id: version 1, the epoch second in hex, 96 random bits."""
    epoch = int(time.time() if now is None else now)
    return f"1-{epoch:08x}-{random.getrandbits(96):024x}"


def new_span_id() -> str:
    # Trace and span ids need to be unique, not secret: OpenTelemetry's SDK draws them
    # from `random` too, at a fraction of the cost of the system's entropy.
    return f"{random.getrandbits(64) or 1:016x}"


def new_root_header() -> str:
    """What a front door (a function URL) adds when its caller sent no trace header."""
    return f"Root={new_root()}"


def parse_header(value: str) -> dict[str, str]:
    """The `Key=value` fields of an X-Ray header; keys as sent (they are case-sensitive)."""
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, _, field = part.strip().partition("=")
        if key and field:
            fields.setdefault(key, field.strip())
    return fields


def valid_root(fields: dict[str, str]) -> str | None:
    root = fields.get("Root")
    return root if root is not None and _ROOT.fullmatch(root) else None


def upstream_or_new(given: str | None) -> str:
    """The caller's header when it names a well-formed root, else a new root-only header."""
    if given and (_starts_with_root(given) or valid_root(parse_header(given))):
        return given
    return new_root_header()


def _starts_with_root(header: str) -> bool:
    """The usual `Root=1-...;...` shape, checked without splitting the header."""
    return (
        header.startswith("Root=")
        and _ROOT.fullmatch(header, 5, 40) is not None
        and (len(header) == 40 or header[40] == ";")
    )


def otel_trace_id(root: str) -> int:
    """X-Ray's `1-5759e988-bd862e3fe1be46a994272793` as the 128-bit id OpenTelemetry uses:
    the two hex groups joined (as AWS's X-Ray propagators map them)."""
    return int(root[2:10] + root[11:], 16)


# Not frozen: a frozen dataclass's __init__ costs several times more, and every invocation
# makes one of these. Nothing changes one after it is made.
@dataclass(slots=True)
class Trace:
    """One invocation's tracing: the header its function sees and, when recorded, the ids."""

    header: str
    # The X-Ray trace id (`1-...`); empty unless the function traces actively.
    root: str = ""
    # The caller's span (`Parent=` as received): the parent of the invocation's root span.
    parent: str | None = None
    # `Parent=` as sent to the function: the id of the "Invocation" span and the REPORT
    # line's SegmentId, so that spans the function records nest under it.
    segment: str = ""
    # Lamina records this invocation: spans, and the XRAY part of the REPORT line.
    sampled: bool = False
    # When the platform took the request (an asynchronous event: when it was queued), and
    # when it was admitted to run; the same instant for synchronous calls.
    received_at: float = 0.0
    admitted_at: float = 0.0

    @property
    def xray(self) -> tuple[str, str] | None:
        """(trace id, segment id) for the REPORT line; None when not recorded."""
        return (self.root, self.segment) if self.sampled else None


class Sampler:
    """X-Ray's default rule per function: the first request each second, then `rate`."""

    def __init__(
        self,
        rate: float = DEFAULT_TRACE_SAMPLE_RATE,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._draw = draw
        # The last second in which each function's reservoir was used.
        self._seconds: dict[str, int] = {}

    def sample(self, function: str) -> bool:
        second = int(self._clock())
        if self._seconds.get(function) != second:
            self._seconds[function] = second
            return True
        return self._draw() < self._rate


class Tracing:
    """Decides each invocation's trace header; never awaits, never does I/O."""

    def __init__(self, sampler: Sampler | None = None) -> None:
        self._sampler = sampler or Sampler()

    def begin(
        self, function: str, mode: str, upstream: str | None, received_at: float | None = None
    ) -> Trace:
        if mode != ACTIVE:
            return Trace(upstream_or_new(upstream))
        fields = parse_header(upstream) if upstream else {}
        root = valid_root(fields) or new_root()
        decision = fields.get("Sampled")
        # "?" (or nothing) asks the receiver to decide, as the X-Ray SDKs do.
        sampled = decision == "1" if decision in {"0", "1"} else self._sampler.sample(function)
        parent = fields.get("Parent")
        segment = new_span_id()
        now = time.time()
        header = f"Root={root};Parent={segment};Sampled={int(sampled)}"
        if lineage := fields.get("Lineage"):
            header += f";Lineage={lineage}"
        return Trace(
            header,
            root,
            parent if parent is not None and _SPAN_ID.fullmatch(parent) else None,
            segment,
            sampled,
            now if received_at is None else received_at,
            now,
        )
