"""What the server asks of network isolation, and whether this host has the tools for it."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from lamina.settings import Settings

log = logging.getLogger("lamina.sandbox")

_SYSTEM_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"


@dataclass(frozen=True)
class NetworkOptions:
    """`platform_endpoints` are (address, TCP port) pairs functions must never reach, even
    where their network reaches everything else: the store and Redis of a cluster. (The
    port, not the whole host: a host serving the platform's database may serve functions
    other things.) `gateway_ports` are opened on the gateway address from the start.
    `platform_ports` (the API's, the store's and Redis's) are refused on every address of
    this host, even to a network whose rules name the host."""

    platform_endpoints: tuple[tuple[str, int], ...] = ()
    gateway_ports: tuple[int, ...] = ()
    platform_ports: tuple[int, ...] = ()
    # Slots kept ready for the default network (about 240 KiB of kernel memory each), and
    # for each named network once used. A burst of cold starts beyond the pool makes the
    # rest on the spot, a few milliseconds each.
    pool_size: int = 16
    named_pool_size: int = 2


def tools() -> tuple[tuple[str, str] | None, str]:
    """(ip, nft) paths, or None and why network isolation cannot run here."""
    if os.geteuid() != 0:
        return None, "network namespaces and nftables need root"
    ip = shutil.which("ip", path=_SYSTEM_PATH)
    nft = shutil.which("nft", path=_SYSTEM_PATH)
    if ip is None:
        return None, "iproute2's `ip` was not found (apt-get install iproute2)"
    if nft is None:
        return None, "`nft` was not found (apt-get install nftables)"
    return (ip, nft), ""


# Where a URL without a port reaches the service (PostgreSQL, Redis).
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379}


def platform_endpoints(urls: Iterable[str | None]) -> tuple[tuple[str, int], ...]:
    """The (address, port) of each service in `urls` (store, Redis), resolved now. Loopback
    ones are left out: an environment's loopback is its own namespace's."""
    found: set[tuple[str, int]] = set()
    for url in urls:
        parts = urlsplit(url) if url else None
        host = parts.hostname if parts else None
        port = (parts.port or _DEFAULT_PORTS.get(parts.scheme)) if parts else None
        if not host or not port:
            continue
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as error:
            log.warning("network: cannot resolve platform host %s to refuse it: %s", host, error)
            continue
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if not address.is_loopback:
                found.add((str(address), port))
    return tuple(sorted(found))


def platform_ports(port: int, urls: Iterable[str | None]) -> tuple[int, ...]:
    """The API's `port` and the ports of the services in `urls` (store, Redis), wherever
    they listen: any of them may be this host's."""
    found = {port}
    for url in urls:
        parts = urlsplit(url) if url else None
        service_port = (parts.port or _DEFAULT_PORTS.get(parts.scheme)) if parts else None
        if service_port:
            found.add(service_port)
    return tuple(sorted(found))


def network_options(settings: Settings) -> NetworkOptions | None:
    """What `settings` ask of network isolation; None when the operator turned it off."""
    if not settings.network_isolation:
        return None
    urls = (settings.store_url, settings.redis_url)
    return NetworkOptions(
        platform_endpoints=platform_endpoints(urls),
        platform_ports=platform_ports(settings.port, urls),
    )
