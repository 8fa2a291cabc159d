"""What the console reads besides the AWS APIs: saved test events, the async queue and its
redrive, the function list's figures, usage for the cost, and the event templates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lamina.arns import Account
from lamina.control.test_events import SavedEventService
from lamina.observability.billing import Prices
from lamina.observability.function_figures import FunctionFigures
from lamina.observability.telemetry import Telemetry
from lamina.pollers.protocol import PollerStatus
from lamina.store.protocols.queue import AsyncQueue

Redrive = Callable[[str, str | None], Awaitable[list[str]]]
EventTemplate = Callable[[str, Account, str], dict[str, Any]]


@dataclass(frozen=True)
class ConsoleDeps:
    """The services the console reads directly (all blocking calls run off the loop)."""

    account: Account
    queue: AsyncQueue
    redrive: Redrive
    saved_events: SavedEventService
    figures: FunctionFigures
    # name -> title, and the builder of each (`lamina.blueprints.events`).
    event_templates: dict[str, str]
    event_template: EventTemplate
    # AWS's list prices as this server is configured.
    prices: Prices
    # The metrics store's usage rows (billed milliseconds by memory size), for the cost.
    telemetry: Telemetry
    # This node's running event source pollers (their lag), by mapping UUID.
    poller_statuses: Callable[[], dict[str, PollerStatus]] = dict
