"""Runs one poller per Enabled event source mapping and follows the store.

Every reconcile interval the supervisor reads the Enabled mappings. A new one gets a poller;
one that was disabled or deleted has its poller stopped; one that was updated (its
`last_modified` moved) has its poller stopped and, once that poller has finished its
batches, a new one started with the new settings. Two pollers never run for one mapping at
once, so a stream's checkpoints have one writer. Reading the store (rather than being told)
means a mapping changed through any node, or left Enabled by the last run, is picked up the
same way.

A poller whose `run` raised is restarted after a pause that doubles up to a minute.

Before starting a poller the supervisor takes the mapping's lease (`OwnershipLeases`), and it
renews its leases at every reconcile: on nodes sharing one store, each mapping is polled by
one node at a time. A poller whose lease went to another node is stopped, and so is every
poller once the leases may have lapsed because they could not be renewed. A node that dies
renews nothing; another node takes its mappings when their leases expire. On one node alone
(`LocalOwnership`) every lease is granted at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from lamina.model.mappings import ENABLED, EventSourceMapping
from lamina.pollers.context import PollerContext
from lamina.pollers.protocol import EventSourcePoller, PollerStatus
from lamina.store.protocols.ownership import LocalOwnership, OwnershipLeases

log = logging.getLogger("lamina.pollers")

T = TypeVar("T")

Factory = Callable[[EventSourceMapping, PollerContext], EventSourcePoller]
# Why a mapping's poller may not read its source now (its LastProcessingResult), or None.
AccessCheck = Callable[[EventSourceMapping], str | None]

_RESTART_PAUSE_S = 1.0
_RESTART_PAUSE_MAX_S = 60.0
# How long `close` lets pollers finish their batches before cancelling them (whatever was
# cancelled is redelivered: SQS after the visibility timeout, streams from the checkpoint).
CLOSE_GRACE_S = 5.0


@dataclass
class _Running:
    mapping: EventSourceMapping
    poller: EventSourcePoller
    task: asyncio.Task[None]
    stopping: bool = False


class PollerSupervisor:
    def __init__(
        self,
        context: PollerContext,
        factories: Mapping[str, Factory],
        *,
        interval_s: float = 0.25,
        leases: OwnershipLeases | None = None,
        access: AccessCheck | None = None,
    ) -> None:
        """`access`: enforced mode's check that a function's role still lets its poller read
        the source (a refused mapping is not polled until the role allows it again)."""
        self._context = context
        self._access = access
        self._factories = dict(factories)
        self._interval = interval_s
        self._running: dict[str, _Running] = {}
        # Mapping UUID -> (failures in a row, not before) for pollers that raised.
        self._restarts: dict[str, tuple[int, float]] = {}
        self._unpolled: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._leases: OwnershipLeases = leases or LocalOwnership()
        self._threads = ThreadPoolExecutor(2, thread_name_prefix="lamina-supervisor")
        # Until when (monotonic) the leases last claimed are certainly still this node's.
        self._held_until = 0.0

    @property
    def context(self) -> PollerContext:
        return self._context

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="lamina-pollers")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for running in self._running.values():
            running.poller.stop()
        tasks = [running.task for running in self._running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        held = list(self._running)
        self._running.clear()
        if held:
            try:  # so that another node takes these mappings now, not when the leases lapse
                await self._call(self._leases.release, held)
            except Exception:
                log.exception("event source mapping leases could not be released")
        self._context.threads.shutdown(wait=False, cancel_futures=True)
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """A store or lease call on the supervisor's own threads, never queued behind the
        pollers' long polls."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(function, *args))

    def statuses(self) -> dict[str, PollerStatus]:
        """The running pollers' status by mapping UUID."""
        return {uuid: running.poller.status() for uuid, running in self._running.items()}

    async def _loop(self) -> None:
        while True:
            try:
                # Bounded: a stalled store must not keep pollers running past their leases.
                await asyncio.wait_for(self.reconcile(), min(self._leases.hold_s / 2, 30.0))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event source mappings could not be reconciled")
                if time.monotonic() >= self._held_until:
                    self._stop_all("its lease could not be renewed")
            await asyncio.sleep(self._interval)

    async def reconcile(self) -> None:
        """Bring the running pollers in line with the Enabled mappings once."""
        enabled = await self._call(self._context.store.in_states, [ENABLED])
        wanted = {mapping.uuid: mapping for mapping in enabled}
        started = time.monotonic()
        polled = [uuid for uuid, mapping in wanted.items() if mapping.kind in self._factories]
        held = await self._call(self._leases.claim, polled)
        self._held_until = started + self._leases.hold_s
        refused = await self._refusals([wanted[uuid] for uuid in held if uuid in wanted])
        for uuid, running in list(self._running.items()):
            if running.task.done():
                self._finished(uuid, running)
                continue
            mapping = wanted.get(uuid)
            changed = mapping is None or mapping.last_modified != running.mapping.last_modified
            if changed or uuid not in held:
                why = _why(mapping) if changed else "its lease is another node's"
                self._stop(uuid, running, why)
            elif uuid in refused:
                self._stop(uuid, running, "its function's role may not read the source")
        now = time.monotonic()
        for uuid, mapping in wanted.items():
            if uuid in self._running:
                continue
            not_before = self._restarts.get(uuid, (0, 0.0))[1]
            if now < not_before:
                continue
            factory = self._factories.get(mapping.kind)
            if factory is None:
                if uuid not in self._unpolled:
                    self._unpolled.add(uuid)
                    log.warning(
                        "mapping %s: Lamina has no poller for %s sources; it is kept but "
                        "nothing reads its source",
                        uuid,
                        mapping.kind,
                    )
                continue
            if uuid in refused:
                await self._context.record_result(mapping, refused[uuid])
            elif uuid in held:
                self._start(mapping, factory)
        for uuid in list(self._restarts):
            if uuid not in wanted:
                del self._restarts[uuid]

    async def _refusals(self, mappings: list[EventSourceMapping]) -> dict[str, str]:
        """The mappings whose role may not read their source now, with why."""
        check = self._access
        if check is None or not mappings:
            return {}

        def judge() -> dict[str, str]:
            found = {}
            for mapping in mappings:
                refusal = check(mapping)
                if refusal is not None:
                    found[mapping.uuid] = refusal
            return found

        return await self._call(judge)

    def _stop(self, uuid: str, running: _Running, why: str) -> None:
        if not running.stopping:
            running.stopping = True
            running.poller.stop()
            log.info("mapping %s: poller stopping (%s)", uuid, why)

    def _stop_all(self, why: str) -> None:
        for uuid, running in self._running.items():
            self._stop(uuid, running, why)

    def _start(self, mapping: EventSourceMapping, factory: Factory) -> None:
        poller = factory(mapping, self._context)
        task = asyncio.create_task(poller.run(), name=f"lamina-poller-{mapping.uuid}")
        self._running[mapping.uuid] = _Running(mapping, poller, task)
        log.info(
            "mapping %s: polling %s for %s",
            mapping.uuid,
            mapping.event_source_arn or ",".join(mapping.bootstrap_servers),
            mapping.function_arn,
        )

    def _finished(self, uuid: str, running: _Running) -> None:
        del self._running[uuid]
        error = None if running.task.cancelled() else running.task.exception()
        if error is None:
            self._restarts.pop(uuid, None)
            if not running.stopping:
                log.warning("mapping %s: poller returned unasked; restarting it", uuid)
            return
        failures = self._restarts.get(uuid, (0, 0.0))[0] + 1
        pause = min(_RESTART_PAUSE_S * 2 ** (failures - 1), _RESTART_PAUSE_MAX_S)
        self._restarts[uuid] = (failures, time.monotonic() + pause)
        log.error(
            "mapping %s: poller failed; restarting in %.0f s",
            uuid,
            pause,
            exc_info=(type(error), error, error.__traceback__),
        )


def _why(mapping: EventSourceMapping | None) -> str:
    return "disabled or deleted" if mapping is None else "updated"
