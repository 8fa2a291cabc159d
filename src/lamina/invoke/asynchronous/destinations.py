"""Sending what an outcome owes: to Lamina functions on our own queue, elsewhere by a sender.

`Destinations` is the port: anything with `send` and `close` fits (the boto3 sender in
`lamina.aws.destinations` for SQS, SNS and EventBridge; an in-memory one in tests). Senders
block, so they run on a few threads of their own, which keeps slow destinations off the
event loop and off shared pools.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from lamina import metrics as m
from lamina.arns import Account, FunctionRef, parse_function_ref
from lamina.aws.destinations import DEAD_LETTER, Delivery, DeliveryFailed
from lamina.control.functions import Resolved
from lamina.control.role_permissions import RolePermissions
from lamina.errors import LaminaError
from lamina.invoke.asynchronous import recursion
from lamina.store.protocols import AsyncEvent

log = logging.getLogger("lamina.async")

_SENDER_THREADS = 8


class Destinations(Protocol):
    """Sends deliveries to destinations outside Lamina. Blocking: called on worker threads."""

    def send(self, delivery: Delivery) -> None:
        """Send one message; raise `DeliveryFailed` if the target refuses it or is unreachable."""
        ...

    def close(self) -> None: ...


Resolve = Callable[[FunctionRef, str | None], Resolved]


@dataclass
class Sent:
    """What became of one round of deliveries."""

    # Records for Lamina functions, to be queued with the event's settlement.
    follow_ups: list[AsyncEvent] = field(default_factory=list)
    # Deliveries that failed, to be tried again later, and why each failed.
    remaining: list[Delivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Deliverer:
    """Routes each delivery: Lamina functions get a follow-up event, the rest the sender."""

    def __init__(
        self,
        destinations: Destinations,
        resolve: Resolve,
        account: Account,
        metrics: m.MetricsRegistry,
        clock: Callable[[], float],
        role_permissions: RolePermissions | None = None,
    ) -> None:
        self._destinations = destinations
        # Enforced mode only: a record goes to a Lamina function only while the source
        # function's role may invoke it, as on AWS, where Lambda sends it as that role.
        self._roles = role_permissions
        self._resolve = resolve
        self._account = account
        self._metrics = metrics
        self._clock = clock
        self._threads = ThreadPoolExecutor(
            _SENDER_THREADS, thread_name_prefix="lamina-destinations"
        )

    async def send(self, event: AsyncEvent, deliveries: list[Delivery]) -> Sent:
        """Try every delivery once; none raises, failures are reported in `Sent`."""
        sent = Sent()
        loop = asyncio.get_running_loop()
        for delivery in deliveries:
            try:
                if delivery.kind == "lambda":
                    sent.follow_ups.append(self._follow_up(event, delivery))
                else:
                    await loop.run_in_executor(self._threads, self._destinations.send, delivery)
            except DeliveryFailed as error:
                metric = (
                    m.DEAD_LETTER_ERRORS
                    if delivery.role == DEAD_LETTER
                    else m.DESTINATION_DELIVERY_FAILURES
                )
                self._metrics.count(metric, event.function)
                log.warning("event %s: delivery failed: %s", event.event_id, error)
                sent.remaining.append(delivery)
                sent.errors.append(str(error))
        return sent

    def _follow_up(self, event: AsyncEvent, delivery: Delivery) -> AsyncEvent:
        """A record sent to a Lamina function: a new event on our own queue, one hop further."""
        try:
            ref = parse_function_ref(delivery.target, self._account)
            resolved = self._resolve(ref, None)
            self._check_role(event, delivery.target)
        except LaminaError as error:
            raise DeliveryFailed(f"{delivery.target}: {error.message}") from None
        return recursion.next_hop(
            event, resolved.record.name, resolved.qualifier, delivery.body, self._clock()
        )

    def _check_role(self, event: AsyncEvent, target: str) -> None:
        """Raise DeliveryFailed unless the source function's role may invoke `target`."""
        if self._roles is None:
            return
        source = self._resolve(FunctionRef(event.function, event.qualifier), None)
        role = source.config.role
        if not self._roles.allows(role, source.record.name, "lambda:InvokeFunction", target):
            caller = self._roles.session(role, source.record.name).arn
            raise DeliveryFailed(
                f"{target}: {caller} is not authorized to perform: lambda:InvokeFunction"
            )

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._destinations.close()
