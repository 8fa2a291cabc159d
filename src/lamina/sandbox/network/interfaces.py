"""Configuring a namespace's interfaces from inside it, with the kernel's interface ioctls.

A thread that has entered the namespace (see `slots.InNamespace`) sets loopback and eth0 up,
gives eth0 its address and adds the default route: a few system calls, where running
iproute2 in the namespace costs a process (several milliseconds of CPU) per namespace.
"""

from __future__ import annotations

import fcntl
import socket
import struct

_SIOCADDRT = 0x890B
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCSIFADDR = 0x8916
_SIOCSIFNETMASK = 0x891C
_IFF_UP = 0x1
_RTF_UP = 0x1
_RTF_GATEWAY = 0x2
_IFREQ_SIZE = 40
# struct rtentry: pad, dst, gateway, genmask, flags, pad, pad, pad, metric, dev, mtu,
# window, irtt (native sizes and alignment, padded at the end as C pads it).
_RTENTRY = struct.Struct("@L16s16s16sHhLPhPLLH0L")


def _sockaddr(address: str) -> bytes:
    return struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))


def _ifreq(name: str, payload: bytes) -> bytes:
    return (name.encode().ljust(16, b"\0") + payload).ljust(_IFREQ_SIZE, b"\0")


def _up(control: socket.socket, name: str) -> None:
    current = fcntl.ioctl(control, _SIOCGIFFLAGS, _ifreq(name, b""))
    flags = struct.unpack_from("=H", current, 16)[0] | _IFF_UP
    fcntl.ioctl(control, _SIOCSIFFLAGS, _ifreq(name, struct.pack("=H", flags)))


def configure_inside(address: str, netmask: str, gateway: str) -> None:
    """lo and eth0 up, eth0 at `address`/`netmask`, default route via `gateway`, in the
    calling thread's network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        _up(control, "lo")
        fcntl.ioctl(control, _SIOCSIFADDR, _ifreq("eth0", _sockaddr(address)))
        fcntl.ioctl(control, _SIOCSIFNETMASK, _ifreq("eth0", _sockaddr(netmask)))
        _up(control, "eth0")
        route = _RTENTRY.pack(
            0,
            _sockaddr("0.0.0.0"),
            _sockaddr(gateway),
            _sockaddr("0.0.0.0"),
            _RTF_UP | _RTF_GATEWAY,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        )
        fcntl.ioctl(control, _SIOCADDRT, route)
