"""How busy the machine was during a measure, and how much of that was not the benchmark.

The cluster benchmark runs every node, environment and client on one machine, so a busy
neighbour (another test suite on the same cores) lowers its throughput: printing both
shares tells a reader which figures met a crowded machine. From /proc: the machine's
ticks (/proc/stat) and those of the benchmark's processes, all in the same clock ticks.
The benchmark's are every process descending from this one (nodes, environments, the load
generator) and the servers working for it: the PostgreSQL backends of its database and
Redis (shared with whoever else uses it at the time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def machine_ticks() -> tuple[int, int]:
    """(all ticks, idle ticks) of every core since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # idle + iowait


def serves_us(pid: int, database: str) -> bool:
    try:
        command = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return command.startswith(b"redis-server") or (
        command.startswith(b"postgres:") and database.encode() in command
    )


def family_ticks(root: int, database: str) -> int:
    """User + system ticks of `root` and its descendants: each process's own and those of
    the children it has reaped (the load generator, once it has ended), so a child that
    ends between two readings moves its ticks to its parent rather than losing them."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command may hold spaces and parentheses: the fields start after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        ticks[pid] = sum(int(value) for value in fields[11:15])
    total = 0
    for pid, own in ticks.items():
        ancestor = pid
        while ancestor not in (0, 1) and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root or serves_us(pid, database):
            total += own
    return total


@dataclass
class CpuWindow:
    """Start one before a measure; `shares()` after it: (machine busy, others' part)."""

    database: str
    _machine: tuple[int, int] = (0, 0)
    _ours: int = 0

    def __post_init__(self) -> None:
        self._machine = machine_ticks()
        self._ours = family_ticks(os.getpid(), self.database)

    def shares(self) -> tuple[float, float]:
        total, idle = machine_ticks()
        elapsed = max(1, total - self._machine[0])
        busy = (elapsed - (idle - self._machine[1])) / elapsed
        ours = (family_ticks(os.getpid(), self.database) - self._ours) / elapsed
        return busy, max(0.0, busy - ours)
