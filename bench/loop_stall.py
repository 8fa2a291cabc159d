"""What a cold start without a template holds the server's event loop for, for this tree or
for two trees side by side.

A server per source tree keeps a warm Python no-op busy with back-to-back calls on one
keep-alive connection while it cold-starts 20 custom-runtime functions (`provided.al2023`, a
`bootstrap` script that waits), one every 100 ms through `Event` invokes. The slowest warm
call around each cold start shows how long the loop was held: the spawn of a fresh runtime
forks the server and then waits while the child builds its root. Printed per tree: the
median and mean of those 20 slowest calls, with the warm calls' p50. Rounds alternate
between the trees.

Run: `.venv/bin/python -m bench.loop_stall [TREE [TREE]]` as root, where a TREE is a
checkout of Lamina (default: this one). BENCH_QUICK=1 runs one round. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROLE, KeepAlive, fresh_server
from bench.network import package

QUICK = bool(os.environ.get("BENCH_QUICK"))
ROUNDS = 1 if QUICK else 3
COLD_STARTS = 20
ROOT = Path(__file__).resolve().parent.parent
WARM_PATH = "/2015-03-31/functions/warm/invocations"
# A custom runtime that never asks for an event: its cold start is the spawn and no more.
BOOTSTRAP = "#!/bin/sh\nexec sleep 600\n"


def executable_zip(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = 0o100755 << 16
        archive.writestr(info, text)
    return buffer.getvalue()


def one_round(tree: Path) -> tuple[list[float], float]:
    """(the slowest warm call around each cold start in ms, the warm calls' p50)."""
    env = {"LAMINA_IDLE_TIMEOUT": "600", "PYTHONPATH": str(tree / "src")}
    with fresh_server(env=env) as server:
        client = server.client()
        client.create_function(
            FunctionName="warm",
            Runtime="python3.12",
            Role=ROLE,
            Handler="index.handler",
            MemorySize=1769,
            Code={
                "ZipFile": package({"index.py": "def handler(event, context):\n    return {}\n"})
            },
        )
        code = executable_zip("bootstrap", BOOTSTRAP)
        for index in range(COLD_STARTS):
            client.create_function(
                FunctionName=f"custom-{index}",
                Runtime="provided.al2023",
                Role=ROLE,
                Handler="unused",
                MemorySize=128,
                Code={"ZipFile": code},
            )
        connection = KeepAlive(server.port)
        for _ in range(200):
            connection.request("POST", WARM_PATH, b"{}")
        latencies: list[float] = []
        stop = threading.Event()

        def warm_calls() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                status, _ = connection.request("POST", WARM_PATH, b"{}")
                latencies.append((time.perf_counter() - started) * 1000)
                assert status == 200, status

        caller = threading.Thread(target=warm_calls)
        caller.start()
        time.sleep(0.5)
        first = len(latencies)
        for index in range(COLD_STARTS):
            client.invoke(FunctionName=f"custom-{index}", InvocationType="Event", Payload=b"{}")
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        caller.join()
        connection.close()
        during = sorted(latencies[first:])
        return during[-COLD_STARTS:], statistics.median(during)


def main() -> None:
    trees = [Path(arg).resolve() for arg in sys.argv[1:]] or [ROOT]
    slowest: dict[Path, list[float]] = {tree: [] for tree in trees}
    medians: dict[Path, list[float]] = {tree: [] for tree in trees}
    for round_index in range(ROUNDS):
        for tree in trees if round_index % 2 == 0 else trees[::-1]:
            worst, p50 = one_round(tree)
            slowest[tree].extend(worst)
            medians[tree].append(p50)
    for tree in trees:
        worst = slowest[tree]
        print(
            f"{tree}: slowest warm call around each of {COLD_STARTS} custom-runtime cold "
            f"starts, median {statistics.median(worst):.1f} ms, mean {statistics.mean(worst):.1f} "
            f"ms; warm p50 {statistics.median(medians[tree]):.2f} ms; {ROUNDS} rounds"
        )


if __name__ == "__main__":
    main()
