"""`make bench`: Lamina side by side with the tools users would otherwise pick.

Runs every workload against every target (Lamina variants, serverless-offline,
python-lambda-local and a physical floor), each started fresh, in rotated rounds; then a
soak and the asynchronous path on Lamina. Writes bench/results/<stamp>.json and, beside it,
bench/results/<stamp>/ with summary.md and PNG plots; a full run also publishes them to
docs/benchmarks.md and docs/benchmarks/.

Environment: BENCH_QUICK=1 (a ~2-minute smoke run), BENCH_PEERS=all|none|name,name,
BENCH_ROUNDS=N, BENCH_RUNTIMES=python,node, BENCH_PUBLISH=0|1 (default: 1 unless quick),
BENCH_RESULTS_DIR (default: bench/results), BENCH_PEERS_DIR (default: bench/.peers). A peer
BENCH_PEERS includes that cannot be installed stops the run with its reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report
from bench.suite.asynchronous import run_async
from bench.suite.config import SuiteConfig
from bench.suite.peers import interpreter
from bench.suite.rounds import run_rounds
from bench.suite.soak import run_soak
from bench.suite.targets.base import Capability, Target
from bench.suite.targets.floor import FloorTarget
from bench.suite.targets.lambda_local import LambdaLocalTarget
from bench.suite.targets.lamina import VARIANTS
from bench.suite.targets.serverless_offline import ServerlessOfflineTarget

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS_DIR = ROOT / "bench" / "results"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def all_targets(config: SuiteConfig) -> list[Target]:
    peers: list[Target] = [ServerlessOfflineTarget(), LambdaLocalTarget()]
    return [*VARIANTS, *(peer for peer in peers if peer.name in config.peers), FloorTarget()]


def describe_target(target: Target, skipped: str | None) -> dict[str, Any]:
    return {
        "label": target.label,
        "runtimes": list(target.runtimes),
        "other_runtimes": target.other_runtimes,
        "version": target.version() if skipped is None else "",
        "skipped": skipped,
        "unsupported": {
            capability.name: reason
            for capability in Capability
            if (reason := target.unsupported(capability))
        },
    }


def machine() -> dict[str, Any]:
    def command(*args: str) -> str:
        try:
            return subprocess.run(
                args, check=False, capture_output=True, text=True, cwd=ROOT
            ).stdout.strip()
        except OSError:
            return ""

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    dirty = bool(command("git", "status", "--porcelain", "--", "src"))
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
        "lamina_commit": command("git", "rev-parse", "--short", "HEAD")
        + ("+dirty" if dirty else ""),
        "python_functions": command(interpreter("python3.12"), "--version"),
        "node": command(interpreter("nodejs20.x"), "--version"),
    }


def main() -> int:
    config = SuiteConfig.from_env()
    started = time.monotonic()
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    log(f"lamina bench {'(quick) ' if config.quick else ''}{stamp}: {config.rounds} rounds")
    targets, described = [], {}
    for target in all_targets(config):
        skipped = target.prepare()
        described[target.name] = describe_target(target, skipped)
        if skipped:
            log(f"{target.name}: skipped: {skipped}")
        else:
            targets.append(target)
    results: dict[str, Any] = {
        "stamp": stamp,
        "machine": machine(),
        "config": dataclasses.asdict(config) | {"peers": sorted(config.peers)},
        "targets": described,
    }
    phases: dict[str, float] = {}
    results["phase_seconds"] = phases
    results["rounds"] = run_rounds(targets, config, log)
    phases["rounds"] = time.monotonic() - started
    default = VARIANTS[0]
    results["soak"] = {default.name: run_soak(default, config, log)}
    phases["soak"] = time.monotonic() - started - sum(phases.values())
    results["async"] = {default.name: run_async(default, config, log)}
    phases["async"] = time.monotonic() - started - sum(phases.values())
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["seconds"] = time.monotonic() - started

    results_dir = Path(os.environ.get("BENCH_RESULTS_DIR") or DEFAULT_RESULTS_DIR)
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{stamp}.json"
    json_path.write_text(json.dumps(results, indent=1))
    summary = report.write(results, results_dir / stamp)
    log(f"wrote {json_path} and {summary}")
    if os.environ.get("BENCH_PUBLISH", "0" if config.quick else "1") == "1":
        published = report.publish(results, json_path)
        log(f"published {published}")
    log(f"done in {results['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
