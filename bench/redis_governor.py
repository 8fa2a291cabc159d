"""Concurrency governor benchmark: what admission costs, local against Redis.

One acquire + release per invocation is what `InvokeService` pays on the event loop's
thread. Figures: (a) the local `ConcurrencyGovernor`, (b) `ClusterGovernor` on Redis from
one thread (acquire and release timed apart, µs per call: p50, p99, mean), (c) several
threads on two nodes (each its own client) sharing one Redis, pairs per second in all, and
(d) a refusal when the Redis does not answer (a port where nothing listens).

Run with `.venv/bin/python -m bench.redis_governor` (LAMINA_BENCH_REDIS sets the server,
default redis://127.0.0.1:6379/0; BENCH_GOVERNOR_CALLS the calls per run, default 20,000;
BENCH_REPEATS the runs, default 3, whose median (min-max) it prints). Keys go under a fresh
prefix, deleted after. Prints figures; asserts nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from lamina.errors import TooManyRequests
from lamina.invoke.cluster_governor import ClusterGovernor
from lamina.invoke.governor import ConcurrencyGovernor, Governor
from lamina.store.redis import open_redis_leases

URL = os.environ.get("LAMINA_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CALLS = int(os.environ.get("BENCH_GOVERNOR_CALLS", "20000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
THREADS = 4  # per node
ACCOUNT = 1000


def summary(values: list[float], unit: str, digits: int = 1) -> str:
    return (
        f"{statistics.median(values):,.{digits}f} {unit} "
        f"({min(values):,.{digits}f}-{max(values):,.{digits}f})"
    )


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def pairs(governor: Governor, calls: int, function: str = "f") -> tuple[list[float], list[float]]:
    """Acquire + release `calls` times (a reserved function and an unreserved one in turn);
    the acquire and release times, µs."""
    clock = time.perf_counter
    acquires: list[float] = []
    releases: list[float] = []
    for n in range(calls):
        reserved = 10 if n % 2 else None
        t0 = clock()
        lease = governor.acquire(function, reserved, 10, timeout_s=3)
        t1 = clock()
        governor.release(lease)
        t2 = clock()
        acquires.append((t1 - t0) * 1e6)
        releases.append((t2 - t1) * 1e6)
    return acquires, releases


def local_run() -> float:
    governor = ConcurrencyGovernor(ACCOUNT)
    started = time.perf_counter()
    for n in range(CALLS * 10):
        governor.release(governor.acquire("f", 10 if n % 2 else None, 10))
    return (time.perf_counter() - started) / (CALLS * 10) * 1e6


def redis_run(prefix: str) -> dict[str, float]:
    leases = open_redis_leases(URL, prefix=prefix)
    governor = ClusterGovernor(leases, ACCOUNT)
    pairs(governor, 200)  # connect, load the scripts
    acquires, releases = pairs(governor, CALLS)
    leases.close()
    return {
        "acquire p50": percentile(acquires, 0.5),
        "acquire p99": percentile(acquires, 0.99),
        "release p50": percentile(releases, 0.5),
        "release p99": percentile(releases, 0.99),
        "pair mean": statistics.fmean(a + r for a, r in zip(acquires, releases, strict=True)),
    }


def cluster_run(prefix: str) -> float:
    """Pairs per second from THREADS threads on each of two nodes."""
    nodes = [open_redis_leases(URL, prefix=prefix) for _ in range(2)]
    governors = [ClusterGovernor(leases, ACCOUNT) for leases in nodes]
    per_thread = CALLS // (2 * THREADS)
    barrier = threading.Barrier(2 * THREADS + 1)

    def work(governor: Governor, function: str) -> None:
        pairs(governor, 50, function)
        barrier.wait()
        pairs(governor, per_thread, function)

    threads = [
        threading.Thread(target=work, args=(governors[i % 2], f"f{i}")) for i in range(2 * THREADS)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for leases in nodes:
        leases.close()
    return per_thread * 2 * THREADS / elapsed


def refusal_run() -> float:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logging.getLogger("lamina").setLevel(logging.CRITICAL)  # the refusal's one error line
    leases = open_redis_leases(f"redis://127.0.0.1:{port}/0")
    governor = ClusterGovernor(leases, ACCOUNT)
    refused = 0
    started = time.perf_counter()
    for _ in range(CALLS):
        try:
            governor.acquire("f", None, 0)
        except TooManyRequests:
            refused += 1
    elapsed = time.perf_counter() - started
    leases.close()
    return elapsed / max(refused, 1) * 1e6


def repeat(run: Callable[[], float]) -> list[float]:
    return [run() for _ in range(REPEATS)]


def main() -> None:
    prefix = f"lamina-bench:{uuid.uuid4().hex[:8]}:"
    print(f"governor: {CALLS:,} calls per run, {REPEATS} runs, median (min-max); Redis {URL}")
    try:
        local = repeat(local_run)
        print(f"  local ConcurrencyGovernor, acquire+release: {summary(local, 'µs', 2)}")
        runs = [redis_run(prefix) for _ in range(REPEATS)]
        for key in runs[0]:
            print(f"  Redis, one thread, {key}: {summary([r[key] for r in runs], 'µs')}")
        cluster = repeat(lambda: cluster_run(prefix))
        print(
            f"  Redis, 2 nodes x {THREADS} threads, acquire+release pairs: "
            f"{summary(cluster, 'pairs/s', 0)}"
        )
        refusal = repeat(refusal_run)
        print(f"  Redis unreachable, one refusal: {summary(refusal, 'µs', 2)}")
    finally:
        with redis.Redis.from_url(URL) as client:
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)


if __name__ == "__main__":
    main()
