"""`FileSystemConfigs`: access points checked against the operator's file systems, and the
mounts a function's environments get."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from lamina.arns import Account
from lamina.control.networks import AccessPoint, NetworkCatalog
from lamina.control.vpc import in_vpc
from lamina.errors import InvalidParameterValue, LaminaError
from lamina.model.networks import FileSystemMount

# Lamina's wording for an access point the role may not mount, in the words of the EC2
# refusal: AWS finds out when it mounts the file system at a cold start
# (EFSMountFailureException); Lamina refuses the configuration too, and checks again at cold
# starts (the role's policies may have changed since).
FILE_SYSTEM_REFUSED = (
    "The provided execution role does not have permissions to call ClientMount on {arn}"
)
# What a function's role needs to mount an access point's file system, and to write to it
# (without it EFS mounts read-only).
CLIENT_MOUNT = "elasticfilesystem:ClientMount"
CLIENT_WRITE = "elasticfilesystem:ClientWrite"

ARN = "Arn"
LOCAL_MOUNT_PATH = "LocalMountPath"
_SERVICE = "elasticfilesystem"


class EFSMountFailure(LaminaError):
    """The access point a function mounts is gone (Invoke's 403)."""

    code = "EFSMountFailureException"
    status = 403
    error_type = "User"


def check_file_system_configs(
    catalog: NetworkCatalog,
    account: Account,
    configs: Sequence[dict[str, Any]],
    vpc_config: dict[str, Any] | None,
) -> None:
    """AWS's refusals of access points a function cannot mount."""
    for config in configs:
        arn = config[ARN]
        path = config[LOCAL_MOUNT_PATH]
        if posixpath.basename(path) in {".", ".."}:
            # The model's pattern lets these through; they would name /mnt or / itself.
            raise InvalidParameterValue(
                f"LocalMountPath {path} must name a directory under /mnt/, not /mnt itself "
                "or its parent."
            )
        if not in_vpc(vpc_config):
            raise InvalidParameterValue(
                f"Function must be configured to execute in a VPC to reference access point {arn}."
            )
        access_point = _access_point(catalog, account, arn)
        if access_point is None:
            raise InvalidParameterValue(
                "Error occurred while DescribeAccessPoints. EFS Error Code: AccessPointNotFound. "
                f"EFS Error Message: Access point '{_resource_id(arn)}' does not exist"
            )
        assert vpc_config is not None
        file_system = catalog.file_systems[access_point.file_system]
        vpc = catalog.vpc_by_id(vpc_config.get("VpcId") or "")
        if file_system.vpcs is not None and (vpc is None or vpc.name not in file_system.vpcs):
            fs_arn = _arn(account, f"file-system/{file_system.id}")
            raise InvalidParameterValue(
                f"EFS file system {fs_arn} referenced by access point {arn} must have mount "
                "targets created in all availability zones the function will execute in."
            )


def file_system_mounts(
    catalog: NetworkCatalog, account: Account, configs: Sequence[dict[str, Any]]
) -> tuple[FileSystemMount, ...]:
    """The mounts of a function's environments, or the error Invoke returns when an access
    point it names no longer exists."""
    mounts = []
    for config in configs:
        arn = config[ARN]
        access_point = _access_point(catalog, account, arn)
        if access_point is None:
            raise EFSMountFailure(
                f"The function couldn't mount the file system of access point {arn}: it no "
                "longer exists."
            )
        root = catalog.file_systems[access_point.file_system].path
        host_path = posixpath.normpath(f"{root}/{access_point.root_directory.lstrip('/')}")
        mounts.append(
            FileSystemMount(
                access_point_arn=arn,
                host_path=host_path,
                mount_path=config[LOCAL_MOUNT_PATH],
                uid=access_point.uid,
                gid=access_point.gid,
                permissions=access_point.permissions,
            )
        )
    return tuple(mounts)


def file_system_arn(catalog: NetworkCatalog, account: Account, access_point_arn: str) -> str | None:
    """The ARN of the file system an access point enters (None: no such access point), the
    resource EFS decides `elasticfilesystem:Client*` actions on."""
    access_point = _access_point(catalog, account, access_point_arn)
    if access_point is None:
        return None
    return _arn(account, f"file-system/{access_point.file_system}")


def _access_point(catalog: NetworkCatalog, account: Account, arn: str) -> AccessPoint | None:
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != _SERVICE or not parts[5].startswith("access-point/"):
        return None
    if parts[3] != account.region or parts[4] != account.account_id:
        return None
    return catalog.access_points.get(_resource_id(arn))


def _resource_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _arn(account: Account, resource: str) -> str:
    return f"arn:aws:{_SERVICE}:{account.region}:{account.account_id}:{resource}"
