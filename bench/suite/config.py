"""How much the suite measures: the full run (`make bench`) or a smoke run (BENCH_QUICK=1)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

PEER_NAMES = ("serverless-offline", "python-lambda-local")


@dataclass(frozen=True)
class SuiteConfig:
    """Sample counts per target, runtime and round; read once from BENCH_* variables."""

    quick: bool = False
    # Rotated rounds: every target runs once per round, each round in a shifted order, so
    # a neighbour's burst of load hits every target alike; figures are medians over rounds.
    rounds: int = 3
    cold_starts: int = 8  # per cold workload (no-op, 200 ms init)
    # Between two cold starts, as first calls after a deploy arrive (the burst workload
    # measures many at once): time for what a target prepares ahead to be ready again.
    cold_gap_s: float = 0.25
    # Enough for a p99.9, and for the server CPU per call: /proc counts CPU in 10 ms ticks,
    # each counter (utime, stime, per process) truncated, so a window must hold far more
    # than a tick of CPU. The floor spends ~0.2 ms per no-op call: 100 calls can read as
    # 0 ticks, and a ratio to 0 is no figure ("not measured"); 1,000 read as ~20 ticks.
    warm_calls: int = 1000
    echo_calls: int = 60
    cpu_calls: int = 12
    throttled_cpu_calls: int = 3  # at 128 MB each takes ~14 times as long
    concurrencies: tuple[int, ...] = (1, 8, 32, 128)
    # Throughput runs: this many requests per connection, and never fewer than the minimum.
    requests_per_connection: int = 10
    min_requests: int = 600
    burst: int = 100
    # New environments a second: this many simultaneous first calls, each keeping its
    # environment busy for `spawn_hold_s`, long enough that none is free for another call
    # before the last has started where a target makes 100 or more a second.
    spawn: int = 200
    spawn_hold_s: float = 2.0
    idle_environments: int = 16
    url_requests: int = 1000
    soak_seconds: float = 60.0
    soak_concurrency: int = 8
    async_events: int = 1500
    async_repeats: int = 3
    # The peers to compare with (BENCH_PEERS=all, none, or a comma-separated list). One named
    # here that cannot be installed stops the run; one left out is never installed.
    peers: frozenset[str] = field(default_factory=lambda: frozenset(PEER_NAMES))
    runtimes: tuple[str, ...] = ("python", "node")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SuiteConfig:
        config = cls.smoke() if environ.get("BENCH_QUICK", "") not in {"", "0"} else cls()
        peers = environ.get("BENCH_PEERS", "all").strip()
        if peers == "none":
            config = replace(config, peers=frozenset())
        elif peers != "all":
            chosen = frozenset(name.strip() for name in peers.split(","))
            unknown = chosen - set(PEER_NAMES)
            if unknown:
                raise ValueError(f"BENCH_PEERS: unknown peers {sorted(unknown)}; know {PEER_NAMES}")
            config = replace(config, peers=chosen)
        if "BENCH_ROUNDS" in environ:
            config = replace(config, rounds=int(environ["BENCH_ROUNDS"]))
        if "BENCH_RUNTIMES" in environ:
            config = replace(config, runtimes=tuple(environ["BENCH_RUNTIMES"].split(",")))
        return config

    @classmethod
    def smoke(cls) -> SuiteConfig:
        """Every workload and figure once, with small samples: checks the suite, not Lamina.

        The warm sample stays whole: it is the window the CPU per call is read over.
        """
        return cls(
            quick=True,
            rounds=1,
            cold_starts=2,
            cold_gap_s=0.05,
            echo_calls=3,
            cpu_calls=2,
            throttled_cpu_calls=1,
            concurrencies=(1, 8),
            requests_per_connection=5,
            min_requests=50,
            burst=10,
            spawn=10,
            spawn_hold_s=0.5,
            idle_environments=4,
            url_requests=100,
            soak_seconds=5.0,
            # Enough that the accepting server's one worker cannot drain them all while they
            # are accepted on a loaded machine (the drain phase would find an empty queue).
            async_events=1000,
            async_repeats=1,
        )

    def requests_at(self, concurrency: int) -> int:
        return max(self.min_requests, concurrency * self.requests_per_connection)
