"""What turning IPv6 off in a new network namespace costs as namespaces accumulate.

Each slot a network pool makes gets `disable_ipv6` written from inside its namespace. Under
/proc/sys, every namespace whose settings were looked up leaves entries of the same names
under the same parents, and the kernel's lookup compares them one by one. This bench holds
more and more namespaces (as live environments do), each with its setting written, and times
opening and writing the setting of one more namespace. Two ways, each for the namespaces
before it as for the one timed: through /proc (as slots were made before `SysctlRoot`), and
through `SysctlRoot` (a procfs instance of the makers' own, renewed every 32 namespaces; its
renewals are in its figure).

Run: `.venv/bin/python -m bench.netns_sysctl` as root. BENCH_QUICK=1 stops at 250
namespaces. Prints figures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lamina.sandbox import mounts
from lamina.sandbox.network.slots import CLONE_NEWNET, SysctlRoot

QUICK = bool(os.environ.get("BENCH_QUICK"))
ALIVE = (0, 250) if QUICK else (0, 250, 500, 1000)
SAMPLES = 32


def through_proc() -> int:
    return os.open("/proc/sys/net/ipv6/conf/all/disable_ipv6", os.O_WRONLY | os.O_CLOEXEC)


def new_namespace(own: int, open_setting: Callable[[], int]) -> tuple[int, float]:
    """A new namespace (its descriptor) with IPv6 off, and the seconds the setting took."""
    mounts.unshare(CLONE_NEWNET)
    held = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    started = time.perf_counter()
    setting = open_setting()
    try:
        os.write(setting, b"1")
    finally:
        os.close(setting)
    taken = time.perf_counter() - started
    mounts.setns(own, CLONE_NEWNET)
    return held, taken


def series(own: int, open_setting: Callable[[], int]) -> list[float]:
    """Median µs for one more namespace with each count of ALIVE held."""
    held: list[int] = []
    medians = []
    try:
        for alive in ALIVE:
            while len(held) < alive:
                held.append(new_namespace(own, open_setting)[0])
            taken = []
            for _ in range(SAMPLES):
                fd, seconds = new_namespace(own, open_setting)
                os.close(fd)
                taken.append(seconds * 1e6)
            medians.append(statistics.median(taken))
    finally:
        for fd in held:
            os.close(fd)
    return medians


def main() -> None:
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    root = SysctlRoot()
    try:
        figures = {"/proc": series(own, through_proc), "SysctlRoot": series(own, root.open_no_ipv6)}
    finally:
        root.close()
        os.close(own)
    print("disable_ipv6 opened and written in a new network namespace, p50:")
    for index, alive in enumerate(ALIVE):
        cells = ", ".join(f"{name} {values[index]:.0f} µs" for name, values in figures.items())
        print(f"  {alive} namespaces alive: {cells}")


if __name__ == "__main__":
    main()
