"""The nftables table that fences one server's environments in.

One table per block (`inet lamina_<block>`), created when the server starts and deleted when
it stops. Traffic from an environment's interface:
- to the host itself (loopback services, the host's own addresses, the platform's ports): only
  the gateway address on the gateway ports, and what the environment's network names by the
  host's own address (a /32 or /128 rule: the operator's "database host" being this host).
  The platform's ports (its API, store and Redis) are refused on every host address first,
  whatever the network says, and a broad rule (0.0.0.0/0, 10.0.0.0/8) never reaches the host:
  it is evaluated only for traffic that leaves the host;
- to another environment (of this server or another, anywhere in 100.64.0.0/10) or to the
  platform's store and Redis (their address and port): refused;
- elsewhere: the default network reaches whatever the host can reach, masqueraded behind the
  host's address; a named network only what its rules allow, plus the outside when it has
  `internet`.
Before any of that, a packet from an environment's interface must carry that environment's
own address as its source (the `sources` set, one element per slot made): a function that
gained privileges in its namespace (SnapStart's init code can) cannot send spoofed or
un-NATed packets, nor pass for another environment; and no IPv6 leaves an environment.
Refusals answer at once (ICMP administratively prohibited, TCP reset on the host) so a
function fails fast rather than waiting for a timeout. Named networks are chain pairs (all
their rules for traffic through the host, their host rules for traffic to it), and a slot
joins one by elements of the `allow` and `allow_host` verdict maps keyed by its interface
name: nothing is evaluated per packet beyond one map lookup, and nothing is done per cold
start.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Sequence

from lamina.model.networks import EgressRule, NetworkPolicy
from lamina.sandbox.network.addresses import CGNAT, AddressPlan

_REFUSE = "reject with icmpx type admin-prohibited"
# Link-local addresses: a cloud host's instance metadata service (169.254.169.254) hands out
# the host's own credentials. Lambda's environments cannot reach it; neither can Lamina's,
# whatever a network allows.
LINK_LOCAL = "169.254.0.0/16"


class FirewallError(RuntimeError):
    """nft refused a change."""


def nft(script: str, nft_path: str = "nft") -> None:
    """Apply `script` as one nftables transaction (all of it or nothing)."""
    result = subprocess.run(
        [nft_path, "-f", "-"], input=script, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise FirewallError(f"nft: {result.stderr.strip() or result.returncode}")


def _endpoints(endpoints: Iterable[tuple[str, int]], version: int) -> list[str]:
    return sorted(
        {
            f"{host} . {port}"
            for host, port in endpoints
            if ipaddress.ip_address(host).version == version
        }
    )


def table_script(
    plan: AddressPlan,
    platform: Sequence[tuple[str, int]],
    gateway_ports: Iterable[int],
    platform_ports: Iterable[int] = (),
) -> str:
    """The whole table, as `nft -f` reads it (a leftover of the same name is replaced).
    `platform_ports` are refused on the host's own addresses whatever a network allows."""
    interfaces = f'"{plan.interface_pattern}"'
    platform4 = _endpoints(platform, 4)
    platform6 = _endpoints(platform, 6)
    ports = sorted(set(gateway_ports))
    host_ports = sorted(set(platform_ports))

    def elements(values: Sequence[object]) -> str:
        return f"elements = {{ {', '.join(str(value) for value in values)} }}\n" if values else ""

    return f"""
table inet {plan.table}
delete table inet {plan.table}
table inet {plan.table} {{
set gateway_ports {{
type inet_service
{elements(ports)}}}
set platform4 {{
type ipv4_addr . inet_service
{elements(platform4)}}}
set platform6 {{
type ipv6_addr . inet_service
{elements(platform6)}}}
set platform_ports {{
type inet_service
{elements(host_ports)}}}
map allow {{
type ifname : verdict
}}
map allow_host {{
type ifname : verdict
}}
set sealed {{
type ifname
}}
set sources {{
type ifname . ipv4_addr
}}
chain prerouting {{
type filter hook prerouting priority -300; policy accept;
iifname {interfaces} jump environment_source
}}
chain environment_source {{
meta nfproto ipv6 drop
iifname . ip saddr @sources return
drop
}}
chain input {{
type filter hook input priority -10; policy accept;
iifname {interfaces} jump environment_to_host
}}
chain environment_to_host {{
ct state established,related accept
ip daddr {plan.gateway_address} tcp dport @gateway_ports accept
fib daddr type local tcp dport @platform_ports reject with tcp reset
iifname vmap @allow_host
meta l4proto tcp reject with tcp reset
{_REFUSE}
}}
chain forward {{
type filter hook forward priority -10; policy accept;
iifname {interfaces} jump environment_out
oifname {interfaces} ct state established,related accept
oifname {interfaces} drop
}}
chain environment_out {{
oifname {interfaces} {_REFUSE}
ip daddr {CGNAT} {_REFUSE}
ip daddr {LINK_LOCAL} {_REFUSE}
ip daddr . tcp dport @platform4 {_REFUSE}
ip6 daddr . tcp dport @platform6 {_REFUSE}
ct state established,related accept
iifname vmap @allow
iifname @sealed {_REFUSE}
}}
chain postrouting {{
type nat hook postrouting priority srcnat; policy accept;
ip saddr {plan.subnet} oifname != {interfaces} masquerade
}}
}}
"""


def _rule_lines(rule: EgressRule) -> list[str]:
    family = "ip" if rule.cidr.version == 4 else "ip6"
    match = f"{family} daddr {rule.cidr}"
    if not rule.ports:
        return [f"{match} accept"]
    ports = ", ".join(str(port) for port in sorted(set(rule.ports)))
    return [f"{match} tcp dport {{ {ports} }} accept", f"{match} udp dport {{ {ports} }} accept"]


def host_chain(chain: str) -> str:
    """The chain of a named network's rules for the host's own addresses."""
    return f"{chain}_host"


def network_chain_script(plan: AddressPlan, chain: str, policy: NetworkPolicy) -> str:
    """A named network's chains: `chain` accepts what its rules allow through the host, its
    host chain only what its single-address rules allow to the host itself; both return
    otherwise (the caller refuses the rest, or lets it out when the network has `internet`)."""
    single = [rule for rule in policy.allow if rule.cidr.prefixlen == rule.cidr.max_prefixlen]
    script = ""
    for name, rules in ((chain, policy.allow), (host_chain(chain), single)):
        lines = [line for rule in rules for line in _rule_lines(rule)]
        body = "".join(f"add rule inet {plan.table} {name} {line}\n" for line in lines)
        script += f"add chain inet {plan.table} {name}\n{body}"
    return script


def join_script(plan: AddressPlan, interfaces: Sequence[str], chain: str, internet: bool) -> str:
    """Put the slots behind `interfaces` in the named network of `chain`."""
    if not interfaces:
        return ""
    names = ", ".join(f'"{name}"' for name in interfaces)
    verdicts = ", ".join(f'"{name}" : jump {chain}' for name in interfaces)
    to_host = ", ".join(f'"{name}" : jump {host_chain(chain)}' for name in interfaces)
    script = f"add element inet {plan.table} allow {{ {verdicts} }}\n"
    script += f"add element inet {plan.table} allow_host {{ {to_host} }}\n"
    if not internet:
        script += f"add element inet {plan.table} sealed {{ {names} }}\n"
    return script


def open_port_script(plan: AddressPlan, port: int) -> str:
    return f"add element inet {plan.table} gateway_ports {{ {port} }}\n"


def delete_table(plan: AddressPlan, nft_path: str = "nft") -> None:
    """Remove the table if it is there (a crashed server's leftover, or ours at close)."""
    subprocess.run(
        [nft_path, "delete", "table", "inet", plan.table],
        capture_output=True,
        timeout=30,
        check=False,
    )


def sources_script(plan: AddressPlan, slots: Iterable[tuple[str, str]]) -> str:
    """Let each (host interface, environment address) of new slots send from that address
    (see `sources`): without its element, nothing of a slot's gets past prerouting."""
    elements = ", ".join(f'"{interface}" . {address}' for interface, address in slots)
    return f"add element inet {plan.table} sources {{ {elements} }}\n" if elements else ""
