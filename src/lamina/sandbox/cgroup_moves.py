"""Moving a process into its environment's cgroup in well under a millisecond.

Every cold start moves its runtime into a new cgroup. By default the kernel keeps the lock
that guards such moves cheap for forks and exits and makes each move wait for an RCU grace
period: 7 to 14 ms measured here, most of a cold start when they are spaced out. The cgroup v2
root flag `favordynmods` (Linux 6.0+) trades the other way, which is the right trade for a
host whose work is starting environments: moves then cost about 0.3 ms.

The flag belongs to the kernel's one v2 hierarchy and is applied by every mount of it, so it
is set by mounting that hierarchy once more, on a private directory, with the options the
host's own mount has plus `favordynmods`, and unmounting it again: the host's mount and its
per-mount flags stay as they are. A host without a cgroup2 mount is left alone. On Linux 6.18
and later the kernel keeps the faster moves until reboot once the flag has been set. This
is a change to the host that outlives Lamina: `LAMINA_CGROUP_FAST_MOVES=off` forgoes it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from lamina.sandbox import mounts
from lamina.sandbox.cgroup_mounts import cgroup_mounts

FLAG = "favordynmods"
NO_CGROUP2 = "the host has no cgroup v2 mount"


def cgroup2_options(mountinfo: str, mount_point: str | None = None) -> set[str] | None:
    """The super options of a cgroup v2 mount (the first, or the one at `mount_point`);
    None when there is none."""
    for _, point, fstype, options in cgroup_mounts(mountinfo):
        if fstype == "cgroup2" and mount_point in (None, point):
            return options
    return None


def moves_state(mountinfo: str) -> tuple[bool, str]:
    """Whether the flag is set now, and why not (what `lamina doctor` reports: it changes
    nothing on the host)."""
    current = cgroup2_options(mountinfo)
    if current is None:
        return False, NO_CGROUP2
    if FLAG in current:
        return True, f"cgroup2 {FLAG} set"
    return False, f"cgroup2 {FLAG} not set; `lamina serve` sets it at start-up"


def favour_moves(mountinfo: str) -> tuple[bool, str]:
    """Set `favordynmods` on the cgroup v2 root; whether moves are fast now, and how.
    Never raises: a host where it cannot be set keeps its cold starts as they were."""
    current = cgroup2_options(mountinfo)
    if current is None:
        # Mounting the v2 hierarchy here would make it visible in every process's
        # /proc/<pid>/cgroup for good: not for a flag.
        return False, NO_CGROUP2
    if FLAG in current:
        return True, f"cgroup2 {FLAG} already set"
    # Options the kernel reports that are not cgroup2 parameters.
    keep = sorted(current - {"rw", "ro", FLAG})
    try:
        applied = _mount_with_flag(",".join([*keep, FLAG]))
    except OSError as error:
        # EINVAL: a kernel before 6.0, which has no such flag.
        return False, f"cannot set cgroup2 {FLAG}: {error.strerror or error}"
    if not applied:
        # Outside the initial cgroup namespace the kernel takes the mount, not the flag.
        return False, f"the kernel did not apply cgroup2 {FLAG} (a cgroup namespace?)"
    return True, f"cgroup2 {FLAG} set by Lamina"


def _mount_with_flag(options: str) -> bool:
    """Mount the v2 hierarchy with `options` on a private directory and unmount it again;
    whether the flag shows on that mount."""
    directory = tempfile.mkdtemp(prefix="lamina-cgroup2-")
    try:
        mounts.mount("cgroup2", directory, "cgroup2", 0, options)
        try:
            with open("/proc/self/mountinfo") as table:
                return FLAG in (cgroup2_options(table.read(), directory) or set())
        finally:
            mounts.umount(directory, mounts.MNT_DETACH)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(directory)
