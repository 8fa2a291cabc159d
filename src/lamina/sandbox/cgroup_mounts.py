"""Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo."""

from __future__ import annotations

from lamina.sandbox.mounts import unescape


def cgroup_mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(mount root, mount point, fs type, super options) of every cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or not tail[0].startswith("cgroup"):
            continue
        options = set(tail[2].split(","))
        found.append((fields[3], unescape(fields[4]), tail[0], options))
    return found
