"""Who is on the other end of a loopback TCP connection: the uid that owns the peer socket.

Every environment's Runtime API listens on 127.0.0.1 in the host's network namespace, where
any local process can connect. Sandboxes that run each environment as its own uid let the
Runtime API accept only that uid. The kernel's socket-diagnostics netlink interface answers
for one exact connection; /proc/net/tcp is the slower fallback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLMSG_ERROR = 0x2
_NO_COOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")
_REQUEST = struct.Struct("=BBBBI")
_SOCKET_ID = struct.Struct(">HH16s16sI")
_UID_OFFSET = _HEADER.size + 4 + _SOCKET_ID.size + 8 + 12


def _packed(address: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return socket.AF_INET, ip.packed + bytes(12)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (socket.AF_INET, mapped.packed + bytes(12)) if mapped else (socket.AF_INET6, ip.packed)


def _netlink_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    family, source = _packed(peer[0])
    _, destination = _packed(local[0])
    body = (
        _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
        + _SOCKET_ID.pack(peer[1], local[1], source, destination, 0)
        + struct.pack("=II", _NO_COOKIE, _NO_COOKIE)
    )
    message = _HEADER.pack(_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as diag:
        diag.sendto(message + body, (0, 0))
        reply = diag.recv(8192)
    if len(reply) < _UID_OFFSET + 4:
        return None
    _, kind, _, _, _ = _HEADER.unpack_from(reply)
    if kind == _NLMSG_ERROR:
        return None
    return int(struct.unpack_from("=I", reply, _UID_OFFSET)[0])


def _proc_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    family, source = _packed(peer[0])
    table = "/proc/net/tcp" if family == socket.AF_INET else "/proc/net/tcp6"
    width = 8 if family == socket.AF_INET else 32

    def key(raw: bytes, port: int) -> str:
        # /proc prints each 32-bit word of the address in host byte order.
        words = [raw[i : i + 4][::-1] for i in range(0, width // 2, 4)]
        return "".join(word.hex().upper() for word in words) + f":{port:04X}"

    _, destination = _packed(local[0])
    wanted = (key(source, peer[1]), key(destination, local[1]))
    with open(table, encoding="ascii") as lines:
        next(lines)
        for line in lines:
            fields = line.split()
            if (fields[1], fields[2]) == wanted:
                return int(fields[7])
    return None


def peer_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The uid owning the socket at `peer` connected to our socket at `local`, if found."""
    with contextlib.suppress(OSError):
        uid = _netlink_uid(peer, local)
        if uid is not None:
            return uid
    with contextlib.suppress(OSError, StopIteration, ValueError, IndexError):
        return _proc_uid(peer, local)
    return None
