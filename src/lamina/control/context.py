"""What every domain service is built with."""

from __future__ import annotations

from dataclasses import dataclass, field

from lamina.arns import Account
from lamina.control.code import S3Reader
from lamina.control.event_sources import EventSources, UncheckedSources
from lamina.store.protocols import Stores


@dataclass(frozen=True)
class Domain:
    """The stores, the account and the outside readers, passed to each service."""

    stores: Stores
    account: Account
    s3: S3Reader
    account_concurrency: int
    # Asked whether an event source mapping's queue or stream exists (its own API).
    event_sources: EventSources = field(default_factory=UncheckedSources)
