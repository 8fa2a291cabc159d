"""A TCP forwarder: makes a service that listens on loopback reachable from other hosts.

PostgreSQL and Redis listen on 127.0.0.1 in the root namespace, which the test's network
namespaces cannot reach; a forwarder listens on the bridge's address and copies bytes both
ways. It also simulates the service going away: `pause()` drops every connection and
refuses new ones until `resume()`.

All forwarders share one asyncio loop in a daemon thread; the methods are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_CHUNK = 64 * 1024


class _Loop:
    """One event loop in a thread, started on first use."""

    _instance: _Loop | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="forwarders", daemon=True).start()

    @classmethod
    def get(cls) -> _Loop:
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


class Forwarder:
    """Listens on (host, an ephemeral port) and connects each client to (target_host,
    target_port)."""

    def __init__(self, host: str, target_host: str, target_port: int) -> None:
        self.host = host
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = _Loop.get()
        self._server: asyncio.Server | None = None
        self._paused = False
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> Forwarder:
        self._server = self._loop.run(self._listen())
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, self.host, 0)

    def pause(self) -> None:
        """The service is gone: cut every connection, refuse new ones."""
        self._loop.run(self._set_paused(True))

    def resume(self) -> None:
        self._loop.run(self._set_paused(False))

    async def _set_paused(self, paused: bool) -> None:
        self._paused = paused
        if paused:
            for writer in list(self._writers):
                writer.transport.abort()

    def close(self) -> None:
        if self._server is not None:
            self._loop.run(self._shut())
            self._server = None

    async def _shut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._set_paused(True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._paused:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()  # the service is down: so is the way to it
            return
        pair = {writer, upstream_writer}
        self._writers |= pair
        try:
            await asyncio.gather(_copy(reader, upstream_writer), _copy(upstream_reader, writer))
        finally:
            self._writers -= pair
            for end in pair:
                end.transport.abort()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes from one side to the other until either side goes; then both go (a half-open
    connection would leave a client waiting on a server that is gone)."""
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
