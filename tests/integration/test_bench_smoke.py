"""`make bench` in its smoke mode: every workload and table, Lamina and the floor, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLES = (
    "### Cold start",
    "### Warm no-op latency",
    "### Platform overhead",
    "### Server CPU per invocation",
    "### 1 MB payload echo",
    "### CPU-bound handler",
    "### Throughput",
    "### Burst",
    "### New environments per second",
    "### Idle warm environments",
    "### Function URL throughput",
    "### Asynchronous invocation",
    "### Soak",
)


@pytest.mark.slow
def test_quick_bench_without_peers_reports_every_figure(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BENCH_QUICK": "1",
        "BENCH_PEERS": "none",
        "BENCH_RUNTIMES": "python",
        "BENCH_PUBLISH": "0",
        "BENCH_RESULTS_DIR": str(tmp_path),
    }
    finished = subprocess.run(
        [sys.executable, "-m", "bench.run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]

    (json_path,) = tmp_path.glob("*.json")
    results = json.loads(json_path.read_text())
    for round_ in results["rounds"]:
        for target, runtimes in round_.items():
            for runtime, figures in runtimes.items():
                failures = {key: value for key, value in figures.items() if "failed" in key}
                assert not failures, (target, runtime, failures)
    # Calls that each hold their environment want one each, as on Lambda.
    spawn = results["config"]["spawn"]
    for round_ in results["rounds"]:
        assert round_["lamina"]["python"]["spawn.environments"] == spawn
        assert round_["lamina"]["python"]["spawn.per_s"] > 0
    assert results["soak"]["lamina"]["python"]["invocations"] > 0
    assert results["async"]["lamina"]["python"]["drain_per_s"] > 0

    directory = json_path.with_suffix("")
    summary = (directory / "summary.md").read_text()
    for heading in TABLES:
        assert heading in summary
    assert "| floor |" in summary
    assert "not measured" not in summary
    assert len(list(directory.glob("*.png"))) == 11
