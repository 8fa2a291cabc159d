"""Servers in the test process that functions can reach.

Functions run in network namespaces of their own: the host's loopback and addresses are out
of their reach, as on AWS. A test server that functions call (a ledger of calls, a gate a
streaming function waits on) therefore listens in a test-made namespace standing in for
another machine, on a socket this process makes there: it keeps serving from the test's own
threads and state.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lamina.sandbox.network.slots import InNamespace
from tests.support import netns


def listen_in(host: netns.Host, port: int = 0) -> socket.socket:
    """A TCP socket listening on `host`'s address (port 0: any free one)."""
    inside = InNamespace()
    target = os.open(f"/run/netns/{host.namespace}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with inside.entered(target):
            listener = socket.create_server((host.address, port))
    finally:
        os.close(target)
        inside.close()
    return listener


def http_server_in(host: netns.Host, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A ThreadingHTTPServer on `host`'s address; serve it from a thread as usual."""
    server = ThreadingHTTPServer((host.address, 0), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listen_in(host)
    server.server_address = server.socket.getsockname()[:2]
    return server


@contextlib.contextmanager
def elsewhere() -> Iterator[netns.Host]:
    """A host of its own on a test-made network, removed afterwards."""
    network = netns.Network().open()
    try:
        yield network.add_host()
    finally:
        network.close()


class Recorder:
    """An HTTP server on another machine keeping every JSON document functions POST to it."""

    def __init__(self, host: netns.Host) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with recorder.lock:
                    recorder.posts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http_server_in(host, Handler)
        self.url = f"http://{host.address}:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
