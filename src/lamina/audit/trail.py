"""Records API calls; a writer thread appends them to the audit store in batches.

The request path only builds a small dict and puts it on a queue. The thread takes whatever
has queued up while it was fsyncing the previous batch, so batches grow with load and an
idle server writes each entry at once. `close()` writes everything still queued.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from starlette.requests import Request

from lamina.audit.record import ANONYMOUS, DATA_OPERATIONS, ApiCall, entry
from lamina.settings import Settings
from lamina.store.errors import StorageError
from lamina.store.protocols.audit import AuditStore

log = logging.getLogger("lamina.audit")

_MAX_BATCH = 1000
_STOP = object()
Item = dict[str, Any] | threading.Event | object


class AuditTrail:
    """The hook the API services call once per request."""

    def __init__(self, store: AuditStore, caller: str | None, include_invokes: bool) -> None:
        self._store = store
        # The configured key names a verified request's caller unless the request names its
        # own signer (`ApiCall.caller`: enforced mode's users and sessions).
        self._caller = caller or ANONYMOUS
        self._skipped = frozenset[str]() if include_invokes else DATA_OPERATIONS
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store: AuditStore) -> AuditTrail:
        caller = settings.access_key_id if settings.authentication_enabled else None
        return cls(store, caller, settings.audit_invokes)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lamina-audit", daemon=True)
        self._thread.start()

    def record(self, call: ApiCall, request: Request, request_id: str, status: int) -> None:
        """Called on the event loop: must stay cheap, and free for skipped invokes."""
        if call.operation in self._skipped:
            return
        client = request.client
        self.record_call(
            call,
            client.host if client else None,
            request.headers.get("user-agent"),
            request_id,
            status,
        )

    def records(self, operation: str) -> bool:
        """Whether calls of `operation` are recorded (invokes only when asked for)."""
        return operation not in self._skipped

    def record_call(
        self,
        call: ApiCall,
        source_ip: str | None,
        user_agent: str | None,
        request_id: str,
        status: int,
    ) -> None:
        """`record` for a caller that holds the request's parts rather than the request."""
        if call.operation in self._skipped:
            return
        self._queue.put(
            entry(
                call,
                (call.caller or self._caller) if call.verified else ANONYMOUS,
                source_ip,
                user_agent,
                request_id,
                status,
            )
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is stored (blocking: call from a thread)."""
        if self._thread is None or not self._thread.is_alive():
            return False
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        # Whatever was recorded after the writer stopped, or while it never ran.
        self._write(self._drain())
        self._store.close()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            batch += self._drain(_MAX_BATCH - 1)
            self._write(batch)
            if any(item is _STOP for item in batch):
                return

    def _drain(self, limit: int | None = None) -> list[Item]:
        items: list[Item] = []
        while limit is None or len(items) < limit:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _write(self, batch: list[Item]) -> None:
        entries = [item for item in batch if isinstance(item, dict)]
        if entries:
            try:
                self._store.append(entries)
            except StorageError:
                log.exception("could not write %d audit entries", len(entries))
        for item in batch:
            if isinstance(item, threading.Event):
                item.set()
