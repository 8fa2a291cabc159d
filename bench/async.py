"""Asynchronous invoke benchmark: accepted events per second and drain rate.

For a Python no-op at concurrency 8 and 100, prints how many `InvocationType=Event`
requests per second get their 202 over that many connections (each event durable in the
queue first), how fast that many dispatcher workers drain the full queue (the server is
stopped after accepting and restarted on the same data), and the synchronous throughput at
the same concurrency for comparison.

Run with `.venv/bin/python -m bench.async [CONCURRENCY ...]`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.server import LaminaServer

from bench.harness import ROLE, loadgen
from bench.invoke import PYTHON_NOOP, package

EVENTS = 20000
CONCURRENCIES = (8, 100)
ROOT = Path(__file__).resolve().parent.parent


async def _send_events(port: int, path: str, concurrency: int, total: int) -> None:
    """Child-process load generator: keep-alive connections sending Event invokes."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "X-Amz-Invocation-Type: Event\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    errors: list[str] = []
    accepted = 0

    async def worker(count: int) -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 202"):
                    accepted += 1
                else:
                    errors.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode())
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "accepted": accepted, "errors": errors[:5]}))


def _run(args: list[str], timeout: float = 600) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
        cwd=ROOT,
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def send_events(port: int, path: str, concurrency: int, total: int) -> dict[str, Any]:
    return _run(["bench.async", "load", str(port), path, str(concurrency), str(total)])


def sync_rate(port: int, path: str, concurrency: int, total: int) -> float:
    result = loadgen(port, path, concurrency, total)
    return float(result["requests"]) / float(result["seconds"])


def counts(data_dir: Path, name: str) -> dict[str, int]:
    from lamina.store.sqlite import open_stores  # read-only use, from this process

    return open_stores(data_dir).queue.counts(name).get(name, {})


def drain_rate(
    data_dir: Path, name: str, start: Callable[[], LaminaServer], timeout: float = 300.0
) -> tuple[float, int, LaminaServer]:
    """Events per second while the queue drains from 90% to 10% of what it held (steady
    state: no cold starts, no tail), how many were left if it had not drained, and the
    server `start` started to drain it. The queue is watched from before that server
    starts: a server whose environments start in milliseconds drains a short queue before
    its start has returned."""
    total = sum(counts(data_dir, name).values())
    marks: dict[float, float] = {}
    left = [total]

    stopping = threading.Event()

    def watch() -> None:
        # The queue is read every 2 ms; a crossing is timed conservatively: 90% at the last
        # reading still above it, 10% at the first below. A queue drained between two
        # readings (a short one, a fast server) still gets a rate, not a zero.
        deadline = time.monotonic() + timeout
        previous = time.perf_counter()
        while left[0] and not stopping.is_set() and time.monotonic() < deadline:
            left[0] = sum(counts(data_dir, name).values())
            now = time.perf_counter()
            if left[0] <= total * 0.9 and 0.9 not in marks:
                marks[0.9] = previous
            if left[0] <= total * 0.1 and 0.1 not in marks:
                marks[0.1] = now
            previous = now
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, name="drain-watcher")
    watcher.start()
    try:
        server = start()
    except BaseException:
        stopping.set()
        watcher.join()
        raise
    watcher.join(timeout + 1)
    if len(marks) < 2 or marks[0.1] <= marks[0.9]:
        return 0.0, left[0], server
    return total * 0.8 / (marks[0.1] - marks[0.9]), left[0], server


def bench_concurrency(concurrency: int) -> None:
    name = "noop-python"
    path = f"/2015-03-31/functions/{name}/invocations"
    with tempfile.TemporaryDirectory(prefix="lamina-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        # 1. Accepting: one dispatcher worker, so the figure is the front door's.
        server = LaminaServer(data_dir, env={"LAMINA_ASYNC_WORKERS": "1"}).start()
        try:
            client = server.client()
            client.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=ROLE,
                Handler="app.handler",
                Code={"ZipFile": package({"app.py": PYTHON_NOOP})},
            )
            client.close()
            sync_rate(server.port, path, concurrency, 2 * concurrency)  # warm environments
            sync = sync_rate(server.port, path, concurrency, 4000)
            send_events(server.port, path, concurrency, 1000)
            load = send_events(server.port, path, concurrency, EVENTS)
        finally:
            # A clean stop hands every event still queued or running back to the queue.
            server.stop()
        # 2. Draining: restart with `concurrency` workers on the full queue.
        queued = sum(counts(data_dir, name).values())
        draining = LaminaServer(data_dir, env={"LAMINA_ASYNC_WORKERS": str(concurrency)})
        drain, left, server = drain_rate(data_dir, name, draining.start)
        server.stop()
    print(
        f"concurrency {concurrency:>3}: accepted {load['accepted'] / load['seconds']:6.0f} "
        f"events/s   drain {drain:6.0f} events/s (of {queued})   "
        f"sync {sync:6.0f} invocations/s   drain/sync {drain / sync:4.0%}"
        + (f"   NOT DRAINED: {left} left" if left else "")
        + (f"   errors: {load['errors']}" if load["errors"] else ""),
        flush=True,
    )


def main(concurrencies: tuple[int, ...] = CONCURRENCIES) -> None:
    isolation = os.environ.get("LAMINA_ISOLATION", "auto")
    print(
        f"Lamina async benchmarks, {os.cpu_count()} cores, isolation={isolation}, "
        f"{EVENTS} events per run",
        flush=True,
    )
    for concurrency in concurrencies:
        bench_concurrency(concurrency)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        port, path, concurrency, total = sys.argv[2:6]
        asyncio.run(_send_events(int(port), path, int(concurrency), int(total)))
    else:
        main(tuple(int(arg) for arg in sys.argv[1:]) or CONCURRENCIES)
