"""The operator's networks file: parsing, refusals naming the entry, and what functions get."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import stat
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from lamina.arns import Account
from lamina.control.file_systems import (
    EFSMountFailure,
    check_file_system_configs,
    file_system_mounts,
)
from lamina.control.networks import (
    ACCESS_POINT_ID,
    FILE_SYSTEM_ID,
    SECURITY_GROUP_ID,
    SUBNET_ID,
    NetworksFileError,
    load_catalog,
    networks_path,
    parse_egress,
)
from lamina.control.vpc import (
    InvalidSecurityGroupID,
    InvalidSubnetID,
    check_vpc_config,
    network_policy,
)
from lamina.errors import InvalidParameterValue
from lamina.model.networks import EgressRule
from lamina.sandbox.mounts import open_access_point, share

ACCOUNT = Account("000000000000", "us-east-1")
SUBNET_A = "subnet-0a1b2c3d4e5f60718"
SUBNET_B = "subnet-0a1b2c3d4e5f60719"
SUBNET_OTHER = "subnet-0ffffffffffffffff"
GROUP_DB = "sg-0a1b2c3d4e5f60718"
GROUP_WEB = "sg-0a1b2c3d4e5f60719"
GROUP_OTHER = "sg-0ffffffffffffffff"
AP = "fsap-0a1b2c3d4e5f60718"
AP_ARN = f"arn:aws:elasticfilesystem:us-east-1:000000000000:access-point/{AP}"


def networks_toml(efs_root: Path) -> str:
    return f"""
[vpcs.vpc-db]
id = "vpc-0a1b2c3d4e5f60718"
dns = ["192.0.2.53"]
subnets = {{ "{SUBNET_A}" = "10.0.1.0/24", "{SUBNET_B}" = "10.0.2.0/24" }}
[vpcs.vpc-db.security_groups.{GROUP_DB}]
egress = ["192.0.2.2/32:5432", "10.0.0.0/8"]
[vpcs.vpc-db.security_groups.{GROUP_WEB}]
egress = ["192.0.2.2:80,443", "10.0.0.0/8"]

[vpcs.other]
id = "vpc-0ffffffffffffffff"
internet = true
subnets = {{ "{SUBNET_OTHER}" = "10.9.0.0/24" }}
[vpcs.other.security_groups.{GROUP_OTHER}]

[file_systems.fs-0a1b2c3d]
path = "{efs_root}"
vpcs = ["vpc-db"]
[access_points.{AP}]
file_system = "fs-0a1b2c3d"
root_directory = "/shared"
uid = 1000
gid = 1001
permissions = "0750"
"""


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    (tmp_path / "efs").mkdir()
    path = tmp_path / "networks.toml"
    path.write_text(networks_toml(tmp_path / "efs"))
    return path


def refusal(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(NetworksFileError) as excinfo:
        load_catalog(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: ")
    return message


def test_the_file_is_found_in_the_data_directory_only_when_present(tmp_path: Path) -> None:
    assert networks_path(None, tmp_path) is None
    (tmp_path / "networks.toml").write_text("")
    assert networks_path(None, tmp_path) == tmp_path / "networks.toml"
    assert networks_path(tmp_path / "elsewhere.toml", tmp_path) == tmp_path / "elsewhere.toml"
    assert not load_catalog(None).vpcs


def test_a_vpc_and_its_security_groups_are_read(catalog_file: Path) -> None:
    catalog = load_catalog(catalog_file)
    vpc = catalog.vpcs["vpc-db"]
    assert vpc.id == "vpc-0a1b2c3d4e5f60718"
    assert not vpc.internet and vpc.dns == ("192.0.2.53",)
    assert catalog.subnet_vpc(SUBNET_B) is vpc
    assert catalog.security_group(GROUP_DB) is not None
    assert catalog.access_points[AP].permissions == 0o750


@pytest.mark.parametrize(
    ("rule", "cidr", "ports"),
    [
        ("10.0.0.0/8", "10.0.0.0/8", ()),
        ("192.0.2.2:5432", "192.0.2.2/32", (5432,)),
        ("192.0.2.0/24:80,443", "192.0.2.0/24", (80, 443)),
        ("2001:db8::/32", "2001:db8::/32", ()),
        ("[2001:db8::1]:443", "2001:db8::1/128", (443,)),
    ],
)
def test_egress_rules(rule: str, cidr: str, ports: tuple[int, ...]) -> None:
    assert parse_egress(rule) == EgressRule(ipaddress.ip_network(cidr), ports)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[vpcs.a]\nid = 'vpc-1'\nsubnets = { 'subnet-1' = 'nope' }", "vpcs.a.subnets.subnet-1"),
        ("[vpcs.a]\nid = 'x-1'", "vpcs.a.id"),
        (
            "[vpcs.a]\nid = 'vpc-1'\n[vpcs.a.security_groups.sg-1]\negress = ['10.0.0.0/8:0']",
            "sg-1",
        ),
        ("[vpcs.a]\nid = 'vpc-1'\ncolour = 'red'", "'colour'"),
        ("[vpcs.a]\nid = 'vpc-1'\n[vpcs.b]\nid = 'vpc-1'", "already declared by vpcs.a"),
        ("[file_systems.fs-0a1b2c3d]\npath = '/does/not/exist'", "file_systems.fs-0a1b2c3d.path"),
        (f"[access_points.{AP}]\nfile_system = 'fs-9'\nuid = 1\ngid = 1", "fs-9"),
        # Ids a function could never name: the patterns of botocore's models.
        ("[vpcs.a]\nid = 'vpc-1'\nsubnets = { 'subnet-A' = '10.0.0.0/8' }", "'subnet-A'"),
        ("[vpcs.a]\nid = 'vpc-1'\n[vpcs.a.security_groups.'sg-1_2']", "'sg-1_2'"),
        ("[file_systems.fs-1]\npath = '/'", "'fs-1' is not a file system id"),
        ("[access_points.fsap-1]\nfile_system = 'fs-9'", "'fsap-1' is not an access point id"),
        ("[routers]", "'routers'"),
        ("not toml at all =", "not valid TOML"),
    ],
)
def test_a_malformed_file_names_the_entry(tmp_path: Path, text: str, names: str) -> None:
    assert names in refusal(tmp_path, text)


def test_vpc_config_is_stored_with_its_vpc_id(catalog_file: Path) -> None:
    catalog = load_catalog(catalog_file)
    stored = check_vpc_config(
        catalog, {"SubnetIds": [SUBNET_A, SUBNET_B], "SecurityGroupIds": [GROUP_DB]}
    )
    assert stored == {
        "SubnetIds": [SUBNET_A, SUBNET_B],
        "SecurityGroupIds": [GROUP_DB],
        "VpcId": "vpc-0a1b2c3d4e5f60718",
        "Ipv6AllowedForDualStack": False,
    }
    assert check_vpc_config(catalog, {"SubnetIds": [], "SecurityGroupIds": []})["VpcId"] == ""


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"SubnetIds": [SUBNET_A]},
            "SubnetIds and SecurityIds must coexist or be both empty list.",
        ),
        (
            {"SubnetIds": ["subnet-123"], "SecurityGroupIds": [GROUP_DB]},
            "Error occurred while DescribeSubnets. EC2 Error Code: InvalidSubnetID.NotFound. "
            "EC2 Error Message: The subnet ID 'subnet-123' does not exist",
        ),
        (
            {"SubnetIds": [SUBNET_A], "SecurityGroupIds": ["sg-123"]},
            "Error occurred while DescribeSecurityGroups. EC2 Error Code: InvalidGroup.NotFound. "
            "EC2 Error Message: The security group 'sg-123' does not exist",
        ),
        (
            {"SubnetIds": [SUBNET_A, SUBNET_OTHER], "SecurityGroupIds": [GROUP_DB]},
            "Subnets are required to be in the same VPC.",
        ),
        (
            {"SubnetIds": [SUBNET_A], "SecurityGroupIds": [GROUP_OTHER]},
            "Security Groups are required to be in the same VPC.",
        ),
    ],
)
def test_vpc_config_refusals(catalog_file: Path, given: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterValue) as excinfo:
        check_vpc_config(load_catalog(catalog_file), given)
    assert excinfo.value.message == message


def test_the_network_is_the_vpc_and_its_groups_rules(catalog_file: Path) -> None:
    catalog = load_catalog(catalog_file)
    stored = check_vpc_config(
        catalog, {"SubnetIds": [SUBNET_A], "SecurityGroupIds": [GROUP_DB, GROUP_WEB]}
    )
    policy = network_policy(catalog, stored)
    assert policy is not None
    assert (policy.name, policy.internet, policy.dns) == ("vpc-db", False, ("192.0.2.53",))
    assert policy.allow == (
        parse_egress("192.0.2.2/32:5432"),
        parse_egress("10.0.0.0/8"),
        parse_egress("192.0.2.2:80,443"),
    )
    assert network_policy(catalog, None) is None
    assert network_policy(catalog, {"SubnetIds": [], "SecurityGroupIds": []}) is None


def test_ids_gone_since_fail_the_cold_start(catalog_file: Path) -> None:
    catalog = load_catalog(catalog_file)
    with pytest.raises(InvalidSubnetID):
        network_policy(catalog, {"SubnetIds": ["subnet-gone"], "SecurityGroupIds": [GROUP_DB]})
    with pytest.raises(InvalidSecurityGroupID):
        network_policy(catalog, {"SubnetIds": [SUBNET_A], "SecurityGroupIds": ["sg-gone"]})
    with pytest.raises(EFSMountFailure):
        file_system_mounts(
            catalog, ACCOUNT, [{"Arn": AP_ARN.replace("0718", "0719"), "LocalMountPath": "/mnt/x"}]
        )


def test_access_points_need_a_vpc_with_a_mount_target(catalog_file: Path) -> None:
    catalog = load_catalog(catalog_file)
    configs = [{"Arn": AP_ARN, "LocalMountPath": "/mnt/shared"}]
    in_db = check_vpc_config(catalog, {"SubnetIds": [SUBNET_A], "SecurityGroupIds": [GROUP_DB]})
    check_file_system_configs(catalog, ACCOUNT, configs, in_db)
    with pytest.raises(InvalidParameterValue, match="must be configured to execute in a VPC"):
        check_file_system_configs(catalog, ACCOUNT, configs, None)
    elsewhere = check_vpc_config(
        catalog, {"SubnetIds": [SUBNET_OTHER], "SecurityGroupIds": [GROUP_OTHER]}
    )
    with pytest.raises(InvalidParameterValue, match="must have mount targets"):
        check_file_system_configs(catalog, ACCOUNT, configs, elsewhere)
    (mount,) = file_system_mounts(catalog, ACCOUNT, configs)
    assert mount.host_path == str(catalog_file.parent / "efs" / "shared")
    assert (mount.mount_path, mount.uid, mount.gid, mount.permissions) == (
        "/mnt/shared",
        1000,
        1001,
        0o750,
    )


def test_an_access_point_directory_is_created_with_its_creation_info(tmp_path: Path) -> None:
    target = tmp_path / "fs" / "lambda" / "shared"
    descriptor = open_access_point(str(target), 1000, 1001, 0o750)
    os.close(descriptor)
    status = target.stat()
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (1000, 1001, 0o750)
    # An existing directory is left as it is.
    target.chmod(0o700)
    os.close(open_access_point(str(target), 1000, 1001, 0o750))
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_an_access_point_path_never_follows_a_link(tmp_path: Path) -> None:
    (tmp_path / "fs").mkdir()
    (tmp_path / "outside").mkdir()
    # Function code with write access to the file system made this link.
    (tmp_path / "fs" / "lambda").symlink_to(tmp_path / "outside")
    with pytest.raises(OSError) as excinfo:
        open_access_point(str(tmp_path / "fs" / "lambda" / "shared"), 1000, 1000, 0o755)
    assert excinfo.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert not (tmp_path / "outside" / "shared").exists()


@pytest.mark.parametrize("target", ["/stage/mnt/..", "/stage/mnt/.", "/stage/mnt/"])
def test_a_share_never_covers_the_root_being_built(tmp_path: Path, target: str) -> None:
    with pytest.raises(OSError, match="does not name a directory of its own"):
        share(str(tmp_path / "fs"), target, 1000, 1000, 0o755, 2_000_000_000)
    assert not (tmp_path / "fs").exists()


@pytest.mark.parametrize("key", ["uid", "gid"])
def test_an_access_point_never_runs_as_root(tmp_path: Path, key: str) -> None:
    (tmp_path / "efs").mkdir()
    text = re.sub(rf"^{key} = \d+$", f"{key} = 0", networks_toml(tmp_path / "efs"), flags=re.M)
    message = refusal(tmp_path, text)
    assert f"access_points.{AP}.{key}: 0 is root" in message
    assert "setuid-root" in message


def test_a_file_system_off_a_nosuid_nodev_mount_is_warned_about(
    catalog_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    efs = catalog_file.parent / "efs"
    flags = os.statvfs(efs).f_flag
    if flags & os.ST_NOSUID and flags & os.ST_NODEV:
        pytest.skip(f"{efs} is on a nosuid,nodev mount already")
    with caplog.at_level("WARNING", logger="lamina.networks"):
        load_catalog(catalog_file)
    (warning,) = caplog.records
    assert warning.getMessage() == (
        f"file_systems.fs-0a1b2c3d.path: {efs} is not on a nosuid,nodev mount; files "
        "functions write there could act as setuid programs or devices for host users "
        "(mount it nosuid,nodev)"
    )


def test_id_patterns_are_botocores() -> None:
    session = botocore.session.get_session()
    lambda_model = session.get_service_model("lambda")
    efs_model = session.get_service_model("efs")

    def pattern(model: Any, shape: str) -> str:
        return str(model.shape_for(shape).metadata["pattern"])

    assert pattern(lambda_model, "SubnetId") == SUBNET_ID.pattern
    assert pattern(lambda_model, "SecurityGroupId") == SECURITY_GROUP_ID.pattern
    assert f"access-point/{ACCESS_POINT_ID.pattern}$" in pattern(lambda_model, "FileSystemArn")
    assert f"|{FILE_SYSTEM_ID.pattern})$" in pattern(efs_model, "FileSystemId")
