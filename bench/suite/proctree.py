"""CPU time and memory of a whole process tree, read from Linux /proc.

CPU time of a server's tree is the figure a busy neighbour disturbs least: it counts what the
server and everything it started spent, not how long the machine made them wait.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # exited between listing and reading
        return None
    # The command name (field 2) may hold spaces and parentheses; everything after the last
    # ")" is fixed-width: state is index 0 there, ppid 1, utime 11, stime 12, cutime 13...
    return text.rsplit(")", 1)[1].split()


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree(root: int) -> Iterator[int]:
    """The root and every live descendant (sandboxes in other PID namespaces included)."""
    children = _children_by_parent()
    pending = [root]
    while pending:
        pid = pending.pop()
        yield pid
        pending.extend(children.get(pid, ()))


def cpu_seconds(root: int) -> float:
    """User + system time of the tree, exited-and-reaped descendants included.

    A live process's own time is in its utime/stime; a reaped child's moved into its parent's
    cutime/cstime. Summing all four over the live tree counts every CPU-second exactly once.
    """
    ticks = 0
    for pid in tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def _kib(pid: int, filename: str, key: str) -> int:
    try:
        with open(PROC / str(pid) / filename) as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_mib(pids: Iterable[int]) -> float:
    """Proportional set size: pages shared by N processes count 1/N each, so a forked
    template's shared pages are not counted once per environment."""
    return sum(_kib(pid, "smaps_rollup", "Pss:") for pid in pids) / 1024


def rss_mib(pid: int) -> float:
    """Resident memory of one process (the server itself, without its environments)."""
    return _kib(pid, "status", "VmRSS:") / 1024
