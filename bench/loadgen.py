"""A small asyncio HTTP/1.1 load generator: N keep-alive connections, fixed request count.

Runs in its own process so the client's CPU is accounted apart from the server's.
Usage: python -m bench.loadgen [--bodies] PORT PATH CONCURRENCY TOTAL BODY_FILE [DURATION_SECONDS]
Prints JSON: {"seconds": ..., "requests": ..., "latencies_ms": [...sampled...]}.
With DURATION_SECONDS, each connection sends requests until that much time has passed
(TOTAL is then ignored) and the output adds "timeline": [[seconds_since_start, ms], ...].
With --bodies it adds every answer's body ("bodies") and the wall-clock time at which the
first requests went out ("started_at", seconds since the epoch).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def worker(
    port: int,
    request: bytes,
    count: int,
    latencies: list[float],
    errors: list[str],
    timeline: list[tuple[float, float]] | None = None,
    deadline: float | None = None,
    bodies: list[str] | None = None,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        # A fixed count, or (a soak) as many as fit before the deadline.
        while (sent < count) if deadline is None else (time.perf_counter() < deadline):
            sent += 1
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
            finished = time.perf_counter()
            latencies.append((finished - started) * 1000)
            if timeline is not None:
                timeline.append((finished, (finished - started) * 1000))
            if bodies is not None:
                bodies.append(body.decode(errors="replace"))
    finally:
        writer.close()


async def run(
    port: int,
    path: str,
    concurrency: int,
    total: int,
    body: bytes,
    duration: float | None,
    keep_bodies: bool = False,
) -> None:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors: list[str] = []
    timeline: list[tuple[float, float]] | None = [] if duration is not None else None
    bodies: list[str] | None = [] if keep_bodies else None
    per_worker = max(1, total // concurrency)
    started_at = time.time()
    started = time.perf_counter()
    deadline = started + duration if duration is not None else None
    await asyncio.gather(
        *(
            worker(port, request, per_worker, latencies, errors, timeline, deadline, bodies)
            for _ in range(concurrency)
        )
    )
    seconds = time.perf_counter() - started
    result: dict[str, object] = {
        "seconds": seconds,
        "requests": len(latencies),
        "errors": errors[:5],
        "error_count": len(errors),
        "latencies_ms": latencies,
    }
    if timeline is not None:
        result["timeline"] = [(round(at - started, 4), ms) for at, ms in timeline]
    if bodies is not None:
        result |= {"bodies": bodies, "started_at": started_at}
    print(json.dumps(result))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    keep_bodies = "--bodies" in arguments
    if keep_bodies:
        arguments.remove("--bodies")
    port, path, concurrency, total, body_file = arguments[:5]
    duration = float(arguments[5]) if len(arguments) > 5 else None
    with open(body_file, "rb") as handle:
        payload = handle.read()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(int(port), path, int(concurrency), int(total), payload, duration, keep_bodies))
