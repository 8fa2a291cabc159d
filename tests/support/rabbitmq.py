"""The machine's RabbitMQ (127.0.0.1:5672, guest/guest) from synchronous tests, and a small
HTTP collector that functions report the events they receive to.

Each broker call opens its own AMQP connection in a fresh event loop: slower than one shared
connection, but nothing outlives the call.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar

import aiormq
from aiormq import spec

from tests.support import netns
from tests.support.reachable import http_server_in

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
T = TypeVar("T")


@dataclass(frozen=True)
class QueueState:
    ready: int  # messages waiting (not delivered, or requeued)
    consumers: int


class Rabbit:
    """Queues and messages on the broker, one short connection per call."""

    def __init__(self, url: str = AMQP_URL) -> None:
        self.url = url

    def _run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        async def session() -> T:
            connection = await aiormq.connect(self.url)
            try:
                channel = await connection.channel()
                return await work(channel)
            finally:
                await connection.close()

        return asyncio.run(session())

    def declare(self, queue: str) -> None:
        async def work(channel: Any) -> None:
            await channel.queue_declare(queue, durable=False)

        self._run(work)

    def delete(self, queue: str) -> None:
        async def work(channel: Any) -> None:
            await channel.queue_delete(queue)

        self._run(work)

    def state(self, queue: str) -> QueueState:
        async def work(channel: Any) -> QueueState:
            declared = await channel.queue_declare(queue, passive=True)
            return QueueState(int(declared.message_count or 0), int(declared.consumer_count or 0))

        return self._run(work)

    def publish(
        self, queue: str, bodies: Iterable[bytes], properties: spec.Basic.Properties | None = None
    ) -> None:
        """Publish each body to `queue` (the default exchange), confirmed by the broker."""

        async def work(channel: Any) -> None:
            await channel.confirm_delivery()
            for body in bodies:
                await channel.basic_publish(
                    body, routing_key=queue, properties=properties or spec.Basic.Properties()
                )

        self._run(work)


HANDLER = """\
import json
import os
import urllib.request


def handler(event, context):
    request = urllib.request.Request(
        os.environ["COLLECTOR"], data=json.dumps(event).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = response.read().decode()
    if answer == "fail":
        raise RuntimeError("the collector asked this invocation to fail")
    return {}
"""


class Collector:
    """Receives the events functions POST (HANDLER); answers "ok", or what `answers` holds
    first ("fail" makes the function raise). With `hold` cleared, requests wait for it."""

    def __init__(self, host: netns.Host) -> None:
        """Served on `host`, another machine: functions do not reach this one's addresses."""
        self.events: list[dict[str, Any]] = []
        self.answers: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                event = json.loads(self.rfile.read(length))
                with collector._lock:
                    collector.events.append(event)
                    answer = collector.answers.pop(0) if collector.answers else "ok"
                collector.hold.wait(120)
                body = answer.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http_server_in(host, Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host.address}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
            self.answers.clear()

    def close(self) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()
