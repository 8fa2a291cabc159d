"""The nftables table as written: what it refuses, what it lets through, and where.

`nft --check` parses a script without applying it, so each script is also checked by nft
itself where the host has it (root is needed to talk to the kernel even for a check).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess

import pytest

from lamina.model.networks import EgressRule, NetworkPolicy
from lamina.sandbox.network import firewall
from lamina.sandbox.network.addresses import AddressPlan
from lamina.sandbox.network.options import platform_endpoints, platform_ports

PLAN = AddressPlan(5)
NFT = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin")


def nft_accepts(script: str) -> None:
    """nft parses `script` against a scratch table of the same shape (not applied)."""
    if NFT is None or os.geteuid() != 0:
        return
    result = subprocess.run(
        [NFT, "--check", "-f", "-"], input=script, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_table_fences_the_environments_of_its_block() -> None:
    script = firewall.table_script(PLAN, [("203.0.113.7", 5432), ("2001:db8::7", 6379)], [9000])
    nft_accepts(script)
    lines = [line.strip() for line in script.splitlines()]
    interfaces = f'"{PLAN.interface_pattern}"'
    # To the host: established replies and the gateway's ports only, then refusals.
    assert f"iifname {interfaces} jump environment_to_host" in lines
    assert f"ip daddr {PLAN.gateway_address} tcp dport @gateway_ports accept" in lines
    assert "elements = { 9000 }" in lines
    # Through the host: never to another environment, nor to the platform's hosts.
    assert f"oifname {interfaces} reject with icmpx type admin-prohibited" in lines
    assert "ip daddr 100.64.0.0/10 reject with icmpx type admin-prohibited" in lines
    # Nor to a cloud host's metadata service (link-local), whatever a network allows.
    assert "ip daddr 169.254.0.0/16 reject with icmpx type admin-prohibited" in lines
    assert lines.index("ip daddr 169.254.0.0/16 reject with icmpx type admin-prohibited") < (
        lines.index("iifname vmap @allow")
    )
    assert "elements = { 203.0.113.7 . 5432 }" in lines
    assert "elements = { 2001:db8::7 . 6379 }" in lines
    assert "ip daddr . tcp dport @platform4 reject with icmpx type admin-prohibited" in lines
    assert f"ip saddr {PLAN.subnet} oifname != {interfaces} masquerade" in lines
    # The refusals come before anything is accepted.
    out = lines.index("chain environment_out {")
    assert lines.index("iifname vmap @allow", out) > lines.index(
        "ip6 daddr . tcp dport @platform6 reject with icmpx type admin-prohibited", out
    )


def test_a_named_network_accepts_its_rules_and_is_sealed_without_internet() -> None:
    policy = NetworkPolicy(
        name="vpc-db",
        internet=False,
        allow=(
            EgressRule(ipaddress.ip_network("10.1.2.3/32"), (5432, 5433)),
            EgressRule(ipaddress.ip_network("192.0.2.0/24")),
        ),
    )
    chain = firewall.network_chain_script(PLAN, "network_1", policy)
    nft_accepts(firewall.table_script(PLAN, [], [9000]) + chain)
    assert chain.splitlines() == [
        f"add chain inet {PLAN.table} network_1",
        f"add rule inet {PLAN.table} network_1 ip daddr 10.1.2.3/32 tcp dport {{ 5432, 5433 }} "
        "accept",
        f"add rule inet {PLAN.table} network_1 ip daddr 10.1.2.3/32 udp dport {{ 5432, 5433 }} "
        "accept",
        f"add rule inet {PLAN.table} network_1 ip daddr 192.0.2.0/24 accept",
        # To the host itself, only the rules that name one address.
        f"add chain inet {PLAN.table} network_1_host",
        f"add rule inet {PLAN.table} network_1_host ip daddr 10.1.2.3/32 tcp dport "
        "{ 5432, 5433 } accept",
        f"add rule inet {PLAN.table} network_1_host ip daddr 10.1.2.3/32 udp dport "
        "{ 5432, 5433 } accept",
    ]
    joined = firewall.join_script(PLAN, ["lnv050001", "lnv050002"], "network_1", internet=False)
    assert '"lnv050001" : jump network_1, "lnv050002" : jump network_1' in joined
    assert '"lnv050001" : jump network_1_host, "lnv050002" : jump network_1_host' in joined
    assert f'add element inet {PLAN.table} sealed {{ "lnv050001", "lnv050002" }}' in joined
    with_internet = firewall.join_script(PLAN, ["lnv050001"], "network_1", internet=True)
    assert "sealed" not in with_internet
    assert firewall.join_script(PLAN, [], "network_1", internet=False) == ""


def test_platform_endpoints_have_their_ports_and_leave_loopback_out() -> None:
    urls = [
        "postgresql://u@127.0.0.1:5432/db",
        "postgresql://u@192.0.2.8/db",
        "redis://192.0.2.9:6380/0",
        None,
        "redis://[::1]",
    ]
    assert platform_endpoints(urls) == (("192.0.2.8", 5432), ("192.0.2.9", 6380))


def test_nft_errors_name_what_nft_said() -> None:
    if NFT is None or os.geteuid() != 0:
        pytest.skip("needs root and nft")
    with pytest.raises(firewall.FirewallError, match="nft: "):
        firewall.nft("add rule inet no_such_table_here input accept\n", NFT)


def test_the_host_refuses_platform_ports_and_broad_rules_before_any_network() -> None:
    script = firewall.table_script(PLAN, [], [9000], platform_ports=[9000, 5432, 6379])
    nft_accepts(script)
    lines = [line.strip() for line in script.splitlines()]
    assert "elements = { 5432, 6379, 9000 }" in lines
    to_host = lines.index("chain environment_to_host {")
    gateway = lines.index(f"ip daddr {PLAN.gateway_address} tcp dport @gateway_ports accept")
    refusal = lines.index("fib daddr type local tcp dport @platform_ports reject with tcp reset")
    allowed = lines.index("iifname vmap @allow_host", to_host)
    # The gateway first (its port may be the API's), then the platform's ports, then what
    # the network names by the host's address; the broad `allow` map never sees the host.
    assert to_host < gateway < refusal < allowed
    assert "iifname vmap @allow" not in lines[to_host : lines.index("}", allowed)]


def test_platform_ports_include_the_api_and_loopback_services() -> None:
    urls = ["postgresql://u@127.0.0.1/db", "redis://[::1]:6380", None, "sqlite:///x.db"]
    assert platform_ports(9000, urls) == (5432, 6380, 9000)
