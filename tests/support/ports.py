"""Ports for the servers tests start (Lamina, moto, Redis, collectors) before they listen.

A port found by binding port 0 and closing the socket comes from the kernel's ephemeral
range, the one every outgoing connection on the machine draws its local port from: between
the probe and the server's own bind, a client's connection or another test worker's probe
could take it, and the server would fail to start. Ports here come from below that range,
from a slice of their own per test worker, handed out in turn and each checked free.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

_LOWEST = 20000  # above the services this machine kind runs on fixed ports (5432, 6379...)


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # the kernel's default


def _worker_slice() -> range:
    """This worker's ports: pytest-xdist names workers gw0, gw1, ...; a plain run is one."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    width = (_ephemeral_start() - _LOWEST) // max(count, 1)
    start = _LOWEST + worker * width
    return range(start, start + width)


_SLICE = _worker_slice()
_TURNS: Iterator[int] = itertools.cycle(_SLICE)


def _bindable(port: int) -> bool:
    # No SO_REUSEADDR: a port with connections still in TIME_WAIT is passed over too.
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, that no other worker hands out."""
    return free_ports_in_a_row(1)


def free_ports_in_a_row(count: int) -> int:
    """A port P such that P .. P+count-1 are all free, none of them handed out again soon."""
    if len(_SLICE) < 64:  # an ephemeral range reaching this low: the kernel's pick, as before
        return _kernel_pick(count)
    run: list[int] = []
    for port in itertools.islice(_TURNS, 2 * len(_SLICE)):
        if run and port != run[-1] + 1:
            run = []  # wrapped around the slice
        run = [*run, port] if _bindable(port) else []
        if len(run) == count:
            return run[0]
    raise RuntimeError(f"no {count} free ports in a row in {_SLICE.start}-{_SLICE.stop - 1}")


def _kernel_pick(count: int) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if all(_bindable(port) for port in range(first + 1, first + count)):
            return first
    raise RuntimeError(f"no {count} free ports in a row")
