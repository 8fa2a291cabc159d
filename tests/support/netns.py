"""Hosts on one machine: network namespaces on a Linux bridge, for tests that cross a network.

Each `Network` owns a bridge in the root namespace holding the first address of its own
10.77.X.0/24, and gives every host a namespace joined to the bridge by a veth pair (the
host side on the bridge, the other side, renamed eth0, in the namespace). Names carry a
random token, and the subnet is one no other interface of the machine uses (chosen under a
file lock), so runs in parallel never collide. `close()` removes everything, and kills what
still runs in the namespaces: deleting a namespace does not stop its processes.

Needs root and iproute2 (`available()` says whether both are there).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Addresses of the form 10.77.X.Y; the bridge is .1 and host i is .(HOST_BASE + i).
PREFIX = "10.77"
HOST_BASE = 10
# Taken while a subnet is picked and the bridge given its address, so that two runs never
# pick the same one (another run's bridge address is what marks a subnet as taken).
_LOCK_PATH = Path("/tmp/lamina-test-netns.lock")


def available() -> bool:
    """Whether namespaces can be made here: root and the `ip` command."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def held_by_this_process() -> set[int]:
    """The namespaces (by inode) this process holds a descriptor of: all that keeps a
    namespace with no name and no process alive. Told by the namespace file system's device,
    not by the descriptor's link, which reads "/" once the name it was opened by is gone."""
    namespaces_device = os.stat("/proc/self/ns/net").st_dev
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            status = os.stat(f"/proc/self/fd/{fd}")
            if status.st_dev == namespaces_device:
                held.add(status.st_ino)
    return held


def host_links(prefix: str) -> set[str]:
    """The names of this (the calling thread's) namespace's interfaces that start `prefix`."""
    listing = ip("-o", "link", "show")
    names = {line.split(":")[1].strip().split("@")[0] for line in listing.splitlines()}
    return {name for name in names if name.startswith(prefix)}


def ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Host:
    """One namespace on the bridge."""

    namespace: str
    address: str
    # The veth end on the bridge, in the root namespace: setting it down cuts the host off.
    link: str

    def pids(self) -> list[int]:
        """Every process running in the namespace."""
        return [int(pid) for pid in ip("netns", "pids", self.namespace, check=False).split()]

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process in the namespace (what a machine losing power does), until
        none is left: a process may fork while the others are being killed."""
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"still running in {self.namespace}: {pids}")
            time.sleep(0.02)  # the killed take a moment to go

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace (`ip netns exec` replaces itself by `argv`, so the
        process started is the command itself, with its own pid)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class Network:
    """A bridge and its hosts; `close()` undoes it all, whatever state it is in."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.bridge = f"lmb{self.token}"
        self.hosts: list[Host] = []
        self._subnet: str | None = None

    @property
    def gateway(self) -> str:
        """The bridge's address: the root namespace as the hosts see it."""
        assert self._subnet is not None, "the network is not up"
        return f"{self._subnet}.1"

    def open(self) -> Network:
        ip("link", "add", self.bridge, "type", "bridge")
        with _LOCK_PATH.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._subnet = _free_subnet()
            ip("addr", "add", f"{self._subnet}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        return self

    def add_host(self) -> Host:
        index = len(self.hosts)
        host = Host(
            namespace=f"lamina-{self.token}-{index}",
            address=f"{self._subnet}.{HOST_BASE + index}",
            link=f"lmv{self.token}{index}",
        )
        inside = f"lmp{self.token}{index}"
        self.hosts.append(host)  # before creating anything, so close() removes it all
        ip("netns", "add", host.namespace)
        ip("link", "add", host.link, "type", "veth", "peer", "name", inside)
        ip("link", "set", host.link, "master", self.bridge)
        ip("link", "set", host.link, "up")
        ip("link", "set", inside, "netns", host.namespace)
        ip("-n", host.namespace, "link", "set", inside, "name", "eth0")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.namespace, "link", "set", "eth0", "up")
        # Servers inside talk to their own children over loopback.
        ip("-n", host.namespace, "link", "set", "lo", "up")
        return host

    def cut(self, host: Host) -> None:
        """Unplug the host's cable: it keeps running, nothing reaches it or leaves it."""
        ip("link", "set", host.link, "down")

    def heal(self, host: Host) -> None:
        ip("link", "set", host.link, "up")

    def close(self) -> None:
        for host in self.hosts:
            host.kill_all()
            # Deleting the namespace deletes its veth end, and the pair with it.
            ip("netns", "del", host.namespace, check=False)
            ip("link", "del", host.link, check=False)
        ip("link", "del", self.bridge, check=False)


def _free_subnet() -> str:
    """A 10.77.X prefix no interface of the machine has an address in."""
    used = set(re.findall(rf"inet {re.escape(PREFIX)}\.(\d+)\.", ip("-o", "-4", "addr", "show")))
    free = [x for x in range(1, 255) if str(x) not in used]
    if not free:
        raise RuntimeError(f"every {PREFIX}.X.0/24 subnet is in use")
    return f"{PREFIX}.{random.choice(free)}"
