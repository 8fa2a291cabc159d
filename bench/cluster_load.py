"""Load for the cluster benchmark, in a child process of its own so that the client's CPU is
accounted apart from the nodes': keep-alive HTTP/1.1 connections, each bound to one target
(a node's port and a function's invoke path), each sending `POST {}` until a deadline.

Usage: python -m bench.cluster_load SPEC, SPEC being JSON:
{"targets": [[port, path], ...] (one per connection), "seconds": 10, "tail": false}.
With "tail", each call asks for its log tail (X-Amz-Log-Type: Tail), and counts as a cold
start when the REPORT line in it has an Init Duration: Lamina's own word for a new
environment. Prints JSON: {"seconds", "ok", "errors": {status line: count},
"calls": [[seconds since start, cold 0/1, latency ms], ...]} (successful calls only).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections import Counter
from typing import Any

# After a refusal a connection pauses this long, so that a throttled target does not turn
# the load into a tight loop of refusals that would take the CPU from the nodes.
REFUSAL_PAUSE_S = 0.05


def request_bytes(path: str, tail: bool) -> bytes:
    headers = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + ("X-Amz-Log-Type: Tail\r\n" if tail else "")
        + "Content-Length: 2\r\n\r\n"
    )
    return headers.encode() + b"{}"


def was_cold(head: bytes) -> bool:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"x-amz-log-result:"):
            return b"Init Duration" in base64.b64decode(line.split(b":", 1)[1].strip())
    return False


async def connection(
    port: int,
    request: bytes,
    began: float,
    deadline: float,
    calls: list[tuple[float, int, float]],
    errors: Counter[str],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            finished = time.perf_counter()
            if head.startswith(b"HTTP/1.1 200"):
                calls.append((finished - began, int(was_cold(head)), (finished - started) * 1000))
            else:
                errors[head.split(b"\r\n", 1)[0].decode()] += 1
                await asyncio.sleep(REFUSAL_PAUSE_S)
    finally:
        writer.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    calls: list[tuple[float, int, float]] = []
    errors: Counter[str] = Counter()
    began = time.perf_counter()
    deadline = began + float(spec["seconds"])
    await asyncio.gather(
        *(
            connection(
                int(port),
                request_bytes(path, bool(spec.get("tail"))),
                began,
                deadline,
                calls,
                errors,
            )
            for port, path in spec["targets"]
        )
    )
    return {
        "seconds": time.perf_counter() - began,
        "ok": len(calls),
        "errors": dict(errors),
        "calls": calls,
    }


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
