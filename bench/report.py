"""Benchmark results (JSON) to a Markdown summary and PNG plots.

`python -m bench.report bench/results/<stamp>.json [--publish]` redraws a finished run;
`make bench` calls `write` (and `publish` for a full run) itself.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.suite import plots, tables
from bench.suite.summary import Results

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC_INTRO = Path(__file__).resolve().parent / "suite" / "benchmarks_intro.md"


def targets_section(results: Results) -> list[str]:
    lines = ["| target | what | version | status |", "|---|---|---|---|"]
    for name, info in results.targets.items():
        status = f"skipped: {info['skipped']}" if info["skipped"] else "measured"
        lines.append(f"| {name} | {info['label']} | {info['version']} | {status} |")
    return [*lines, ""]


def spawn_table(results: Results) -> list[str]:
    config = results.raw["config"]
    if not results.ran("spawn.per_s"):  # a run from before this workload
        return []
    return tables.table(
        results,
        "New environments per second",
        tables.both(
            results,
            [
                ("per second", "spawn.per_s"),
                ("made", "spawn.environments"),
                ("last began (ms)", "spawn.last_ms"),
            ],
        ),
        f"{config['spawn']} simultaneous first calls to a function with no environment, "
        f"each keeping its environment busy {config['spawn_hold_s']:g} s, so that each "
        "wants one of its own. Each answer names the environment that ran it and when its "
        "handler began: the rate is the environments made over the time from sending the "
        "calls to the last one's first call. A target that has not made them all when "
        "the first are free again serves later calls in those: it makes fewer, at its "
        "own rate.",
    )


def figure_tables(results: Results) -> list[str]:
    concurrencies = results.raw["config"]["concurrencies"]
    t = tables
    sections = [
        t.table(
            results,
            "Cold start (ms): first call to a new function",
            t.both(
                results,
                [
                    ("no-op p50", "cold.noop.p50"),
                    ("no-op p99", "cold.noop.p99"),
                    ("200 ms init p50", "cold.init200.p50"),
                    ("200 ms init p99", "cold.init200.p99"),
                ],
            ),
        ),
        t.table(
            results,
            "Warm no-op latency (ms), one keep-alive connection",
            t.both(
                results,
                [("p50", "warm.noop.p50"), ("p99", "warm.noop.p99"), ("p99.9", "warm.noop.p999")],
            ),
        ),
        t.table(
            results,
            "Platform overhead (ms): latency minus the time the handler measured itself",
            t.both(
                results,
                [
                    ("no-op p50", "overhead.noop.p50"),
                    ("no-op p99", "overhead.noop.p99"),
                    ("CPU-bound p50", "overhead.cpu1769.p50"),
                ],
            ),
        ),
        t.table(
            results,
            "Server CPU per invocation (ms of CPU, whole process tree)",
            t.both(
                results,
                [
                    ("warm", "cpu_ms.noop"),
                    ("cold start", "cpu_ms.cold.noop"),
                    ("at concurrency 8", "cpu_ms.c8"),
                ],
            ),
            "User + system time of the server and every process under it (environments, "
            "templates, exited children) over the run, divided by invocations. For "
            "python-lambda-local: the CLI process and its child, per call.",
        ),
        t.table(
            results,
            "1 MB payload echo (ms)",
            t.both(results, [("p50", "echo.p50"), ("p99", "echo.p99")]),
            "python-lambda-local's figures here and in the CPU-bound table include starting "
            "a process per call: it has no warm environments.",
        ),
        t.table(
            results,
            "CPU-bound handler (ms): 50 MB of SHA-256 at 1,769 MB and at 128 MB",
            t.both(results, [("1769 MB p50", "cpu1769.p50"), ("128 MB p50", "cpu128.p50")]),
            "On AWS 1,769 MB buys one vCPU and 128 MB about 7% of one: a 128 MB function is "
            "about 14 times slower on CPU-bound work. Only a platform that enforces memory "
            "shows that.",
        ),
        t.table(
            results,
            "Throughput (warm no-op invocations per second) vs concurrency",
            [
                (f"{runtime.capitalize()} c={c}", runtime, f"throughput.c{c}")
                for runtime in results.runtimes
                for c in concurrencies
            ],
            "A load generator in its own process keeps that many keep-alive connections busy "
            "after the environments have been started.",
        ),
        t.table(
            results,
            f"Burst: {results.raw['config']['burst']} concurrent first calls to a cold "
            "function (ms)",
            t.both(
                results, [("p50", "burst.p50"), ("p99", "burst.p99"), ("all done", "burst.wall_ms")]
            ),
        ),
        spawn_table(results),
        t.table(
            results,
            "Idle warm environments: memory each, and how many fit in 4 GiB",
            t.both(results, [("MiB each", "idle.env_mib"), ("fit in 4 GiB", "idle.fit_in_4gib")]),
            "Growth of the whole tree's proportional set size (PSS: shared pages split among "
            "the processes sharing them) when that many more environments sit idle.",
        ),
        t.table(
            results,
            "Function URL throughput at concurrency 8 (invocations per second)",
            t.both(
                results,
                [
                    ("URL", "url.throughput"),
                    ("Invoke", "url.invoke_throughput"),
                    ("URL ÷ Invoke", "url.vs_invoke"),
                ],
            ),
            "serverless-offline has no function URLs: its `httpApi` route (API Gateway HTTP "
            "API, the same payload format 2.0) stands in.",
        ),
    ]
    return [line for section in sections for line in section]


def render(raw: dict[str, Any], image_prefix: str) -> str:
    results = Results(raw)
    machine = raw["machine"]
    config = raw["config"]
    lines = [
        f"## Results of {raw['stamp']}{' (quick smoke run)' if config['quick'] else ''}",
        "",
        f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}; load average {machine['load_average_at_start'][0]:.1f} at the "
        f"start and {machine['load_average_at_end'][0]:.1f} at the end (the machine is shared). "
        f"Lamina {machine['lamina_commit']}, functions on {machine['python_functions']} and "
        f"Node {machine['node']}. {config['rounds']} rotated rounds; the run took "
        f"{raw['seconds'] / 60:.1f} minutes. Cells: median over rounds (lowest-highest round).",
        "",
        *targets_section(results),
        *tables.headline(results),
        *tables.floor_distance(results),
        *figure_tables(results),
        *tables.asynchronous(results),
        *tables.soak(results),
        "### Plots",
        "",
    ]
    for name in plots.PNG_NAMES:
        lines += [f"![{name.removesuffix('.png').replace('_', ' ')}]({image_prefix}{name})", ""]
    return "\n".join(lines)


def write(raw: dict[str, Any], directory: Path) -> Path:
    """summary.md and the plots into `directory`; the summary's path."""
    plots.draw_all(Results(raw), directory)
    summary = directory / "summary.md"
    summary.write_text(render(raw, ""))
    return summary


def publish(raw: dict[str, Any], json_path: Path) -> Path:
    """The run becomes docs/benchmarks.md, with its plots and JSON in docs/benchmarks/."""
    images = DOCS / "benchmarks"
    shutil.rmtree(images, ignore_errors=True)
    plots.draw_all(Results(raw), images)
    shutil.copy(json_path, images / "results.json")
    document = DOCS / "benchmarks.md"
    document.write_text(DOC_INTRO.read_text() + "\n" + render(raw, "benchmarks/"))
    return document


def main(argv: list[str]) -> int:
    json_path = Path(argv[0])
    raw = json.loads(json_path.read_text())
    summary = write(raw, json_path.with_suffix(""))
    print(summary)
    if "--publish" in argv:
        print(publish(raw, json_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
