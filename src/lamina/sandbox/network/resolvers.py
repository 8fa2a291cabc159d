"""Which resolvers an environment in its own network namespace can use.

An environment sees the host's /etc/resolv.conf. Where that names only resolvers on the
host's loopback (systemd-resolved's 127.0.0.53, a local dnsmasq), a namespace cannot reach
them: its loopback is its own. systemd-resolved keeps the upstream servers it forwards to in
a file of its own; environments are given those instead.
"""

from __future__ import annotations

import ipaddress

HOST_RESOLV_CONF = "/etc/resolv.conf"
# systemd-resolved's list of the upstream servers it uses.
UPSTREAM_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"


def _nameservers(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            found.append(fields[1].split("%")[0])
    return found


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def namespace_resolv_conf(
    host: str = HOST_RESOLV_CONF, upstream: str = UPSTREAM_RESOLV_CONF
) -> str:
    """The resolv.conf environments should see instead of the host's, or "" to keep the
    host's (it names a resolver they can reach, or there is nothing better to give)."""
    text = _read(host)
    servers = _nameservers(text or "")
    if not servers or not all(_loopback(server) for server in servers):
        return ""
    replacement = _read(upstream) or ""
    usable = [server for server in _nameservers(replacement) if not _loopback(server)]
    return replacement if usable else ""
