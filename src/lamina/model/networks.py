"""What the operator declares about networks and shared file systems, as the sandbox sees it.

Functions name these with AWS's identifiers (`VpcConfig` subnet and security-group ids,
`FileSystemConfigs` access-point ARNs); the operator's network file maps those identifiers to
what an environment may reach and which host directory it mounts (`lamina.control.networks`
reads the file, the sandbox applies what it says).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class EgressRule:
    """Destinations an environment may open connections to: a CIDR, and its ports (TCP and
    UDP), or every port when `ports` is empty."""

    cidr: IPNetwork
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class NetworkPolicy:
    """One network environments are placed in.

    `name` is the operator's name for it ("vpc-db"); None-named default egress is represented by
    `DEFAULT_NETWORK`. `internet` lets traffic leave to any address the host can reach (the
    default network has it; a VPC network has it only when the operator says so, as a VPC on
    AWS reaches the internet only through a NAT gateway). `allow` lists what else it may reach
    even where the default policy refuses it (the host's own addresses, private ranges).
    `dns` are resolver addresses written to the environment's /etc/resolv.conf (empty: the
    host's own resolv.conf).
    """

    name: str
    internet: bool
    allow: tuple[EgressRule, ...] = ()
    dns: tuple[str, ...] = ()


DEFAULT_NETWORK = NetworkPolicy(name="default", internet=True)


@dataclass(frozen=True)
class FileSystemMount:
    """An access point mounted into an environment, as the sandbox needs it.

    `host_path` is the directory on the host (the access point's root directory already
    joined to the file system's path); `mount_path` is `LocalMountPath` (under /mnt/). Files are
    read and written as `uid`/`gid`, the access point's POSIX user, whatever uid the environment
    runs as. A missing `host_path` is created owned by them, with `permissions` (the access
    point's creation info). `read_only`: the function's role may mount but not write
    (`elasticfilesystem:ClientWrite` missing), as EFS mounts it then.
    """

    access_point_arn: str
    host_path: str
    mount_path: str
    uid: int
    gid: int
    permissions: int = 0o755
    read_only: bool = False
