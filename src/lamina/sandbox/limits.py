"""The resource limits (rlimits) a function sees, as an AWS environment reports them.

Inside a Lambda function `getrlimit` reports the values in `AWS_LIMITS`. AWS enforces
MemorySize and EphemeralStorage by other means, so DATA, FSIZE, AS and RSS read unlimited.
The namespace backend does the same (a memory cgroup, a sized tmpfs for /tmp) and applies
these values exactly. The process backend has neither, so it keeps RLIMIT_DATA at MemorySize
and RLIMIT_FSIZE at EphemeralStorage (see `process_limits`).

Limits are named (`"RLIMIT_NOFILE"`) rather than numbered so that they can travel to a
template process as JSON; values are (soft, hard) pairs.
"""

from __future__ import annotations

import os
import resource

UNLIMITED = resource.RLIM_INFINITY
_MIB = 1024 * 1024
MAX_FILES = 1024
# AWS documents 1,024 processes and threads per environment, yet its RLIMIT_NPROC reads 742.
MAX_PROCESSES = 742

Limits = dict[str, tuple[int, int]]

AWS_LIMITS: Limits = {
    "RLIMIT_NOFILE": (MAX_FILES, MAX_FILES),
    "RLIMIT_NPROC": (MAX_PROCESSES, MAX_PROCESSES),
    "RLIMIT_CORE": (10240 * _MIB, 10240 * _MIB),
    "RLIMIT_MEMLOCK": (64 * 1024, 64 * 1024),
    "RLIMIT_STACK": (8 * _MIB, UNLIMITED),
    "RLIMIT_AS": (UNLIMITED, UNLIMITED),
    "RLIMIT_CPU": (UNLIMITED, UNLIMITED),
    "RLIMIT_DATA": (UNLIMITED, UNLIMITED),
    "RLIMIT_FSIZE": (UNLIMITED, UNLIMITED),
    "RLIMIT_RSS": (UNLIMITED, UNLIMITED),
}


def namespace_limits(memory_mb: int | None = None) -> Limits:
    """AWS's limits, for an environment with a uid of its own, as root sets them.

    `memory_mb` caps RLIMIT_DATA where no memory cgroup enforces MemorySize.
    """
    limits = dict(AWS_LIMITS)
    if memory_mb is not None:
        limits["RLIMIT_DATA"] = (memory_mb * _MIB, memory_mb * _MIB)
    return _available(limits)


def process_limits(memory_mb: int, ephemeral_mb: int) -> Limits:
    """AWS's limits as far as a plain process can have them.

    Memory and /tmp stay enforced by RLIMIT_DATA and RLIMIT_FSIZE: nothing else would. A
    server that is not root keeps its own RLIMIT_NPROC: that limit counts every process of
    the uid, which the server, its other environments and the user's own programs share, so
    742 would make functions fail to start threads on a busy desktop. It cannot raise a hard
    limit either, so each limit is capped at the server's own.
    """
    limits = dict(AWS_LIMITS)
    limits["RLIMIT_DATA"] = (memory_mb * _MIB, memory_mb * _MIB)
    limits["RLIMIT_FSIZE"] = (ephemeral_mb * _MIB, ephemeral_mb * _MIB)
    # A crash would write its core file into the code's directory on the host, which every
    # environment of that code shares: no core files, unless the function asks for them.
    limits["RLIMIT_CORE"] = (0, AWS_LIMITS["RLIMIT_CORE"][1])
    if os.geteuid() == 0:
        return _available(limits)
    del limits["RLIMIT_NPROC"]
    capped: Limits = {}
    for name, (soft, wanted) in _available(limits).items():
        hard = _lower(wanted, resource.getrlimit(getattr(resource, name))[1])
        capped[name] = (_lower(soft, hard), hard)
    return capped


def apply(limits: Limits) -> None:
    """Set each limit. Safe between fork and exec: it only makes system calls."""
    for name, pair in limits.items():
        resource.setrlimit(getattr(resource, name), pair)


def _available(limits: Limits) -> Limits:
    """The limits this platform defines."""
    return {name: pair for name, pair in limits.items() if hasattr(resource, name)}


def _lower(a: int, b: int) -> int:
    if a == UNLIMITED:
        return b
    if b == UNLIMITED:
        return a
    return min(a, b)
