"""FileSystemConfigs: access points shared between functions, with their POSIX user enforced
(namespace backend), and AWS's validation, over the Lambda API (boto3)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_package, make_zip
from tests.support.lambda_api import ROLE, error_of, invoke
from tests.support.server import LaminaServer, lambda_client_of

SUBNET = "subnet-0a1b2c3d4e5f60718"
GROUP = "sg-0a1b2c3d4e5f60718"
SUBNET_OTHER = "subnet-0ffffffffffffffff"
GROUP_OTHER = "sg-0ffffffffffffffff"
AP = "fsap-0a1b2c3d4e5f60718"
AP_ARN = f"arn:aws:elasticfilesystem:us-east-1:000000000000:access-point/{AP}"
FS_ARN = "arn:aws:elasticfilesystem:us-east-1:000000000000:file-system/fs-0a1b2c3d"
IN_VPC = {"SubnetIds": [SUBNET], "SecurityGroupIds": [GROUP]}
IN_OTHER_VPC = {"SubnetIds": [SUBNET_OTHER], "SecurityGroupIds": [GROUP_OTHER]}

CODE = r"""
import errno, os

def write(event, context):
    path = os.path.join(event["dir"], event["name"])
    with open(path, "w") as out:
        out.write(event["text"])
    os.mkdir(path + ".d")
    return {"uid": os.getuid(), "owner": os.stat(path).st_uid}

def read(event, context):
    try:
        return {"text": open(os.path.join(event["dir"], event["name"])).read(),
                "listing": sorted(os.listdir(event["dir"]))}
    except OSError as error:
        return {"error": errno.errorcode[error.errno]}
"""

# A custom runtime (a fresh process, not a fork of the Python template) that writes a file.
BOOTSTRAP = """#!/usr/bin/env python3
import json, os, urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
while True:
    with urllib.request.urlopen(API + "/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(response.read())
    with open(event["path"], "w") as out:
        out.write("from a custom runtime")
    body = json.dumps({"listing": sorted(os.listdir(os.path.dirname(event["path"])))})
    urllib.request.urlopen(urllib.request.Request(
        API + "/invocation/" + request_id + "/response", data=body.encode(), method="POST"
    )).read()
"""


def networks(efs_root: Path) -> str:
    return f"""
[vpcs.vpc-db]
id = "vpc-0a1b2c3d4e5f60718"
subnets = {{ "{SUBNET}" = "10.0.1.0/24" }}
[vpcs.vpc-db.security_groups.{GROUP}]

[vpcs.other]
id = "vpc-0ffffffffffffffff"
subnets = {{ "{SUBNET_OTHER}" = "10.9.0.0/24" }}
[vpcs.other.security_groups.{GROUP_OTHER}]

[file_systems.fs-0a1b2c3d]
path = "{efs_root}"
vpcs = ["vpc-db"]
[access_points.{AP}]
file_system = "fs-0a1b2c3d"
root_directory = "/lambda/shared"
uid = 1000
gid = 1001
permissions = "0750"
"""


@pytest.fixture(scope="module")
def efs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("efs")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, efs_root: Path) -> Iterator[LaminaServer]:
    if os.environ.get("LAMINA_ISOLATION") == "process":
        pytest.skip("LAMINA_ISOLATION=process: mounts need the namespace backend")
    data = tmp_path_factory.mktemp("file-systems") / "data"
    data.mkdir()
    (data / "networks.toml").write_text(networks(efs_root))
    instance = LaminaServer(data, env={"LAMINA_ISOLATION": "namespace"}).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(server: LaminaServer) -> Iterator[Any]:
    yield from lambda_client_of(server)


@pytest.fixture
def create(client: Any, unique_name: Callable[[str], str]) -> Callable[..., str]:
    def make(handler: str, **overrides: Any) -> str:
        name = unique_name("efs")
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler=f"app.{handler}",
            Code={"ZipFile": make_zip({"app.py": CODE})},
            **overrides,
        )
        client.get_waiter("function_active_v2").wait(FunctionName=name)
        return name

    return make


def mounted_at(path: str) -> dict[str, Any]:
    return {"VpcConfig": IN_VPC, "FileSystemConfigs": [{"Arn": AP_ARN, "LocalMountPath": path}]}


def test_two_functions_share_files_through_an_access_point(
    client: Any, create: Any, efs_root: Path
) -> None:
    writer = create("write", **mounted_at("/mnt/shared"))
    reader = create("read", **mounted_at("/mnt/data"))
    outsider = create("read", VpcConfig=IN_VPC)
    written = invoke(
        client, writer, {"dir": "/mnt/shared", "name": "note.txt", "text": "from the writer"}
    )
    # Inside, the file is the environment's own (its uid runs the function).
    assert written["owner"] == written["uid"] >= 2_000_000_000
    assert invoke(client, reader, {"dir": "/mnt/data", "name": "note.txt"}) == {
        "text": "from the writer",
        "listing": ["note.txt", "note.txt.d"],
    }
    assert invoke(client, outsider, {"dir": "/mnt/shared", "name": "note.txt"}) == {
        "error": "ENOENT"
    }
    # On the host, what the function wrote belongs to the access point's user, and the
    # root directory was created with the access point's creation info.
    root = efs_root / "lambda" / "shared"
    for path in (root, root / "note.txt", root / "note.txt.d"):
        status = path.stat()
        assert (status.st_uid, status.st_gid) == (1000, 1001), path
    assert stat.S_IMODE(root.stat().st_mode) == 0o750
    assert (root / "note.txt").read_text() == "from the writer"
    listing = client.get_function_configuration(FunctionName=reader)["FileSystemConfigs"]
    assert listing == [{"Arn": AP_ARN, "LocalMountPath": "/mnt/data"}]


def test_files_of_the_access_point_user_are_readable_by_every_environment(
    client: Any, create: Any, efs_root: Path
) -> None:
    root = efs_root / "lambda" / "shared"
    root.mkdir(parents=True, exist_ok=True)
    os.chown(root, 1000, 1001)
    os.chmod(root, 0o750)
    private = root / "private.txt"
    private.write_text("only for uid 1000")
    os.chown(private, 1000, 1001)
    private.chmod(0o600)
    reader = create("read", **mounted_at("/mnt/data"))
    assert invoke(client, reader, {"dir": "/mnt/data", "name": "private.txt"})["text"] == (
        "only for uid 1000"
    )


def test_a_custom_runtime_mounts_the_access_point_too(
    client: Any, unique_name: Callable[[str], str], efs_root: Path
) -> None:
    name = unique_name("efs-provided")
    client.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="unused",
        Code={"ZipFile": make_package({"bootstrap": BOOTSTRAP})},
        **mounted_at("/mnt/efs"),
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    result = invoke(client, name, {"path": "/mnt/efs/custom.txt"})
    assert "custom.txt" in result["listing"]
    written = efs_root / "lambda" / "shared" / "custom.txt"
    assert written.read_text() == "from a custom runtime"
    assert (written.stat().st_uid, written.stat().st_gid) == (1000, 1001)


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        (
            {"FileSystemConfigs": [{"Arn": AP_ARN, "LocalMountPath": "/mnt/shared"}]},
            "InvalidParameterValueException",
            f"Function must be configured to execute in a VPC to reference access point {AP_ARN}.",
        ),
        (
            {
                "VpcConfig": IN_VPC,
                "FileSystemConfigs": [
                    {"Arn": AP_ARN.replace("0718", "0719"), "LocalMountPath": "/mnt/shared"}
                ],
            },
            "InvalidParameterValueException",
            "Error occurred while DescribeAccessPoints. EFS Error Code: AccessPointNotFound. "
            "EFS Error Message: Access point 'fsap-0a1b2c3d4e5f60719' does not exist",
        ),
        (
            {
                "VpcConfig": IN_OTHER_VPC,
                "FileSystemConfigs": [{"Arn": AP_ARN, "LocalMountPath": "/mnt/shared"}],
            },
            "InvalidParameterValueException",
            f"EFS file system {FS_ARN} referenced by access point {AP_ARN} must have mount "
            "targets created in all availability zones the function will execute in.",
        ),
    ],
)
def test_create_refuses_access_points_it_cannot_mount(
    create: Any, overrides: dict[str, Any], code: str, message: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        create("read", **overrides)
    assert error_of(excinfo) == (code, message, 400)


@pytest.mark.parametrize(
    ("configs", "constraint"),
    [
        (
            [{"Arn": AP_ARN, "LocalMountPath": "/data/shared"}],
            "Member must satisfy regular expression pattern: /mnt/[a-zA-Z0-9-_.]+",
        ),
        (
            [{"Arn": AP_ARN, "LocalMountPath": "/mnt/shared/../.."}],
            "Member must satisfy regular expression pattern: /mnt/[a-zA-Z0-9-_.]+",
        ),
        (
            [
                {"Arn": AP_ARN, "LocalMountPath": "/mnt/one"},
                {"Arn": AP_ARN, "LocalMountPath": "/mnt/two"},
            ],
            "Member must have length less than or equal to 1",
        ),
    ],
)
def test_the_model_limits_file_system_configs(
    create: Any, configs: list[dict[str, str]], constraint: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        create("read", VpcConfig=IN_VPC, FileSystemConfigs=configs)
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert constraint in message


@pytest.mark.parametrize("path", ["/mnt/..", "/mnt/."])
def test_a_mount_path_must_be_a_directory_of_its_own(create: Any, path: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        create(
            "read", VpcConfig=IN_VPC, FileSystemConfigs=[{"Arn": AP_ARN, "LocalMountPath": path}]
        )
    assert error_of(excinfo)[:2] == (
        "InvalidParameterValueException",
        f"LocalMountPath {path} must name a directory under /mnt/, not /mnt itself or its parent.",
    )


def test_removing_the_vpc_of_a_function_with_a_file_system_is_refused(
    client: Any, create: Any
) -> None:
    name = create("read", **mounted_at("/mnt/shared"))
    with pytest.raises(ClientError) as excinfo:
        client.update_function_configuration(
            FunctionName=name, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []}
        )
    assert error_of(excinfo)[:2] == (
        "InvalidParameterValueException",
        f"Function must be configured to execute in a VPC to reference access point {AP_ARN}.",
    )
