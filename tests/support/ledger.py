"""A ledger of every run of a probe function, kept by the test, reached over the network.

The probe (`PROBE_SOURCE`, handler `probe.handler`) posts when it starts and when it ends:
its own run id, the request id (for an asynchronous event, the event's id: the same in
every attempt), its start and end (the machine's wall clock, which every namespace
shares). The ledger is an HTTP server on the address the test gives it; in a cluster of
network namespaces, the bridge's. Which node ran the probe is the address its post came
from: a function runs in its node's namespace, so its connections leave from the node's
address.

A probe cut off from the ledger keeps trying until near its timeout rather than failing:
what the ledger must see is that the run happened, whenever the network lets it say so.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROBE_SOURCE = """
import json, os, time, urllib.request, uuid

def post(document, context):
    body = json.dumps(document).encode()
    while True:
        try:
            request = urllib.request.Request(os.environ["LEDGER"], data=body, method="POST")
            urllib.request.urlopen(request, timeout=2).read()
            return
        except OSError:
            if context.get_remaining_time_in_millis() < 3000:
                raise
            time.sleep(0.2)

def handler(event, context):
    run = {"run": uuid.uuid4().hex, "request": context.aws_request_id,
           "function": context.function_name, "start": time.time()}
    post({**run, "kind": "start"}, context)
    time.sleep(float(event.get("sleep", 0)))
    post({**run, "kind": "end", "end": time.time()}, context)
    return {"request": context.aws_request_id, "n": event.get("n")}
"""


@dataclass
class Run:
    """One execution of the probe, as far as the ledger heard of it."""

    run: str
    request: str
    function: str
    node: str  # the address the probe's posts came from
    start: float
    end: float | None = None  # None: it never said it ended (killed, or still running)

    def running_at(self, moment: float) -> bool:
        return self.start <= moment and (self.end is None or self.end > moment)


@dataclass
class Ledger:
    """The HTTP server the probes post to; `runs()` is what it heard so far."""

    host: str
    _runs: dict[str, Run] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}/"

    def start(self) -> Ledger:
        ledger = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ledger.record(json.loads(body), self.client_address[0])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def record(self, document: dict[str, object], node: str) -> None:
        with self._lock:
            run = self._runs.get(str(document["run"]))
            if run is None:
                # An end may come first: the start's post can be retried later than it.
                run = self._runs[str(document["run"])] = Run(
                    run=str(document["run"]),
                    request=str(document["request"]),
                    function=str(document["function"]),
                    node=node,
                    start=float(str(document["start"])),
                )
            if document["kind"] == "end":
                run.end = float(str(document["end"]))

    def dump(self, path: Path) -> None:
        """Every run as a JSON line, for a look after a failure."""
        path.write_text("".join(json.dumps(vars(run)) + "\n" for run in self.runs()))

    def runs(self, function: str | None = None) -> list[Run]:
        with self._lock:
            return [
                Run(**vars(run))
                for run in self._runs.values()
                if function is None or run.function == function
            ]
