"""The address plan: every server's block of 100.64.0.0/10, its names and its links."""

from __future__ import annotations

import ipaddress

import pytest

from lamina.sandbox.network.addresses import BLOCKS, CGNAT, MAX_SLOTS, AddressPlan


def test_blocks_tile_the_carrier_grade_nat_range_without_overlap() -> None:
    subnets = [AddressPlan(block).subnet for block in range(BLOCKS)]
    assert all(subnet.subnet_of(CGNAT) for subnet in subnets)
    assert sum(subnet.num_addresses for subnet in subnets) == CGNAT.num_addresses
    assert len({subnet.network_address for subnet in subnets}) == BLOCKS


def test_a_slot_is_a_point_to_point_link_inside_its_block() -> None:
    plan = AddressPlan(3)
    first, last = plan.slot(1), plan.slot(MAX_SLOTS)
    for link in (first, last):
        host = ipaddress.ip_address(link.host_address)
        environment = ipaddress.ip_address(link.environment_address)
        assert host in plan.subnet and environment in plan.subnet
        assert int(environment) == int(host) + 1 and int(host) % 2 == 0
    # The gateway (address 0 of the block) belongs to no slot.
    assert plan.gateway_address == str(plan.subnet.network_address)
    assert first.host_address != plan.gateway_address
    assert ipaddress.ip_address(last.environment_address) == plan.subnet.broadcast_address


def test_names_fit_the_kernel_and_tell_blocks_apart() -> None:
    plan, other = AddressPlan(0x1A), AddressPlan(0x1B)
    link = plan.slot(MAX_SLOTS)
    assert len(link.host_interface) <= 15
    assert link.host_interface.startswith(plan.interface_prefix)
    assert not link.host_interface.startswith(other.interface_prefix)
    assert link.netns == f"lamina-{0x1A}-{MAX_SLOTS}"
    assert link.netns_path == f"/run/netns/lamina-{0x1A}-{MAX_SLOTS}"
    assert plan.table == "lamina_26"


@pytest.mark.parametrize("block", [-1, BLOCKS])
def test_a_block_outside_the_range_is_refused(block: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        AddressPlan(block)


@pytest.mark.parametrize("index", [0, MAX_SLOTS + 1])
def test_a_slot_outside_the_block_is_refused(index: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        AddressPlan(0).slot(index)
