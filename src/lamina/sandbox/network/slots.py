"""Network namespaces with their veth link, made and removed many at a time with iproute2.

A slot is one prepared namespace: loopback up, IPv6 off, `eth0` holding the environment's end
of a /31 whose host end routes it, a default route through the host. One `ip -batch` makes a
batch's namespaces and veth pairs; each namespace's inside is configured from a thread that
enters it (see `interfaces`). Slots are made ahead of time (see `pool`); a cold start only
takes one.

Once open and configured, a slot's namespace is held by its descriptor alone: its name
under /run/netns (the bind mount `ip netns add` makes) is removed. Every new mount namespace
copies the host's mounts, and a sandbox then walks and unmounts them all, so a name per
live environment made every cold start slower the more environments were alive (a burst
of 200 first calls with 600 alive made 94 to 98 a second, 126 to 132 with the names
gone). Without a name, the namespace goes when its descriptor is closed and no process is
left in it, a crashed server's too, and its veth pair with it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from lamina.model.networks import NetworkPolicy
from lamina.sandbox import mounts
from lamina.sandbox.network.addresses import NETNS_DIR, AddressPlan, SlotAddresses
from lamina.sandbox.network.interfaces import configure_inside

CLONE_NEWNET = 0x40000000
_NO_IPV6 = "sys/net/ipv6/conf/all/disable_ipv6"  # below a procfs root
_WRITE_ONLY = os.O_WRONLY | os.O_CLOEXEC
_NETMASK_31 = "255.255.255.254"
# The threads that make namespaces (the pool's filler and its on-demand makers) take turns.
# The kernel serialises their changes anyway (the routing netlink lock), and a write to
# `disable_ipv6` that finds that lock taken does not wait for it: the system call restarts,
# over and over, on the CPU. In a burst, with the makers at work together, those restarts
# took about 0.7 ms of CPU per namespace (`perf`). Removals, rare in a burst, and SnapStart's
# moves of an interface (a cold start waiting) do not wait for a turn.
_MAKERS_TURN = threading.Lock()


class SlotError(RuntimeError):
    """iproute2 could not make or remove namespaces."""


# What says this kernel or this server will never make a detached procfs.
_NO_DETACHED_PROCFS = frozenset({errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EINVAL})


class SysctlRoot:
    """Where the makers open a new namespace's `disable_ipv6`: a procfs instance of their
    own (`mounts.detached_procfs`), replaced after every `RENEW_AFTER` namespaces.

    Under /proc/sys, each network namespace whose settings have been looked up leaves
    entries of the same names under the same parents, and a lookup compares them one by
    one: opening that file in a new namespace took 35 µs with no other namespace alive and
    265 µs with 1,000 (`bench.netns_sysctl`), so each cold start grew slower the more
    environments were alive. An instance holds only what was looked up through it: with a
    fresh one every 32 namespaces the open took 27 to 40 µs whatever the count, and making
    one takes about 62 µs. Where none can be made (a kernel before 5.2, no right to), /proc
    itself is used.
    """

    RENEW_AFTER = 32

    def __init__(self) -> None:
        self._root = -1
        self._uses = 0
        self._detached = True
        # Held while the root is used or replaced: `close` may come from another thread.
        self._lock = threading.Lock()

    def open_no_ipv6(self) -> int:
        """A write-only descriptor of the calling thread's namespace's `disable_ipv6`."""
        with self._lock:
            if self._detached and (self._root < 0 or self._uses >= self.RENEW_AFTER):
                self._close_root()
                try:
                    self._root = mounts.detached_procfs()
                except OSError as error:
                    # For good where the kernel or this server cannot; otherwise (out of
                    # descriptors or memory) /proc this once, and a new try next time.
                    if error.errno in _NO_DETACHED_PROCFS:
                        self._detached = False
            self._uses += 1
            if self._root >= 0:
                return os.open(_NO_IPV6, _WRITE_ONLY, dir_fd=self._root)
        return _open_proc_no_ipv6()

    def _close_root(self) -> None:
        if self._root >= 0:
            os.close(self._root)
        self._root = -1
        self._uses = 0

    def close(self) -> None:
        """Close the instance; a maker that outlives this uses /proc."""
        with self._lock:
            self._close_root()
            self._detached = False


def _open_proc_no_ipv6() -> int:
    """The calling thread's namespace's `disable_ipv6`, through /proc."""
    return os.open("/proc/" + _NO_IPV6, _WRITE_ONLY)


@dataclass
class Slot:
    """One prepared network namespace and an open descriptor of it."""

    addresses: SlotAddresses
    # Which network's pool it belongs to (None: the default network).
    network: NetworkPolicy | None
    fd: int = -1
    # Whether its name under /run/netns is still there (only while it is being made).
    named: bool = True

    @property
    def path(self) -> str:
        return self.addresses.netns_path

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def run_ip(commands: str, ip_path: str, force: bool = False) -> None:
    """Run `ip -batch` commands in the host's namespace (with `force`, past failing ones)."""
    argv = [ip_path, *(["-force"] if force else []), "-batch", "-"]
    result = subprocess.run(
        argv, input=commands, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0 and not force:
        raise SlotError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")


class InNamespace:
    """Run code of this thread inside another network namespace, then come back.

    setns(CLONE_NEWNET) moves the calling thread only; sockets made meanwhile stay in the
    namespace they were made in.
    """

    def __init__(self) -> None:
        self._own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def entered(self, fd: int) -> Iterator[None]:
        mounts.setns(fd, CLONE_NEWNET)
        try:
            yield
        finally:
            mounts.setns(self._own, CLONE_NEWNET)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._own)


def make_slots(
    plan: AddressPlan,
    indices: Sequence[int],
    network: NetworkPolicy | None,
    ip_path: str,
    enter: Callable[[int], contextlib.AbstractContextManager[None]],
    sysctl: SysctlRoot,
) -> list[Slot]:
    """Make one slot per index; on failure nothing of them is left behind. `enter(fd)` puts
    the calling thread inside the namespace open as `fd` (`NetworkIsolation._entered`)."""
    links = [plan.slot(index) for index in indices]
    host = "".join(
        f"netns add {link.netns}\n"
        f"link add {link.host_interface} type veth peer name eth0 netns {link.netns}\n"
        f"addr add {link.host_address}/31 dev {link.host_interface}\n"
        f"link set {link.host_interface} up\n"
        for link in links
    )
    slots = [Slot(link, network) for link in links]
    try:
        with _MAKERS_TURN:
            run_ip(host, ip_path)
            for slot in slots:
                link = slot.addresses
                slot.fd = os.open(slot.path, os.O_RDONLY | os.O_CLOEXEC)
                with enter(slot.fd):
                    configure_environment_side(link, sysctl.open_no_ipv6())
                _forget_name(slot)
    except BaseException:
        remove_slots(slots, ip_path)
        raise
    return slots


def configure_environment_side(link: SlotAddresses, no_ipv6: int | None = None) -> None:
    """In the calling thread's network namespace: the slot's eth0 addressed and up, routed
    through the host's end. No IPv6 (set before eth0 is up, so it gets no link-local
    address): the firewall's rules and the addresses are IPv4. `no_ipv6`: a descriptor of
    this namespace's `disable_ipv6` (`SysctlRoot`), closed here; else /proc's is opened."""
    if no_ipv6 is None:
        no_ipv6 = _open_proc_no_ipv6()
    try:
        os.write(no_ipv6, b"1")
    finally:
        os.close(no_ipv6)
    configure_inside(link.environment_address, _NETMASK_31, link.host_address)


def _forget_name(slot: Slot) -> None:
    """Remove the slot's name (as `ip netns del` does); its descriptor keeps it alive."""
    mounts.umount(slot.path, mounts.MNT_DETACH)
    os.unlink(slot.path)
    slot.named = False


def remove_slots(slots: Sequence[Slot], ip_path: str) -> None:
    """Delete the veth pairs and close the descriptors: a namespace goes once no process is
    left in it. The names of slots still being made go too."""
    for slot in slots:
        slot.close()
    if slots:
        commands = "".join(f"netns del {slot.addresses.netns}\n" for slot in slots if slot.named)
        commands += "".join(f"link del {slot.addresses.host_interface}\n" for slot in slots)
        run_ip(commands, ip_path, force=True)


def remove_leftovers(plan: AddressPlan, ip_path: str) -> None:
    """Remove the namespaces and interfaces a crashed server of the same block left."""
    commands = []
    with contextlib.suppress(OSError):
        for name in os.listdir(NETNS_DIR):
            suffix = name[len(plan.netns_prefix) :]
            if name.startswith(plan.netns_prefix) and suffix.isdigit():
                commands.append(f"netns del {name}\n")
    listing = subprocess.run(
        [ip_path, "-o", "link", "show"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    for line in listing.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        if name.startswith(plan.interface_prefix):
            commands.append(f"link del {name}\n")
    commands.append(f"addr del {plan.gateway_address}/32 dev lo\n")
    run_ip("".join(commands), ip_path, force=True)
