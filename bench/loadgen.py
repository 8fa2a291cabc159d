"""A small asyncio HTTP/1.1 load generator: N keep-alive connections, fixed request count.

Runs in its own process so the client's CPU is accounted apart from the server's.
Usage: python -m bench.loadgen PORT PATH CONCURRENCY TOTAL BODY_FILE
Prints JSON: {"seconds": ..., "requests": ..., "latencies_ms": [...sampled...]}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def worker(
    port: int, request: bytes, count: int, latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode())
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()


async def run(port: int, path: str, concurrency: int, total: int, body: bytes) -> None:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors: list[str] = []
    per_worker = max(1, total // concurrency)
    started = time.perf_counter()
    await asyncio.gather(
        *(worker(port, request, per_worker, latencies, errors) for _ in range(concurrency))
    )
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "requests": len(latencies),
                "errors": errors[:5],
                "error_count": len(errors),
                "latencies_ms": latencies,
            }
        )
    )


if __name__ == "__main__":
    port, path, concurrency, total, body_file = sys.argv[1:6]
    with open(body_file, "rb") as handle:
        payload = handle.read()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(int(port), path, int(concurrency), int(total), payload))
