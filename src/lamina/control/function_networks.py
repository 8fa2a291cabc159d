"""A function's VpcConfig and FileSystemConfigs against the operator's networks file:
checked when they change, turned into the sandbox's network and mounts at a cold start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lamina.arns import Account
from lamina.control.file_systems import (
    CLIENT_MOUNT,
    CLIENT_WRITE,
    FILE_SYSTEM_REFUSED,
    EFSMountFailure,
    check_file_system_configs,
    file_system_arn,
    file_system_mounts,
)
from lamina.control.networks import NetworkCatalog
from lamina.control.vpc import EC2Unexpected, check_vpc_config, network_policy
from lamina.model.functions import FunctionConfig
from lamina.model.networks import FileSystemMount, NetworkPolicy

if TYPE_CHECKING:
    # Only a type here: the role's view imports the function store's modules.
    from lamina.control.role_permissions import RolePermissions


@dataclass(frozen=True)
class Placement:
    """Where a function's environments run: their network (None: the default egress) and
    the access points they mount."""

    network: NetworkPolicy | None = None
    file_systems: tuple[FileSystemMount, ...] = ()


class FunctionNetworks:
    """The operator's networks, as CreateFunction/UpdateFunctionConfiguration and cold
    starts see them."""

    def __init__(
        self, catalog: NetworkCatalog, account: Account, roles: RolePermissions | None = None
    ) -> None:
        """`roles`: enforced mode's view of execution roles, which decides at each cold start
        whether a function may mount its file system (ClientMount) and write to it
        (ClientWrite), as EFS decides when Lambda mounts it."""
        self.catalog = catalog
        self._account = account
        self._roles = roles

    def checked(self, config: FunctionConfig, changes: Mapping[str, Any]) -> FunctionConfig:
        """`config` with its VpcConfig in the stored shape, or AWS's refusal. Only what the
        request changes is checked: ids the operator removed since do not block other
        updates (invocations report them)."""
        if "vpc_config" in changes and config.vpc_config is not None:
            config = replace(config, vpc_config=check_vpc_config(self.catalog, config.vpc_config))
        if "vpc_config" in changes or "file_system_configs" in changes:
            check_file_system_configs(
                self.catalog, self._account, config.file_system_configs, config.vpc_config
            )
        return config

    def placement(self, config: FunctionConfig) -> Placement:
        """Resolved at each cold start (never on the warm path); raises the error Invoke
        returns when an id the function names is gone."""
        if config.vpc_config is None and not config.file_system_configs:
            return Placement()
        mounts = file_system_mounts(self.catalog, self._account, config.file_system_configs)
        return Placement(
            network_policy(self.catalog, config.vpc_config),
            tuple(self._as_role(config, mount) for mount in mounts),
        )

    def _as_role(self, config: FunctionConfig, mount: FileSystemMount) -> FileSystemMount:
        roles = self._roles
        if roles is None or not config.role:
            return mount
        arn = file_system_arn(self.catalog, self._account, mount.access_point_arn)
        if arn is None:
            return mount  # file_system_mounts refused an unknown access point already
        name = config.function_name
        if not roles.allows(config.role, name, CLIENT_MOUNT, arn):
            raise EFSMountFailure(FILE_SYSTEM_REFUSED.format(arn=arn))
        return replace(mount, read_only=not roles.allows(config.role, name, CLIENT_WRITE, arn))


def refuse_unenforced(
    placement: Placement, backend: str, isolates_network: bool, mounts: bool
) -> None:
    """Fail a cold start whose placement the isolation `backend` would silently ignore: a VPC
    without a network namespace would reach the host's whole network, and an access point
    without a mount namespace would not be there at all."""
    doctor = "Run `lamina doctor` to see what this host's isolation provides."
    if placement.file_systems and not mounts:
        arn = placement.file_systems[0].access_point_arn
        raise EFSMountFailure(
            f"Lamina cannot mount the file system of access point {arn}: the {backend} "
            "isolation backend gives environments no mounts of their own. " + doctor
        )
    if placement.network is not None and not isolates_network:
        raise EC2Unexpected(
            f"Lamina cannot place this function's environments in its VPC "
            f"({placement.network.name}): the {backend} isolation backend gives them no "
            "network of their own here, so its security groups could not be enforced. " + doctor
        )
