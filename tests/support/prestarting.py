"""The namespace backend on its own, with runtimes started ahead (`lamina.sandbox.prestarted`):
shared by the Node and Python tests of environments that never start."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.cgroups import open_manager
from lamina.sandbox.namespace import NamespaceBackend
from lamina.sandbox.network import NetworkOptions
from lamina.sandbox.prestarted import PER_KIND
from lamina.sandbox.zygote import Templates
from tests.support.lambda_api import call, log_tail
from tests.support.sandboxes import eventually, process_gone
from tests.support.waiting import wait_until


@contextlib.asynccontextmanager
async def templated_backend(network: bool = False) -> AsyncIterator[NamespaceBackend]:
    """A namespace backend with templates (and so runtimes started ahead), and network
    namespaces if asked; closed after."""
    cgroups, reason = open_manager()
    options = NetworkOptions(pool_size=2) if network else None
    backend = NamespaceBackend(cgroups, reason, network=options)
    backend.use_templates(Templates(sandboxed=True))
    try:
        yield backend
    finally:
        backend.close()


async def listen_and_abandon(backend: NamespaceBackend, spec: SandboxSpec) -> None:
    """What the environment does when its Runtime API cannot be served: `listen`, then
    `abandon` without a `start`."""
    (await backend.listen(spec)).close()
    backend.abandon(spec)


async def one_taken_and_abandoned(
    make_spec: Callable[[], SandboxSpec], waiting_runtimes: Callable[[], set[int]]
) -> tuple[set[int], set[int]]:
    """A kind's first environment never starts (nothing waits for it, and its kind fills
    behind it); the next takes one of the runtimes waiting, then never starts either. Returns
    the runtimes that waited, and those of them that ended."""
    async with templated_backend() as backend:
        await listen_and_abandon(backend, make_spec())
        waiting: set[int] = set()

        def filled() -> bool:
            nonlocal waiting
            waiting = waiting_runtimes()
            return len(waiting) == PER_KIND

        assert await eventually(filled, timeout=30), waiting
        await listen_and_abandon(backend, make_spec())
        gone: set[int] = set()

        def one_ended() -> bool:
            nonlocal gone
            gone = {pid for pid in waiting if process_gone(pid)}
            return bool(gone)

        assert await eventually(one_ended, timeout=10)
        return waiting, gone


# ----------------------------------------------------------- seen from the host, over HTTP


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def state_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def host_pid_of_uid(uid: int) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError(f"no process of uid {uid}")


def probe_of(client: Any, name: str) -> dict[str, Any]:
    """The result of calling `name`, which must not fail."""
    response, result = call(client, name, {})
    assert "FunctionError" not in response, result
    assert isinstance(result, dict)
    return result


def assert_only_code_follows_host(mountinfo: list[str]) -> None:
    """Every mount of an environment private (as a fresh root's), but the code's two, which
    follow the host's mount points, read-only."""
    following = [line for line in mountinfo if "master:" in line or "shared:" in line]
    assert following
    assert all(line.split()[4] in {"/var/task", "/opt"} for line in following), following
    assert not any("shared:" in line for line in mountinfo)
    code = [line for line in mountinfo if line.split()[4] == "/var/task"][-1]
    assert code.split()[5].startswith("ro,")
    assert "nosuid" in code.split()[5]


def assert_killed_at_its_memory(client: Any, name: str, uids: set[int]) -> None:
    """`name`'s handler prints its uid, then eats more than its memory: it is killed, and
    it was one of the runtimes of `uids`."""
    response, _ = call(client, name, {}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    tail = log_tail(response)
    assert "Error Type: Runtime.OutOfMemory" in tail
    assert any(f"uid {uid}" in tail for uid in uids), (uids, tail)


def ready_after(client: Any, first: str, waiting_runtimes: Callable[[], set[int]]) -> set[int]:
    """Cold-start `first`, and wait until its kind has all its runtimes started ahead
    waiting (`waiting_runtimes` finds them); returns them."""
    probe_of(client, first)
    return wait_until(
        lambda: found if len(found := waiting_runtimes()) >= PER_KIND else None,
        timeout=30,
        message=f"no runtime was started ahead after {first}",
    )


def served_by(waiting: set[int], report: dict[str, Any]) -> bool:
    """Whether the runtime that reported its uid in `report` was one of `waiting`."""
    return host_pid_of_uid(int(report["uid"])) in waiting
