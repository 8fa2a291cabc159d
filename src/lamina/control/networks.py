"""The operator's networks file: VPC-style networks and EFS-style file systems.

Functions name these with AWS's identifiers: `VpcConfig` lists subnet and security-group
ids, `FileSystemConfigs` an access point's ARN. The file (TOML, `LAMINA_NETWORKS_FILE`, else
`<data dir>/networks.toml` when it exists) says what those ids are here:

    [vpcs.vpc-db]
    id = "vpc-0a1b2c3d4e5f60718"
    internet = false
    dns = ["192.0.2.53"]
    subnets = { "subnet-0a1b2c3d4e5f60718" = "10.0.1.0/24" }
    [vpcs.vpc-db.security_groups.sg-0a1b2c3d4e5f60718]
    egress = ["192.0.2.2/32:5432", "10.0.0.0/8"]

    [file_systems.fs-0a1b2c3d]
    path = "/srv/lamina/efs/fs-0a1b2c3d"
    vpcs = ["vpc-db"]
    [access_points.fsap-0a1b2c3d4e5f60718]
    file_system = "fs-0a1b2c3d"
    root_directory = "/shared"
    uid = 1000
    gid = 1000
    permissions = "0755"

It is read once when the server starts; a malformed file stops the start with a message
naming the file and the entry. Ids must match the patterns of the Lambda API's model (a
function could never name any other), and access points never run as root (uid or gid 0
could leave setuid-root files in a host directory).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina.model.networks import EgressRule, IPNetwork

NETWORKS_FILE_NAME = "networks.toml"

# The id patterns of botocore's models: Lambda's SubnetId, SecurityGroupId and the access
# point of FileSystemArn; EFS's FileSystemId (Lambda never names a file system).
SUBNET_ID = re.compile(r"subnet-[0-9a-z]*")
SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-zA-Z]*")
ACCESS_POINT_ID = re.compile(r"fsap-[a-f0-9]{17}")
FILE_SYSTEM_ID = re.compile(r"fs-[0-9a-f]{8,40}")

log = logging.getLogger("lamina.networks")


class NetworksFileError(Exception):
    """The networks file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class SecurityGroup:
    """A security group: the destinations its functions may open connections to."""

    id: str
    vpc: str
    egress: tuple[EgressRule, ...] = ()


@dataclass(frozen=True)
class Vpc:
    """One operator-declared network, under the operator's name for it."""

    name: str
    id: str
    internet: bool = False
    dns: tuple[str, ...] = ()
    # subnet id -> its CIDR (informational: environments get their addresses elsewhere)
    subnets: Mapping[str, str] = field(default_factory=dict)
    security_groups: Mapping[str, SecurityGroup] = field(default_factory=dict)


@dataclass(frozen=True)
class FileSystem:
    """A host directory standing in for an EFS file system; `vpcs` are where it has mount
    targets (None: every VPC)."""

    id: str
    path: Path
    vpcs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AccessPoint:
    """An entry into a file system: its root directory, created on first use with
    `permissions`, and the POSIX user every file operation runs as."""

    id: str
    file_system: str
    root_directory: str
    uid: int
    gid: int
    permissions: int = 0o755


@dataclass(frozen=True)
class NetworkCatalog:
    """Everything the networks file declares, indexed by AWS id."""

    vpcs: Mapping[str, Vpc] = field(default_factory=dict)
    file_systems: Mapping[str, FileSystem] = field(default_factory=dict)
    access_points: Mapping[str, AccessPoint] = field(default_factory=dict)
    source: Path | None = None

    def subnet_vpc(self, subnet_id: str) -> Vpc | None:
        for vpc in self.vpcs.values():
            if subnet_id in vpc.subnets:
                return vpc
        return None

    def security_group(self, group_id: str) -> SecurityGroup | None:
        for vpc in self.vpcs.values():
            group = vpc.security_groups.get(group_id)
            if group is not None:
                return group
        return None

    def vpc_by_id(self, vpc_id: str) -> Vpc | None:
        return next((vpc for vpc in self.vpcs.values() if vpc.id == vpc_id), None)


def networks_path(configured: Path | None, data_dir: Path) -> Path | None:
    """The file to read: the configured one, else the data directory's when it exists."""
    if configured is not None:
        return configured
    default = data_dir / NETWORKS_FILE_NAME
    return default if default.is_file() else None


def load_catalog(path: Path | None) -> NetworkCatalog:
    """Read and check the networks file (an empty catalog without one)."""
    if path is None:
        return NetworkCatalog()
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise NetworksFileError(f"{path}: cannot be read: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise NetworksFileError(f"{path}: not valid TOML: {error}") from error
    try:
        return parse_catalog(document, path)
    except _EntryError as error:
        raise NetworksFileError(f"{path}: {error}") from error


class _EntryError(Exception):
    pass


def parse_catalog(document: Mapping[str, Any], source: Path | None = None) -> NetworkCatalog:
    unknown = set(document) - {"vpcs", "file_systems", "access_points"}
    if unknown:
        raise _EntryError(f"unknown section {sorted(unknown)[0]!r}")
    vpcs = {name: _vpc(name, entry) for name, entry in _table(document, "vpcs", "the file").items()}
    _unique(vpcs)
    file_systems = {
        fs_id: _file_system(fs_id, entry, vpcs)
        for fs_id, entry in _table(document, "file_systems", "the file").items()
    }
    access_points = {
        ap_id: _access_point(ap_id, entry, file_systems)
        for ap_id, entry in _table(document, "access_points", "the file").items()
    }
    return NetworkCatalog(vpcs, file_systems, access_points, source)


def _vpc(name: str, entry: Any) -> Vpc:
    where = f"vpcs.{name}"
    entry = _entry(entry, where, {"id", "internet", "dns", "subnets", "security_groups"})
    vpc_id = _string(entry, "id", where)
    if not vpc_id.startswith("vpc-"):
        raise _EntryError(f"{where}.id: {vpc_id!r} is not a VPC id (vpc-…)")
    subnets: dict[str, str] = {}
    for subnet_id, cidr in _table(entry, "subnets", where).items():
        if not SUBNET_ID.fullmatch(subnet_id):
            raise _EntryError(
                f"{where}.subnets: {subnet_id!r} is not a subnet id (subnet- and lower-case "
                "letters or digits)"
            )
        subnets[subnet_id] = str(_network(cidr, f"{where}.subnets.{subnet_id}"))
    groups = {
        group_id: _security_group(group_id, name, group, f"{where}.security_groups.{group_id}")
        for group_id, group in _table(entry, "security_groups", where).items()
    }
    dns = entry.get("dns", [])
    if not isinstance(dns, list):
        raise _EntryError(f"{where}.dns: expected a list of resolver addresses")
    for address in dns:
        try:
            ipaddress.ip_address(address)
        except ValueError as error:
            raise _EntryError(f"{where}.dns: {address!r} is not an IP address") from error
    internet = entry.get("internet", False)
    if not isinstance(internet, bool):
        raise _EntryError(f"{where}.internet: expected true or false")
    return Vpc(name, vpc_id, internet, tuple(dns), subnets, groups)


def _security_group(group_id: str, vpc: str, entry: Any, where: str) -> SecurityGroup:
    if not SECURITY_GROUP_ID.fullmatch(group_id):
        raise _EntryError(
            f"{where}: {group_id!r} is not a security group id (sg- and letters or digits)"
        )
    entry = _entry(entry, where, {"egress"})
    egress = entry.get("egress", [])
    if not isinstance(egress, list):
        raise _EntryError(f'{where}.egress: expected a list of "cidr[:port[,port…]]"')
    return SecurityGroup(group_id, vpc, tuple(parse_egress(rule, where) for rule in egress))


def parse_egress(rule: Any, where: str = "egress") -> EgressRule:
    """`cidr`, `cidr:port` or `cidr:port,port` (an IPv6 CIDR with ports in brackets:
    `[2001:db8::/32]:443`); a bare address is a /32 (or /128)."""
    if not isinstance(rule, str) or not rule:
        raise _EntryError(f'{where}.egress: {rule!r} is not "cidr[:port[,port…]]"')
    target, ports_text = rule, ""
    if rule.startswith("["):
        target, _, rest = rule[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise _EntryError(f'{where}.egress: {rule!r} is not "[cidr]:port"')
        ports_text = rest[1:]
    elif rule.count(":") == 1:
        target, ports_text = rule.split(":")
    network = _network(target, f"{where}.egress {rule!r}")
    ports: list[int] = []
    for text in filter(None, ports_text.split(",")):
        if not text.strip().isdigit() or not 0 < int(text) < 65536:
            raise _EntryError(f"{where}.egress: {rule!r} has a port that is not 1-65535")
        ports.append(int(text))
    return EgressRule(network, tuple(ports))


def _file_system(fs_id: str, entry: Any, vpcs: Mapping[str, Vpc]) -> FileSystem:
    where = f"file_systems.{fs_id}"
    if not FILE_SYSTEM_ID.fullmatch(fs_id):
        raise _EntryError(
            f"{where}: {fs_id!r} is not a file system id (fs- and 8 to 40 lower-case hex digits)"
        )
    entry = _entry(entry, where, {"path", "vpcs"})
    path = Path(_string(entry, "path", where))
    if not path.is_absolute():
        raise _EntryError(f"{where}.path: {str(path)!r} is not an absolute path")
    if not path.is_dir():
        raise _EntryError(f"{where}.path: {str(path)!r} is not a directory")
    _warn_unless_nosuid(path, where)
    names = entry.get("vpcs")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise _EntryError(f"{where}.vpcs: expected a list of VPC names")
        for name in names:
            if name not in vpcs:
                raise _EntryError(f"{where}.vpcs: no VPC named {name!r} in [vpcs]")
    return FileSystem(fs_id, path, tuple(names) if names is not None else None)


def _access_point(ap_id: str, entry: Any, file_systems: Mapping[str, FileSystem]) -> AccessPoint:
    where = f"access_points.{ap_id}"
    if not ACCESS_POINT_ID.fullmatch(ap_id):
        raise _EntryError(
            f"{where}: {ap_id!r} is not an access point id (fsap- and 17 lower-case hex digits)"
        )
    entry = _entry(entry, where, {"file_system", "root_directory", "uid", "gid", "permissions"})
    file_system = _string(entry, "file_system", where)
    if file_system not in file_systems:
        raise _EntryError(f"{where}.file_system: no file system {file_system!r} in [file_systems]")
    root = entry.get("root_directory", "/")
    if not isinstance(root, str) or not root.startswith("/") or ".." in root.split("/"):
        raise _EntryError(f"{where}.root_directory: expected an absolute path without '..'")
    ids = []
    for key in ("uid", "gid"):
        value = entry.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32 - 1:
            raise _EntryError(f"{where}.{key}: expected a POSIX id (1-4294967294)")
        if value == 0:
            raise _EntryError(
                f"{where}.{key}: 0 is root; functions write through an access point as its "
                "user, and as root they could leave setuid-root files on the host: choose an "
                "unprivileged id"
            )
        ids.append(value)
    permissions = entry.get("permissions", "0755")
    if not isinstance(permissions, str) or not _is_octal_mode(permissions):
        raise _EntryError(f'{where}.permissions: expected an octal mode such as "0755"')
    return AccessPoint(ap_id, file_system, root, ids[0], ids[1], int(permissions, 8))


def _warn_unless_nosuid(path: Path, where: str) -> None:
    """Functions write into `path`: on a mount without nosuid and nodev a setuid program or
    a device node they leave there works for any host user who finds it."""
    flags = os.statvfs(path).f_flag
    if not (flags & os.ST_NOSUID and flags & os.ST_NODEV):
        log.warning(
            "%s.path: %s is not on a nosuid,nodev mount; files functions write there could "
            "act as setuid programs or devices for host users (mount it nosuid,nodev)",
            where,
            path,
        )


def _is_octal_mode(text: str) -> bool:
    return 3 <= len(text) <= 4 and all(char in "01234567" for char in text)


def _unique(vpcs: Mapping[str, Vpc]) -> None:
    seen: dict[str, str] = {}
    for vpc in vpcs.values():
        ids = [("id", vpc.id), *(("subnet", s) for s in vpc.subnets)]
        ids += [("security group", g) for g in vpc.security_groups]
        for kind, value in ids:
            if value in seen:
                raise _EntryError(
                    f"vpcs.{vpc.name}: {kind} {value!r} is already declared by vpcs.{seen[value]}"
                )
            seen[value] = vpc.name


def _entry(entry: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _EntryError(f"{where}: expected a table")
    unknown = set(entry) - allowed
    if unknown:
        raise _EntryError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    return entry


def _table(entry: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = entry.get(key, {})
    if not isinstance(value, dict):
        raise _EntryError(f"{where}: {key} must be a table")
    return value


def _string(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise _EntryError(f"{where}.{key}: expected a string")
    return value


def _network(text: Any, where: str) -> IPNetwork:
    if not isinstance(text, str):
        raise _EntryError(f'{where}: expected a CIDR such as "10.0.0.0/8"')
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as error:
        raise _EntryError(f"{where}: {text!r} is not a CIDR") from error
