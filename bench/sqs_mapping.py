"""SQS event source mapping benchmark: throughput against a bare boto3 loop, and latency.

Starts moto's standalone server (the SQS peer) and a fresh Lamina server reaching it, then:

1. Throughput with BatchSize 10 and 100 (a 1 s window): a queue is filled with MESSAGES
   messages and drained by a mapping to a Python no-op, from the first message taken to the
   last deletion (by the mapping's own counters: asking moto would cost it a queue scan);
   the same number drained in the same run by a bare boto3 loop (ReceiveMessage of ten with
   every attribute, as a mapping asks, then DeleteMessageBatch) on one thread. ROUNDS of
   each, alternated; medians, and Lamina's as a fraction of the loop's. (moto scans the
   whole queue on every call, so its rate falls with queue depth; both sides drain queues
   of the same depth.)
2. Latency from SendMessage to the handler's first line on an idle queue (one message at a
   time), p50 and p95; the handler reports its start to a sink on loopback.

Run with `.venv/bin/python -m bench.sqs_mapping [MESSAGES]`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import netns
from tests.support.peers import MotoServer
from tests.support.reachable import elsewhere, http_server_in
from tests.support.server import LaminaServer

from bench.harness import ROLE, percentile
from bench.invoke import package
from lamina.metrics import DELETED_EVENT_COUNT, POLLED_EVENT_COUNT

MESSAGES = 500
ROUNDS = 3
LATENCY_SAMPLES = 60
NOOP = "def handler(event, context):\n    return None\n"
REPORTER = """
import json, os, time, urllib.request

def handler(event, context):
    started = time.time()
    sent = float(event["Records"][0]["body"])
    request = urllib.request.Request(
        os.environ["SINK"], data=json.dumps([sent, started]).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10).read()
"""


class Sink:
    """Collects what the reporting handler posts: (sent, started) pairs."""

    def __init__(self, host: netns.Host) -> None:
        """Served on `host`, another machine: functions do not reach this one's addresses."""
        self.samples: list[tuple[float, float]] = []
        self.arrived = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sent, started = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                sink.samples.append((sent, started))
                sink.arrived.set()
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


def new_queue(sqs: Any) -> tuple[str, str]:
    url = sqs.create_queue(
        QueueName=f"bench-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "30"}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def fill(sqs: Any, url: str, count: int) -> None:
    def send(start: int) -> None:
        entries = [
            {"Id": str(index), "MessageBody": json.dumps({"n": start + index})}
            for index in range(min(10, count - start))
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(0, count, 10)))


def counts(sqs: Any, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def bare_loop(sqs: Any, count: int) -> float:
    """Messages per second a one-thread boto3 loop receives and deletes."""
    url, _ = new_queue(sqs)
    fill(sqs, url, count)
    done = 0
    started = time.perf_counter()
    while done < count:
        # Asking for what a mapping asks for (every attribute), so the peer does the same work.
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if messages:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(messages)
                ],
            )
        done += len(messages)
    return count / (time.perf_counter() - started)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark's condition never held")
        time.sleep(interval)


def counter(server: LaminaServer, uuid_: str, metric: str) -> float:
    """One of a mapping's counters, from `/_lamina/mappings`."""
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/mappings", timeout=5) as response:
        rows = json.loads(response.read())["Mappings"]
    for row in rows:
        if row["UUID"] == uuid_:
            value: float = row["Metrics"].get(metric, {}).get("Sum", 0)
            return value
    return 0


def mapping_rate(
    server: LaminaServer, lam: Any, sqs: Any, function: str, count: int, batch_size: int
) -> float:
    """Messages per second a mapping drains, from the first message taken to the last deleted."""
    url, arn = new_queue(sqs)
    fill(sqs, url, count)
    params: dict[str, Any] = {"BatchSize": batch_size}
    if batch_size > 10:
        params["MaximumBatchingWindowInSeconds"] = 1
    uuid_ = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, **params)[
        "UUID"
    ]
    try:
        # Lamina's own counters say when the first message was taken and the last deleted
        # (asking the queue would cost moto a scan of it each time).
        wait_for(lambda: counter(server, uuid_, POLLED_EVENT_COUNT) > 0, 30, interval=0.002)
        started = time.perf_counter()
        wait_for(lambda: counter(server, uuid_, DELETED_EVENT_COUNT) >= count, 600, 0.01)
        # moto may hand a message to two concurrent receives (its receive takes no lock), and
        # count its second deletion too: the queue itself says when it is really drained.
        wait_for(lambda: counts(sqs, url) == (0, 0), 600, 0.1)
        return count / (time.perf_counter() - started)
    finally:
        lam.delete_event_source_mapping(UUID=uuid_)


def latencies(lam: Any, sqs: Any, sink: Sink) -> list[float]:
    """Milliseconds from SendMessage to the handler's start, one message at a time."""
    url, arn = new_queue(sqs)
    lam.create_function(
        FunctionName="reporter",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        MemorySize=1769,
        Code={"ZipFile": package({"app.py": REPORTER})},
        Environment={"Variables": {"SINK": sink.url}},
    )
    uuid_ = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="reporter")["UUID"]
    try:
        wait_for(lambda: lam.get_event_source_mapping(UUID=uuid_)["State"] == "Enabled", 10)
        time.sleep(1)
        samples = []
        for index in range(LATENCY_SAMPLES + 3):
            sink.arrived.clear()
            sent = time.time()
            sqs.send_message(QueueUrl=url, MessageBody=repr(sent))
            if not sink.arrived.wait(30):
                raise TimeoutError("the reporter was not invoked")
            if index >= 3:  # the first ones start the environment
                samples.append((sink.samples[-1][1] - sent) * 1000)
            time.sleep(0.05)  # idle again: the poller is back in its long poll
        return samples
    finally:
        lam.delete_event_source_mapping(UUID=uuid_)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else MESSAGES
    with (
        tempfile.TemporaryDirectory(prefix="lamina-bench-sqs-") as tmp,
        elsewhere() as remote,
    ):
        moto = MotoServer(Path(tmp)).start()
        server = LaminaServer(Path(tmp) / "data", env=moto.env).start()
        sink = Sink(remote)
        sqs = moto.client("sqs")
        lam = server.client("lambda")
        try:
            lam.create_function(
                FunctionName="noop",
                Runtime="python3.12",
                Role=ROLE,
                Handler="app.handler",
                MemorySize=1769,
                Code={"ZipFile": package({"app.py": NOOP})},
            )
            print(f"SQS -> function throughput ({count} messages, moto standalone server)")
            for batch_size in (10, 100):
                bare, lamina = [], []
                for _ in range(ROUNDS):  # alternated, so that both meet the same machine load
                    bare.append(bare_loop(sqs, count))
                    lamina.append(mapping_rate(server, lam, sqs, "noop", count, batch_size))
                ratio = statistics.median(lamina) / statistics.median(bare)
                print(
                    f"  BatchSize {batch_size:>3}: Lamina {statistics.median(lamina):6.0f} msg/s"
                    f"   bare boto3 loop {statistics.median(bare):6.0f} msg/s   ratio {ratio:4.0%}"
                    f"   (rounds: Lamina {', '.join(f'{rate:.0f}' for rate in lamina)};"
                    f" bare {', '.join(f'{rate:.0f}' for rate in bare)})",
                    flush=True,
                )
            samples = latencies(lam, sqs, sink)
            print(
                f"SendMessage -> handler start, idle queue: p50 {percentile(samples, 0.5):6.1f} ms"
                f"   p95 {percentile(samples, 0.95):6.1f} ms   mean "
                f"{statistics.fmean(samples):6.1f} ms   n={len(samples)}"
            )
        finally:
            lam.close()
            sqs.close()
            sink.close()
            server.stop()
            moto.stop()


if __name__ == "__main__":
    main()
