"""uvicorn's httptools protocol, with a response's writes leaving the process together.

uvicorn writes a response's status line and headers when the app starts the response and
the body when it sends it: two `send` system calls, and for a keep-alive client two
wake-ups, per response. On the invoke hot path that second write costs as much as the rest
of the platform's HTTP handling, so writes made during one step of the event loop are held
and written once, at the end of that step. Nothing waits longer: the flush is the next
callback the loop runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
    """Delegates to a transport, joining the writes of one loop step into one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def _flush(self) -> None:
        if self._held:
            data = b"".join(self._held) if len(self._held) > 1 else self._held[0]
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        super().connection_made(_CoalescingTransport(transport, loop))  # type: ignore[arg-type]
