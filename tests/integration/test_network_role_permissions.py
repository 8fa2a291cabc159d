"""Enforced mode: a function joins a VPC and mounts a file system only when its execution
role allows what Lambda does with them, as on AWS.

VpcConfig needs ec2:CreateNetworkInterface, DescribeNetworkInterfaces and
DeleteNetworkInterface (on `*`); FileSystemConfigs needs elasticfilesystem:ClientMount on
the file system the access point enters. The checks apply to the role in the request, else
to the function's current one.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.iam import LAMBDA_TRUST, client, enforced_env
from tests.support.lambda_api import error_of
from tests.support.server import LaminaServer

KEY, SECRET = "AKIANETWORKROLEROOT", "network-role-root-secret"
ACCOUNT, REGION = "000000000000", "us-east-1"
SUBNET = "subnet-0a1b2c3d4e5f60718"
GROUP = "sg-0a1b2c3d4e5f60718"
FILE_SYSTEM, OTHER_FILE_SYSTEM = "fs-0a1b2c3d", "fs-0a1b2c3e"
ACCESS_POINT = "fsap-0a1b2c3d4e5f60718"
AP_ARN = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/{ACCESS_POINT}"
FS_ARN = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/{FILE_SYSTEM}"
OTHER_FS_ARN = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/{OTHER_FILE_SYSTEM}"
IN_VPC = {"SubnetIds": [SUBNET], "SecurityGroupIds": [GROUP]}
MOUNTS = [{"Arn": AP_ARN, "LocalMountPath": "/mnt/shared"}]
ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
]


def refusal(action: str) -> tuple[str, str, int]:
    return (
        "InvalidParameterValueException",
        f"The provided execution role does not have permissions to call {action} on EC2",
        400,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    root = tmp_path_factory.mktemp("network-roles")
    (root / "efs").mkdir()
    os.chown(root / "efs", 1000, 1000)  # the access point's POSIX user owns its root
    (root / "other").mkdir()
    data = root / "data"
    data.mkdir()
    (data / "networks.toml").write_text(
        f"""
[vpcs.vpc-db]
id = "vpc-0a1b2c3d4e5f60718"
subnets = {{ "{SUBNET}" = "10.0.1.0/24" }}
[vpcs.vpc-db.security_groups.{GROUP}]

[file_systems.{FILE_SYSTEM}]
path = "{root / "efs"}"
[file_systems.{OTHER_FILE_SYSTEM}]
path = "{root / "other"}"
[access_points.{ACCESS_POINT}]
file_system = "{FILE_SYSTEM}"
uid = 1000
gid = 1000
"""
    )
    started = LaminaServer(data, env=enforced_env(KEY, SECRET)).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def lambda_client(server: LaminaServer) -> Any:
    return client(server, "lambda", KEY, SECRET)


@pytest.fixture(scope="module")
def iam(server: LaminaServer) -> Any:
    return client(server, "iam", KEY, SECRET)


@pytest.fixture(scope="module")
def role(server: LaminaServer) -> Callable[..., str]:
    """A new role trusting Lambda, allowed `actions` on their resources; its ARN."""
    iam = client(server, "iam", KEY, SECRET)

    def make(*grants: tuple[list[str], str]) -> str:
        name = f"network-role-{uuid.uuid4().hex[:8]}"
        arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"][
            "Arn"
        ]
        if grants:
            statements = [
                {"Effect": "Allow", "Action": actions, "Resource": resource}
                for actions, resource in grants
            ]
            document = {"Version": "2012-10-17", "Statement": statements}
            iam.put_role_policy(
                RoleName=name, PolicyName="network", PolicyDocument=json.dumps(document)
            )
        return arn

    return make


@pytest.fixture
def create(lambda_client: Any, unique_name: Callable[[str], str]) -> Callable[..., dict[str, Any]]:
    def make(role: str, **overrides: Any) -> dict[str, Any]:
        response: dict[str, Any] = lambda_client.create_function(
            FunctionName=unique_name("net-role"),
            Runtime="python3.12",
            Role=role,
            Handler="app.handler",
            **{
                "Code": {"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})},
                **overrides,
            },
        )
        return response

    return make


def refused(call: Callable[[], Any]) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as excinfo:
        call()
    return error_of(excinfo)


def test_a_vpc_needs_a_role_that_manages_network_interfaces(
    create: Callable[..., dict[str, Any]], role: Callable[..., str]
) -> None:
    bare = role()
    assert refused(lambda: create(bare, VpcConfig=IN_VPC)) == refusal("CreateNetworkInterface")
    # The first action the role lacks is the one named.
    create_only = role((ENI_ACTIONS[:1], "*"))
    assert refused(lambda: create(create_only, VpcConfig=IN_VPC)) == refusal(
        "DescribeNetworkInterfaces"
    )
    all_but_delete = role((ENI_ACTIONS[:2], "*"))
    assert refused(lambda: create(all_but_delete, VpcConfig=IN_VPC)) == refusal(
        "DeleteNetworkInterface"
    )
    created = create(role((ENI_ACTIONS, "*")), VpcConfig=IN_VPC)
    assert created["VpcConfig"]["SubnetIds"] == [SUBNET]
    # Without a VPC the role needs nothing of EC2.
    assert "VpcConfig" not in create(bare)


def test_an_update_checks_the_current_role_or_the_new_one(
    lambda_client: Any, create: Callable[..., dict[str, Any]], role: Callable[..., str]
) -> None:
    bare = role()
    name = create(bare)["FunctionName"]
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
    # Joining a VPC is checked against the role the function already has.
    assert refused(
        lambda: lambda_client.update_function_configuration(FunctionName=name, VpcConfig=IN_VPC)
    ) == refusal("CreateNetworkInterface")
    networked = role((ENI_ACTIONS, "*"))
    lambda_client.update_function_configuration(FunctionName=name, Role=networked, VpcConfig=IN_VPC)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    # A function in a VPC cannot move to a role that could not have put it there.
    assert refused(
        lambda: lambda_client.update_function_configuration(FunctionName=name, Role=bare)
    ) == refusal("CreateNetworkInterface")
    lambda_client.update_function_configuration(FunctionName=name, Timeout=5)


def test_a_file_system_needs_client_mount_on_it(
    lambda_client: Any, create: Callable[..., dict[str, Any]], role: Callable[..., str]
) -> None:
    message = (
        f"The provided execution role does not have permissions to call ClientMount on {FS_ARN}"
    )
    networked = role((ENI_ACTIONS, "*"))
    assert refused(lambda: create(networked, VpcConfig=IN_VPC, FileSystemConfigs=MOUNTS)) == (
        "InvalidParameterValueException",
        message,
        400,
    )
    elsewhere = role((ENI_ACTIONS, "*"), (["elasticfilesystem:ClientMount"], OTHER_FS_ARN))
    assert refused(lambda: create(elsewhere, VpcConfig=IN_VPC, FileSystemConfigs=MOUNTS)) == (
        "InvalidParameterValueException",
        message,
        400,
    )
    mounting = role((ENI_ACTIONS, "*"), (["elasticfilesystem:ClientMount"], FS_ARN))
    created = create(mounting, VpcConfig=IN_VPC, FileSystemConfigs=MOUNTS)
    assert created["FileSystemConfigs"] == MOUNTS
    name = created["FunctionName"]
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
    assert refused(
        lambda: lambda_client.update_function_configuration(FunctionName=name, Role=networked)
    ) == ("InvalidParameterValueException", message, 400)


def test_an_unknown_access_point_keeps_efs_own_error(
    create: Callable[..., dict[str, Any]], role: Callable[..., str]
) -> None:
    unknown = [{"Arn": AP_ARN.replace("0718", "0719"), "LocalMountPath": "/mnt/x"}]
    code, message, status = refused(
        lambda: create(role((ENI_ACTIONS, "*")), VpcConfig=IN_VPC, FileSystemConfigs=unknown)
    )
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "AccessPointNotFound" in message


WRITER = """
import errno, os

def handler(event, context):
    try:
        with open("/mnt/shared/" + event["name"], "w") as out:
            out.write("x")
    except OSError as error:
        return errno.errorcode[error.errno]
    return "written"
"""


def test_cold_starts_mount_as_the_role_allows_now(
    lambda_client: Any, iam: Any, create: Callable[..., dict[str, Any]], role: Callable[..., str]
) -> None:
    iam_role = role((ENI_ACTIONS, "*"), (["elasticfilesystem:ClientMount"], FS_ARN))
    created = create(
        iam_role,
        VpcConfig=IN_VPC,
        FileSystemConfigs=MOUNTS,
        Code={"ZipFile": make_zip({"app.py": WRITER})},
        Timeout=10,
    )
    name = created["FunctionName"]
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)

    def run(file: str) -> Any:
        answer = lambda_client.invoke(FunctionName=name, Payload=json.dumps({"name": file}))
        return json.loads(answer["Payload"].read())

    # ClientMount without ClientWrite: EFS mounts the file system read-only.
    assert run("a") == "EROFS"
    role_name = iam_role.rsplit("/", 1)[-1]
    grants = [
        {"Effect": "Allow", "Action": ENI_ACTIONS, "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
            "Resource": FS_ARN,
        },
    ]
    iam.put_role_policy(
        RoleName=role_name,
        PolicyName="network",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": grants}),
    )
    # The next environment mounts it read-write.
    lambda_client.update_function_configuration(FunctionName=name, Description="write")
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert run("b") == "written"
    # A role that lost ClientMount since fails the next cold start, as EFS refuses the mount.
    iam.put_role_policy(
        RoleName=role_name,
        PolicyName="network",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": grants[:1]}),
    )
    lambda_client.update_function_configuration(FunctionName=name, Description="no mount")
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert refused(lambda: run("c")) == (
        "EFSMountFailureException",
        f"The provided execution role does not have permissions to call ClientMount on {FS_ARN}",
        403,
    )
