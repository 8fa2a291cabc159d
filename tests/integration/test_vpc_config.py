"""VpcConfig against the operator's networks file, over the Lambda API (boto3)."""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, error_of, invoke
from tests.support.server import LaminaServer, lambda_client_of

SUBNET_A = "subnet-0a1b2c3d4e5f60718"
SUBNET_B = "subnet-0a1b2c3d4e5f60719"
SUBNET_OTHER = "subnet-0ffffffffffffffff"
GROUP_DB = "sg-0a1b2c3d4e5f60718"
GROUP_WIDE = "sg-0a1b2c3d4e5f6071a"
GROUP_OTHER = "sg-0ffffffffffffffff"
VPC_DB = "vpc-0a1b2c3d4e5f60718"

NETWORKS = f"""
[vpcs.vpc-db]
id = "{VPC_DB}"
dns = ["192.0.2.53"]
subnets = {{ "{SUBNET_A}" = "10.0.1.0/24", "{SUBNET_B}" = "10.0.2.0/24" }}
[vpcs.vpc-db.security_groups.{GROUP_DB}]
egress = ["DATABASE"]
[vpcs.vpc-db.security_groups.{GROUP_WIDE}]
egress = ["0.0.0.0/0", "10.0.0.0/8", "DATABASE"]

[vpcs.other]
id = "vpc-0ffffffffffffffff"
internet = true
subnets = {{ "{SUBNET_OTHER}" = "10.9.0.0/24" }}
[vpcs.other.security_groups.{GROUP_OTHER}]
"""

CODE = r"""
import errno, socket

def handler(event, context):
    return "ok"

def resolvers(event, context):
    return open("/etc/resolv.conf").read()

def reach(event, context):
    results = {}
    for target in event["targets"]:
        host, port = target.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=3) as connection:
                results[target] = "connected: " + connection.recv(64).decode().strip()
        except socket.timeout:
            results[target] = "timeout"
        except OSError as error:
            results[target] = errno.errorcode.get(error.errno, str(error.errno))
    return results
"""


class Greeter:
    """A TCP server on `address` (every address of the host by default) that greets and
    hangs up: the operator's database host (allowed) and other local services (not)."""

    def __init__(self, word: str, address: tuple[str, int] = ("0.0.0.0", 0)) -> None:
        try:
            self.server = socket.create_server(address)
        except OSError as error:
            # Taken: something listens there already, which serves a test as well.
            assert error.errno == errno.EADDRINUSE, error
            self.server = socket.socket()
            self.port: int = address[1]
            return
        self.port = self.server.getsockname()[1]
        self._word = word.encode() + b"\n"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.server.accept()
                with connection:
                    connection.sendall(self._word)

    def close(self) -> None:
        self.server.close()


def host_address() -> str:
    """The host's own first global IPv4 address (eth0's), environments' gateways left out."""
    listing = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in listing.splitlines():
        found = re.search(r"inet (\S+)/", line)
        if found and not line.split()[1].startswith("lm") and not found[1].startswith("100."):
            return found[1]
    raise AssertionError(f"no global IPv4 address on this host: {listing}")


@pytest.fixture(scope="module")
def greeters() -> Iterator[tuple[Greeter, Greeter]]:
    database, other = Greeter("database"), Greeter("other")
    yield database, other
    database.close()
    other.close()


@pytest.fixture(scope="module")
def database_rule(greeters: tuple[Greeter, Greeter]) -> str:
    return f"{host_address()}/32:{greeters[0].port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database_rule: str) -> Iterator[LaminaServer]:
    data = tmp_path_factory.mktemp("vpc") / "data"
    data.mkdir()
    (data / "networks.toml").write_text(NETWORKS.replace("DATABASE", database_rule))
    # VPCs need a network namespace per environment (elsewhere invocations are refused).
    instance = LaminaServer(data, env={"LAMINA_ISOLATION": "namespace"}).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(server: LaminaServer) -> Iterator[Any]:
    yield from lambda_client_of(server)


@pytest.fixture
def create(client: Any, unique_name: Callable[[str], str]) -> Callable[..., dict[str, Any]]:
    def make(**overrides: Any) -> dict[str, Any]:
        response: dict[str, Any] = client.create_function(
            **{
                "FunctionName": unique_name("vpc"),
                "Runtime": "python3.12",
                "Role": ROLE,
                "Handler": "app.handler",
                "Code": {"ZipFile": make_zip({"app.py": CODE})},
                **overrides,
            }
        )
        return response

    return make


def test_a_function_in_the_vpc_reaches_only_what_its_security_group_allows(
    client: Any, create: Any, greeters: tuple[Greeter, Greeter]
) -> None:
    database, other = greeters
    address = host_address()
    allowed = f"{address}:{database.port}"
    refused = [f"{address}:{other.port}", f"127.0.0.1:{database.port}", "127.0.0.1:5432"]
    inside = create(VpcConfig=in_db(), Handler="app.reach", Timeout=30)["FunctionName"]
    outside = create(Handler="app.reach", Timeout=30)["FunctionName"]
    results = invoke(client, inside, {"targets": [allowed, *refused]})
    assert results[allowed] == "connected: database"
    assert not [target for target in refused if results[target].startswith("connected")], results
    # Without VpcConfig, the default egress policy keeps the host's own services away too.
    assert not invoke(client, outside, {"targets": [allowed]})[allowed].startswith("connected")


def test_broad_egress_never_reaches_the_hosts_own_services(
    server: LaminaServer, client: Any, create: Any, greeters: tuple[Greeter, Greeter]
) -> None:
    """0.0.0.0/0 and 10.0.0.0/8 reach what is beyond the host, never the host itself: not its
    other services, and not the platform's ports (PostgreSQL's, the API's) on any of its
    addresses; an explicit rule naming the host's address and a port still does."""
    database, other = greeters
    address = host_address()
    allowed = f"{address}:{database.port}"
    # Stand-ins for a PostgreSQL and a Lamina API listening on the host's address (the real
    # ones here listen on 127.0.0.1 only), unless something already does.
    stand_ins = [Greeter("postgres", (address, 5432)), Greeter("api", (address, server.port))]
    refused = [
        f"{address}:{other.port}",
        f"{address}:5432",
        f"{address}:{server.port}",
        "127.0.0.1:5432",
        f"127.0.0.1:{server.port}",
    ]
    try:
        wide = {"SubnetIds": [SUBNET_A], "SecurityGroupIds": [GROUP_WIDE]}
        inside = create(VpcConfig=wide, Handler="app.reach", Timeout=30)["FunctionName"]
        results = invoke(client, inside, {"targets": [allowed, *refused]})
    finally:
        for stand_in in stand_ins:
            stand_in.close()
    assert results[allowed] == "connected: database"
    assert {target: results[target] for target in refused} == dict.fromkeys(refused, "ECONNREFUSED")


def test_a_function_in_the_vpc_uses_its_resolvers(client: Any, create: Any) -> None:
    inside = create(VpcConfig=in_db(), Handler="app.resolvers")["FunctionName"]
    assert invoke(client, inside) == "nameserver 192.0.2.53\n"


def in_db(*subnets: str) -> dict[str, Any]:
    return {"SubnetIds": list(subnets or [SUBNET_A]), "SecurityGroupIds": [GROUP_DB]}


def test_vpc_config_is_returned_with_its_vpc_id(client: Any, create: Any) -> None:
    created = create(VpcConfig=in_db(SUBNET_A, SUBNET_B))
    expected = {
        "SubnetIds": [SUBNET_A, SUBNET_B],
        "SecurityGroupIds": [GROUP_DB],
        "VpcId": VPC_DB,
        "Ipv6AllowedForDualStack": False,
    }
    assert created["VpcConfig"] == expected
    name = created["FunctionName"]
    assert client.get_function_configuration(FunctionName=name)["VpcConfig"] == expected
    assert client.get_function(FunctionName=name)["Configuration"]["VpcConfig"] == expected
    listed = [f for f in client.list_functions()["Functions"] if f["FunctionName"] == name]
    assert listed[0]["VpcConfig"] == expected
    assert invoke(client, name) == "ok"


def test_removing_vpc_config_leaves_aws_empty_shape(client: Any, create: Any) -> None:
    name = create(VpcConfig=in_db())["FunctionName"]
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    updated = client.update_function_configuration(
        FunctionName=name, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []}
    )
    empty = {"SubnetIds": [], "SecurityGroupIds": [], "VpcId": "", "Ipv6AllowedForDualStack": False}
    assert updated["VpcConfig"] == empty
    client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert client.get_function_configuration(FunctionName=name)["VpcConfig"] == empty


def test_functions_without_vpc_config_have_none(create: Any) -> None:
    assert "VpcConfig" not in create()


@pytest.mark.parametrize(
    ("vpc_config", "message"),
    [
        (
            {"SubnetIds": ["subnet-0123456789abcdef0"], "SecurityGroupIds": [GROUP_DB]},
            "Error occurred while DescribeSubnets. EC2 Error Code: InvalidSubnetID.NotFound. "
            "EC2 Error Message: The subnet ID 'subnet-0123456789abcdef0' does not exist",
        ),
        (
            {"SubnetIds": [SUBNET_A], "SecurityGroupIds": ["sg-0123456789abcdef0"]},
            "Error occurred while DescribeSecurityGroups. EC2 Error Code: InvalidGroup.NotFound. "
            "EC2 Error Message: The security group 'sg-0123456789abcdef0' does not exist",
        ),
        (
            {"SubnetIds": [SUBNET_A]},
            "SubnetIds and SecurityIds must coexist or be both empty list.",
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
def test_create_refuses_what_the_file_does_not_declare(
    create: Any, vpc_config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        create(VpcConfig=vpc_config)
    assert error_of(excinfo) == ("InvalidParameterValueException", message, 400)


def test_update_refuses_an_unknown_subnet(client: Any, create: Any) -> None:
    name = create()["FunctionName"]
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    with pytest.raises(ClientError) as excinfo:
        client.update_function_configuration(
            FunctionName=name,
            VpcConfig={"SubnetIds": ["subnet-0000000000000000a"], "SecurityGroupIds": [GROUP_DB]},
        )
    assert error_of(excinfo)[0] == "InvalidParameterValueException"
    assert "VpcConfig" not in client.get_function_configuration(FunctionName=name)


def test_the_model_limits_subnets_and_security_groups(create: Any) -> None:
    too_many = {"SubnetIds": [SUBNET_A], "SecurityGroupIds": [f"sg-{n}" for n in range(6)]}
    with pytest.raises(ClientError) as excinfo:
        create(VpcConfig=too_many)
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert "'vpcConfig.securityGroupIds' failed to satisfy constraint" in message
    assert "Member must have length less than or equal to 5" in message


def test_a_subnet_removed_from_the_file_fails_invocations(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "networks.toml").write_text(NETWORKS.replace("DATABASE", "10.0.0.0/8"))
    server = LaminaServer(data).start()
    name = unique_name("gone")
    try:
        lambda_client = server.client("lambda")
        lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": CODE})},
            VpcConfig=in_db(SUBNET_B),
        )
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
    finally:
        server.stop()
    without_b = NETWORKS.replace(f', "{SUBNET_B}" = "10.0.2.0/24"', "")
    (data / "networks.toml").write_text(without_b.replace("DATABASE", "10.0.0.0/8"))
    server.start()
    try:
        lambda_client = server.client("lambda")
        with pytest.raises(ClientError) as excinfo:
            lambda_client.invoke(FunctionName=name, Payload=b"{}")
        code, message, status = error_of(excinfo)
        assert (code, status) == ("InvalidSubnetIDException", 502)
        assert f"'{SUBNET_B}'" in message
        # Other changes to the function are still accepted.
        lambda_client.update_function_configuration(FunctionName=name, Timeout=5)
    finally:
        server.stop()


def test_a_malformed_file_stops_the_server_naming_the_entry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "networks.toml").write_text('[vpcs.broken]\nid = "vpc-1"\nsubnets = { "x" = "y" }\n')
    server = LaminaServer(data)
    with pytest.raises(RuntimeError) as excinfo:
        server.start()
    server.stop()
    assert f"lamina: {data / 'networks.toml'}: vpcs.broken.subnets: 'x' is not a subnet id" in str(
        excinfo.value
    )
    assert "Traceback" not in str(excinfo.value)
