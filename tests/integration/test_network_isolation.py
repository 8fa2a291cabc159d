"""A network namespace per environment (namespace backend), proven from inside functions.

A server in a test-made network namespace stands in for the outside world: functions reach
it through NAT, while the host's loopback services, the host's own addresses, the API port
and other environments stay out of reach. Python functions (forked from a template) and Node
functions (fresh processes) enter their namespaces by different paths; both are checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.model.networks import EgressRule, NetworkPolicy
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.cgroups import open_manager
from lamina.sandbox.namespace import NamespaceBackend
from lamina.sandbox.network import NetworkOptions
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP
from lamina.sandbox.zygote import Templates, library_path
from tests.support import netns
from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, invoke
from tests.support.server import LaminaServer, lambda_client_of

PYTHON = r'''
import errno, os, socket, threading

def _attempt(target):
    host, port = target.rsplit(":", 1)
    try:
        connection = socket.create_connection((host, int(port)), timeout=3)
    except socket.timeout:
        return "timeout"
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))
    with connection:
        connection.settimeout(1)
        try:
            # Our greeters speak first; an HTTP server waits for a request.
            return "connected: " + connection.recv(64).decode().strip()
        except OSError:
            return "connected: "

def reach(event, context):
    return {
        "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"],
        "endpoint": os.environ.get("AWS_ENDPOINT_URL", ""),
        "results": {target: _attempt(target) for target in event["targets"]},
    }

def _address():
    # A UDP "connect" sends nothing; it only picks the address a packet would leave from.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect(("100.64.0.1", 9))
    address = probe.getsockname()[0]
    probe.close()
    return address

def address_or_die(event, context):
    if event.get("die"):
        os._exit(1)
    return {"address": _address(), "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"]}

_listening = []

def _serve(server):
    while True:
        connection, _ = server.accept()
        connection.sendall(b"environment\n")
        connection.close()

def listen(event, context):
    """Listen on every address of the environment and say where it is."""
    if not _listening:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", 7000))
        server.listen(8)
        threading.Thread(target=_serve, args=(server,), daemon=True).start()
        _listening.append(server)
    address = _address()
    return {"address": address, "self": _attempt(address + ":7000")}
'''

NODE = r"""
const net = require('net');

const attempt = (target) => new Promise((resolve) => {
  const at = target.lastIndexOf(':');
  const socket = net.connect({ host: target.slice(0, at), port: Number(target.slice(at + 1)) });
  let data = '';
  let connected = false;
  socket.on('connect', () => { connected = true; });
  const timer = setTimeout(() => {
    socket.destroy();
    resolve(connected ? 'connected: ' + data.trim() : 'timeout');
  }, 3000);
  socket.on('data', (chunk) => { data += chunk; });
  socket.on('end', () => { clearTimeout(timer); resolve('connected: ' + data.trim()); });
  socket.on('error', (error) => { clearTimeout(timer); resolve(error.code); });
});

exports.reach = async (event) => {
  const results = {};
  for (const target of event.targets) results[target] = await attempt(target);
  return { runtime_api: process.env.AWS_LAMBDA_RUNTIME_API, results };
};
"""

# A TCP server for the outside world's namespace: greets and hangs up.
GREETER = r"""
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(16)
while True:
    connection, _ = server.accept()
    connection.sendall(b"outside\n")
    connection.close()
"""
OUTSIDE_PORT = 8080
# Served too, but never allowed by the named network below.
OTHER_PORT = 8081

_REGISTRY = RuntimeRegistry()
NODE_RUNTIME = next(
    (name for name in ("nodejs20.x", "nodejs22.x", "nodejs18.x") if _REGISTRY.interpreter(name)),
    None,
)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def host_addresses() -> list[str]:
    """The host's own global IPv4 addresses (eth0's, …), test networks' bridges and the
    environments' gateways left out."""
    listing = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for line in listing.splitlines():
        name = line.split()[1]
        address = re.search(r"inet (\S+)/", line)
        # 100.64.0.0/10: the gateways of servers' environments, which they may reach.
        if address and not name.startswith("lmb") and not address.group(1).startswith("100."):
            found.append(address.group(1))
    return found


@pytest.fixture(scope="module")
def outside() -> Iterator[netns.Host]:
    """A server in another network namespace, standing in for the internet."""
    if not netns.available():
        pytest.skip("needs root and iproute2 to make a network namespace")
    network = netns.Network().open()
    try:
        host = network.add_host()
        servers = [
            subprocess.Popen(
                host.command(sys.executable, "-c", GREETER, str(port)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in (OUTSIDE_PORT, OTHER_PORT)
        ]
        try:
            for port in (OUTSIDE_PORT, OTHER_PORT):
                wait_for_port(host.address, port)
            yield host
        finally:
            for server in servers:
                server.kill()
                server.wait()
    finally:
        network.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    if os.environ.get("LAMINA_ISOLATION") == "process":
        pytest.skip("LAMINA_ISOLATION=process: testing the process backend deliberately")
    data = tmp_path_factory.mktemp("network") / "data"
    # On every address of the host, so that "the host's own address" has the API behind it.
    instance = LaminaServer(data, env={"LAMINA_ISOLATION": "namespace"})
    instance.start("--host", "0.0.0.0", "--insecure")
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(server: LaminaServer) -> Iterator[Any]:
    yield from lambda_client_of(server)


@pytest.fixture
def make_function(client: Any, unique_name: Callable[[str], str]) -> Callable[..., str]:
    def make(handler: str, runtime: str = "python3.12") -> str:
        name = unique_name("net")
        if runtime.startswith("nodejs"):
            files, handler_name = {"index.js": NODE}, f"index.{handler}"
        else:
            files, handler_name = {"app.py": PYTHON}, f"app.{handler}"
        client.create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=ROLE,
            Handler=handler_name,
            Code={"ZipFile": make_zip(files)},
            Timeout=30,
        )
        return name

    return make


def forbidden_targets(server: LaminaServer) -> list[str]:
    port = server.endpoint.rsplit(":", 1)[1].rstrip("/")
    targets = ["127.0.0.1:5432", f"127.0.0.1:{port}", "127.0.0.1:6379"]
    targets += [f"{address}:{port}" for address in host_addresses()]
    targets += [f"{address}:5432" for address in host_addresses()]
    return targets


@pytest.mark.parametrize("runtime", ["python3.12", "node"])
def test_function_reaches_the_outside_and_not_the_host(
    runtime: str,
    server: LaminaServer,
    outside: netns.Host,
    client: Any,
    make_function: Callable[..., str],
) -> None:
    if runtime == "node":
        if NODE_RUNTIME is None:
            pytest.skip("no Node.js 18, 20 or 22 on this host")
        runtime = NODE_RUNTIME
    forbidden = forbidden_targets(server)
    allowed = f"{outside.address}:{OUTSIDE_PORT}"
    result = invoke(client, make_function("reach", runtime), {"targets": [*forbidden, allowed]})
    assert result["runtime_api"] == "127.0.0.1:9001"
    assert result["results"][allowed] == "connected: outside"
    blocked = {target: result["results"][target] for target in forbidden}
    assert not [target for target, outcome in blocked.items() if outcome.startswith("connected")]


def test_the_host_reaches_what_the_function_cannot(server: LaminaServer) -> None:
    # The refusals above are the namespace's doing: from the host the API port answers.
    port = int(server.endpoint.rsplit(":", 1)[1].rstrip("/"))
    for address in ["127.0.0.1", *host_addresses()[:1]]:
        socket.create_connection((address, port), timeout=5).close()


def test_the_gateway_is_reachable_on_its_port_only(
    client: Any, make_function: Callable[..., str]
) -> None:
    name = make_function("reach")
    endpoint = invoke(client, name, {"targets": []})["endpoint"]
    host, _, port = endpoint.removeprefix("http://").rstrip("/").rpartition(":")
    if not host.startswith("100."):
        pytest.skip(f"function code is not pointed at a gateway address here ({endpoint!r})")
    gateway, elsewhere = f"{host}:{port}", f"{host}:5432"
    results = invoke(client, name, {"targets": [gateway, elsewhere]})["results"]
    # The service gateway (the server listens there) is the one door into the host.
    assert results[gateway].startswith("connected")
    assert not results[elsewhere].startswith("connected")


def test_two_environments_cannot_reach_each_other(
    client: Any, make_function: Callable[..., str]
) -> None:
    listener = make_function("listen")
    found = invoke(client, listener)
    # Its own listener answers inside its namespace…
    assert found["self"] == "connected: environment"
    assert found["address"].startswith("100.")
    # …while another environment, of another function, is refused.
    intruder = make_function("reach")
    target = f"{found['address']}:7000"
    result = invoke(client, intruder, {"targets": [target]})
    assert not result["results"][target].startswith("connected")
    # The listening environment was left alone.
    assert invoke(client, listener) == found


def test_namespaces_are_reused_after_their_environments_end(
    client: Any, make_function: Callable[..., str]
) -> None:
    name = make_function("address_or_die")
    addresses = []
    for _ in range(20):
        result = invoke(client, name)  # a cold start: the last environment crashed
        assert result["runtime_api"] == "127.0.0.1:9001"
        addresses.append(result["address"])
        # A crash ends the environment; its namespace goes back to the pool once every
        # process in it is gone, and serves a later cold start as new.
        response = client.invoke(FunctionName=name, Payload=b'{"die": true}')
        assert response["FunctionError"] == "Unhandled"
        response["Payload"].read()
    assert len(set(addresses)) < len(addresses)


def test_network_isolation_can_be_turned_off(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    if os.environ.get("LAMINA_ISOLATION") == "process":
        pytest.skip("LAMINA_ISOLATION=process: testing the process backend deliberately")
    env = {"LAMINA_ISOLATION": "namespace", "LAMINA_NETWORK_ISOLATION": "off"}
    shared = LaminaServer(tmp_path / "data", env=env).start()
    try:
        client = shared.client("lambda")
        name = unique_name("net")
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.reach",
            Code={"ZipFile": make_zip({"app.py": PYTHON})},
            Timeout=30,
        )
        api = f"127.0.0.1:{shared.port}"
        result = invoke(client, name, {"targets": [api]})
        client.close()
    finally:
        shared.stop()
    # The host's network, as the operator asked: its loopback services are reachable.
    assert result["results"][api].startswith("connected")
    assert result["runtime_api"] != "127.0.0.1:9001"


@pytest.mark.parametrize(
    ("isolation", "line"),
    [
        ("namespace", "  [yes] network namespace per environment"),
        ("process", "  [no ] network isolation - functions share the host's network"),
    ],
)
def test_doctor_says_whether_functions_have_a_network_of_their_own(
    isolation: str, line: str
) -> None:
    if os.environ.get("LAMINA_ISOLATION") == "process" and isolation == "namespace":
        pytest.skip("LAMINA_ISOLATION=process: testing the process backend deliberately")
    result = subprocess.run(
        [sys.executable, "-m", "lamina", "doctor"],
        env={**os.environ, "LAMINA_ISOLATION": isolation},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert any(found.startswith(line) for found in result.stdout.splitlines()), result.stdout


# ------------------------------------------------------------------ named networks (VPC)

# Runs while the bootstrap imports it: tries every target, prints the outcomes, and ends.
PROBE = (
    PYTHON
    + """
import json
targets = os.environ["TARGETS"].split(",")
results = {target: _attempt(target) for target in targets}
results["resolv.conf"] = open("/etc/resolv.conf").read()
print("RESULTS " + json.dumps(results), flush=True)
os._exit(0)
"""
)


class HostGreeter:
    """A greeter on every address of the host: the operator's "database host"."""

    def __init__(self) -> None:
        self.server = socket.create_server(("0.0.0.0", 0))
        self.port = self.server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.server.accept()
                with connection:
                    connection.sendall(b"host\n")

    def close(self) -> None:
        self.server.close()


async def probe_from(
    backend: NamespaceBackend, task_root: Path, network: NetworkPolicy | None, targets: list[str]
) -> dict[str, str]:
    spec = SandboxSpec(
        command=(sys.executable, "-u", str(PYTHON_BOOTSTRAP)),
        environment={
            "PATH": "/usr/bin:/bin",
            # As the invoke service sets it: a template forks such a runtime.
            "LD_LIBRARY_PATH": library_path(str(task_root), "/opt"),
            "TARGETS": ",".join(targets),
            "_HANDLER": "probe.handler",
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9",
        },
        task_root=task_root,
        opt_dir=None,
        memory_mb=128,
        ephemeral_mb=64,
        scratch_root=task_root.parents[2] / "environments" / uuid.uuid4().hex,
        network=network,
    )
    sandbox = await backend.start(spec)
    try:
        await asyncio.wait_for(sandbox.wait(), 60)
        output = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(sandbox.output_fd, 65536):
                output += chunk
    finally:
        sandbox.kill()
        sandbox.cleanup()
    for line in output.decode().splitlines():
        if line.startswith("RESULTS "):
            results: dict[str, str] = json.loads(line[len("RESULTS ") :])
            return results
    raise AssertionError(f"no results: {output!r}")


@pytest.mark.parametrize("templates", [False, True], ids=["fresh", "template"])
def test_a_named_network_reaches_only_what_it_allows(
    templates: bool, outside: netns.Host, tmp_path: Path
) -> None:
    if os.environ.get("LAMINA_ISOLATION") == "process":
        pytest.skip("LAMINA_ISOLATION=process: testing the process backend deliberately")
    task_root = tmp_path / "artifacts" / "code" / "probe"
    task_root.mkdir(parents=True)
    (task_root / "probe.py").write_text(PROBE)
    greeter = HostGreeter()
    (host_address, *_) = host_addresses()
    allowed = f"{outside.address}:{OUTSIDE_PORT}"
    other_port = f"{outside.address}:{OTHER_PORT}"
    database = f"{host_address}:{greeter.port}"
    targets = [allowed, other_port, database, f"{host_address}:22", "127.0.0.1:5432"]
    vpc_db = NetworkPolicy(
        name="vpc-db",
        internet=False,
        allow=(
            EgressRule(ipaddress.ip_network(f"{outside.address}/32"), (OUTSIDE_PORT,)),
            EgressRule(ipaddress.ip_network(f"{host_address}/32"), (greeter.port,)),
        ),
        dns=("192.0.2.53", "192.0.2.54"),
    )

    async def scenario() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        cgroups, reason = open_manager()
        backend = NamespaceBackend(cgroups, reason, network=NetworkOptions(pool_size=1))
        if templates:
            backend.use_templates(Templates(sandboxed=True))
        try:
            assert backend.network is not None, backend.network_reason
            named = await probe_from(backend, task_root, vpc_db, targets)
            default = await probe_from(backend, task_root, None, targets)
            # A slot given back serves its own network's next environment the same way.
            again = await probe_from(backend, task_root, vpc_db, targets)
            return named, default, again
        finally:
            backend.close()

    try:
        named, default, again = asyncio.run(scenario())
    finally:
        greeter.close()
    assert named[allowed] == "connected: outside"
    assert named[database] == "connected: host"
    assert not named[other_port].startswith("connected")
    assert not named[f"{host_address}:22"].startswith("connected")
    assert not named["127.0.0.1:5432"].startswith("connected")
    assert again == named
    assert named["resolv.conf"] == "nameserver 192.0.2.53\nnameserver 192.0.2.54\n"
    assert default["resolv.conf"] == Path("/etc/resolv.conf").read_text()
    # The default network reaches the outside on any port, and not the host.
    assert default[allowed] == "connected: outside"
    assert default[other_port] == "connected: outside"
    assert not default[database].startswith("connected")


def test_the_platforms_store_is_refused_to_every_network(
    outside: netns.Host, tmp_path: Path
) -> None:
    if os.environ.get("LAMINA_ISOLATION") == "process":
        pytest.skip("LAMINA_ISOLATION=process: testing the process backend deliberately")
    # Here the outside host plays the cluster's PostgreSQL, on another machine; the same
    # host's other services stay reachable.
    task_root = tmp_path / "artifacts" / "code" / "probe"
    task_root.mkdir(parents=True)
    (task_root / "probe.py").write_text(PROBE)
    store = f"{outside.address}:{OUTSIDE_PORT}"
    other = f"{outside.address}:{OTHER_PORT}"
    allowing = NetworkPolicy(
        name="allows-the-store",
        internet=True,
        allow=(EgressRule(ipaddress.ip_network(f"{outside.address}/32")),),
    )

    async def scenario() -> tuple[dict[str, str], dict[str, str]]:
        cgroups, reason = open_manager()
        options = NetworkOptions(platform_endpoints=((outside.address, OUTSIDE_PORT),), pool_size=1)
        backend = NamespaceBackend(cgroups, reason, network=options)
        try:
            default = await probe_from(backend, task_root, None, [store, other])
            named = await probe_from(backend, task_root, allowing, [store, other])
            return default, named
        finally:
            backend.close()

    default, named = asyncio.run(scenario())
    assert not default[store].startswith("connected")
    # Not even a network whose rules name it: the platform's own data stays out of reach.
    assert not named[store].startswith("connected")
    assert default[other] == named[other] == "connected: outside"
