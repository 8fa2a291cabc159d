"""A VPC or a file system that the isolation backend cannot apply fails the cold start with
an AWS-shaped error naming `lamina doctor`, rather than running the function on the host's
network or without its mount."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, error_of, invoke
from tests.support.server import LaminaServer

SUBNET = "subnet-0a1b2c3d4e5f60718"
GROUP = "sg-0a1b2c3d4e5f60718"
AP = "fsap-0a1b2c3d4e5f60718"
AP_ARN = f"arn:aws:elasticfilesystem:us-east-1:000000000000:access-point/{AP}"
IN_VPC = {"SubnetIds": [SUBNET], "SecurityGroupIds": [GROUP]}
MOUNTED = [{"Arn": AP_ARN, "LocalMountPath": "/mnt/shared"}]
CODE = "def handler(event, context):\n    return 'ran'\n"


def networks(efs_root: Path) -> str:
    return f"""
[vpcs.vpc-db]
id = "vpc-0a1b2c3d4e5f60718"
subnets = {{ "{SUBNET}" = "10.0.1.0/24" }}
[vpcs.vpc-db.security_groups.{GROUP}]
egress = ["10.0.0.0/8"]

[file_systems.fs-0a1b2c3d]
path = "{efs_root}"
[access_points.{AP}]
file_system = "fs-0a1b2c3d"
uid = 1000
gid = 1000
"""


def started(root: Path, env: dict[str, str]) -> LaminaServer:
    (root / "efs").mkdir()
    data = root / "data"
    data.mkdir()
    (data / "networks.toml").write_text(networks(root / "efs"))
    return LaminaServer(data, env=env).start()


@pytest.fixture(scope="module")
def process_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    server = started(tmp_path_factory.mktemp("process"), {"LAMINA_ISOLATION": "process"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_network_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    env = {"LAMINA_ISOLATION": "namespace", "LAMINA_NETWORK_ISOLATION": "off"}
    server = started(tmp_path_factory.mktemp("shared-network"), env)
    yield server
    server.stop()


def function(server: LaminaServer, name: str, **overrides: Any) -> Any:
    client = server.client("lambda")
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": CODE})},
        **overrides,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return client


def refused(client: Any, name: str) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as excinfo:
        client.invoke(FunctionName=name, Payload=b"{}")
    return error_of(excinfo)


def test_the_process_backend_refuses_a_vpc(
    process_server: LaminaServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("vpc")
    client = function(process_server, name, VpcConfig=IN_VPC)
    code, message, status = refused(client, name)
    assert (code, status) == ("EC2UnexpectedException", 502)
    assert message == (
        "Lamina cannot place this function's environments in its VPC (vpc-db): the process "
        "isolation backend gives them no network of their own here, so its security groups "
        "could not be enforced. Run `lamina doctor` to see what this host's isolation provides."
    )
    # Functions outside a VPC still run.
    other = unique_name("plain")
    function(process_server, other)
    assert invoke(client, other) == "ran"


def test_the_process_backend_refuses_a_file_system(
    process_server: LaminaServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("efs")
    client = function(process_server, name, VpcConfig=IN_VPC, FileSystemConfigs=MOUNTED)
    assert refused(client, name) == (
        "EFSMountFailureException",
        f"Lamina cannot mount the file system of access point {AP_ARN}: the process isolation "
        "backend gives environments no mounts of their own. Run `lamina doctor` to see what "
        "this host's isolation provides.",
        403,
    )


def test_without_network_isolation_a_vpc_is_refused(
    shared_network_server: LaminaServer, unique_name: Callable[[str], str]
) -> None:
    for overrides in ({"VpcConfig": IN_VPC}, {"VpcConfig": IN_VPC, "FileSystemConfigs": MOUNTED}):
        name = unique_name("vpc")
        client = function(shared_network_server, name, **overrides)
        code, message, status = refused(client, name)
        assert (code, status) == ("EC2UnexpectedException", 502)
        assert "the namespace isolation backend gives them no network of their own" in message
        assert "lamina doctor" in message
