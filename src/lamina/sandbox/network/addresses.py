"""Where every environment's network namespace sits: names and addresses, from the block.

Each server claims a block of environment uids (see `namespace.UidPool`); the same block
number gives it a /18 of the carrier-grade NAT range 100.64.0.0/10 (256 blocks of /18 fill
it exactly), its nftables table and the prefix of its interface names, so two servers on one
host never collide and a server that claims a crashed one's block knows what to remove.

Inside a block, slot `s` (from 1) is a /31 point-to-point link: the host's end is the even
address, the environment's the odd one. Address 0 of the block is the gateway: an address on
the host's loopback that only this server's environments route to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
BLOCKS = 256
_BLOCK_PREFIX = 18
BLOCK_SIZE = 1 << (32 - _BLOCK_PREFIX)
# Slot 0 would hold the gateway; every other /31 of the block is an environment's link.
MAX_SLOTS = BLOCK_SIZE // 2 - 1
# Interface names: "lnv" + block + slot for the host's end of each veth, 9 characters (the
# kernel allows 15).
VETH_PREFIX = "lnv"
NETNS_PREFIX = "lamina"
NETNS_DIR = "/run/netns"
# The Runtime API inside every environment's namespace, where AWS has it.
RUNTIME_API_HOST = "127.0.0.1"
RUNTIME_API_PORT = 9001


@dataclass(frozen=True)
class SlotAddresses:
    """One environment's link: namespace, interface and both ends' addresses."""

    index: int
    netns: str
    host_interface: str
    host_address: str
    environment_address: str

    @property
    def netns_path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"


@dataclass(frozen=True)
class AddressPlan:
    """The names and addresses of one block."""

    block: int

    def __post_init__(self) -> None:
        if not 0 <= self.block < BLOCKS:
            raise ValueError(f"network block {self.block} is outside 0..{BLOCKS - 1}")

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        base = int(CGNAT.network_address) + self.block * BLOCK_SIZE
        return ipaddress.IPv4Network((base, _BLOCK_PREFIX))

    @property
    def gateway_address(self) -> str:
        return str(self.subnet.network_address)

    @property
    def interface_pattern(self) -> str:
        """Every host-side interface of this block, as nftables matches a name prefix."""
        return f"{VETH_PREFIX}{self.block:02x}*"

    @property
    def interface_prefix(self) -> str:
        return f"{VETH_PREFIX}{self.block:02x}"

    @property
    def netns_prefix(self) -> str:
        return f"{NETNS_PREFIX}-{self.block}-"

    @property
    def table(self) -> str:
        return f"lamina_{self.block}"

    def slot(self, index: int) -> SlotAddresses:
        if not 1 <= index <= MAX_SLOTS:
            raise ValueError(f"slot {index} is outside 1..{MAX_SLOTS}")
        host = int(self.subnet.network_address) + 2 * index
        return SlotAddresses(
            index=index,
            netns=f"{self.netns_prefix}{index}",
            host_interface=f"{self.interface_prefix}{index:04x}",
            host_address=str(ipaddress.IPv4Address(host)),
            environment_address=str(ipaddress.IPv4Address(host + 1)),
        )
