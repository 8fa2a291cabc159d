"""`VpcConfig`: checked against the operator's networks, and the network it places a
function's environments in."""

from __future__ import annotations

from typing import Any

from lamina.control.networks import NetworkCatalog, Vpc
from lamina.errors import InvalidParameterValue, LaminaError
from lamina.model.networks import EgressRule, NetworkPolicy

SUBNETS = "SubnetIds"
SECURITY_GROUPS = "SecurityGroupIds"
VPC_ID = "VpcId"
IPV6 = "Ipv6AllowedForDualStack"

_COEXIST = "SubnetIds and SecurityIds must coexist or be both empty list."
_SUBNET_NOT_FOUND = (
    "Error occurred while DescribeSubnets. EC2 Error Code: InvalidSubnetID.NotFound. "
    "EC2 Error Message: The subnet ID '{}' does not exist"
)
_GROUP_NOT_FOUND = (
    "Error occurred while DescribeSecurityGroups. EC2 Error Code: InvalidGroup.NotFound. "
    "EC2 Error Message: The security group '{}' does not exist"
)


class InvalidSubnetID(LaminaError):
    """A subnet the function names is gone (Invoke's 502)."""

    code = "InvalidSubnetIDException"
    status = 502


class InvalidSecurityGroupID(LaminaError):
    """A security group the function names is gone (Invoke's 502)."""

    code = "InvalidSecurityGroupIDException"
    status = 502


class EC2Unexpected(LaminaError):
    """The function's VPC cannot be set up for its environments (Invoke's 502)."""

    code = "EC2UnexpectedException"
    status = 502


def empty_vpc_config() -> dict[str, Any]:
    """What AWS stores and returns once a function's VpcConfig is removed."""
    return {SUBNETS: [], SECURITY_GROUPS: [], VPC_ID: "", IPV6: False}


def in_vpc(vpc_config: dict[str, Any] | None) -> bool:
    return bool(vpc_config and vpc_config.get(SUBNETS))


def check_vpc_config(catalog: NetworkCatalog, given: dict[str, Any]) -> dict[str, Any]:
    """The VpcConfig to store (the response's shape, VpcId included), or AWS's refusal."""
    subnets = list(given.get(SUBNETS) or [])
    groups = list(given.get(SECURITY_GROUPS) or [])
    if not subnets and not groups:
        return empty_vpc_config()
    if not subnets or not groups:
        raise InvalidParameterValue(_COEXIST)
    vpcs: list[Vpc] = []
    for subnet in subnets:
        vpc = catalog.subnet_vpc(subnet)
        if vpc is None:
            raise InvalidParameterValue(_SUBNET_NOT_FOUND.format(subnet))
        vpcs.append(vpc)
    for group in groups:
        if catalog.security_group(group) is None:
            raise InvalidParameterValue(_GROUP_NOT_FOUND.format(group))
    vpc = vpcs[0]
    if any(other.name != vpc.name for other in vpcs):
        raise InvalidParameterValue("Subnets are required to be in the same VPC.")
    for group in groups:
        found = catalog.security_group(group)
        if found is not None and found.vpc != vpc.name:
            raise InvalidParameterValue("Security Groups are required to be in the same VPC.")
    return {SUBNETS: subnets, SECURITY_GROUPS: groups, VPC_ID: vpc.id, IPV6: bool(given.get(IPV6))}


def vpc_config_view(stored: dict[str, Any]) -> dict[str, Any]:
    """GetFunctionConfiguration's VpcConfig for a stored one (older records lack VpcId)."""
    return {
        SUBNETS: list(stored.get(SUBNETS) or []),
        SECURITY_GROUPS: list(stored.get(SECURITY_GROUPS) or []),
        VPC_ID: stored.get(VPC_ID) or "",
        IPV6: bool(stored.get(IPV6)),
    }


def network_policy(catalog: NetworkCatalog, stored: dict[str, Any] | None) -> NetworkPolicy | None:
    """The network a function's environments run in (None: the default egress), or the
    502 Invoke returns when a subnet or security group it names no longer exists."""
    if not in_vpc(stored):
        return None
    assert stored is not None
    vpc: Vpc | None = None
    for subnet in stored[SUBNETS]:
        vpc = catalog.subnet_vpc(subnet)
        if vpc is None:
            raise InvalidSubnetID(_SUBNET_NOT_FOUND.format(subnet))
    assert vpc is not None
    allow: dict[EgressRule, None] = {}
    for group_id in stored.get(SECURITY_GROUPS) or ():
        group = vpc.security_groups.get(group_id)
        if group is None:
            raise InvalidSecurityGroupID(_GROUP_NOT_FOUND.format(group_id))
        allow.update(dict.fromkeys(group.egress))
    return NetworkPolicy(name=vpc.name, internet=vpc.internet, allow=tuple(allow), dns=vpc.dns)
