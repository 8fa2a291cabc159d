"""The pool of prepared network namespaces: taking, giving back, lending a slot's interface,
and cleaning up after a crash.

These make real namespaces (root, iproute2 and nft); the block is claimed through the same
lock file servers use, so a running server's namespaces are never touched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.sandbox import snapshots
from lamina.sandbox.namespace import UidPool, _lock_dir
from lamina.sandbox.network import NetworkIsolation, NetworkOptions, firewall, slots, tools
from lamina.sandbox.network import pool as network_pool
from lamina.sandbox.network.addresses import AddressPlan, SlotAddresses
from lamina.sandbox.network.slots import InNamespace, Slot, SlotError
from tests.support import netns
from tests.support.reachable import elsewhere

pytestmark = pytest.mark.skipif(tools()[0] is None, reason=tools()[1] or "no tools")


@pytest.fixture
def block() -> Iterator[int]:
    uids = UidPool(_lock_dir())
    held = netns.held_by_this_process()
    try:
        yield uids.block
        # A slot's descriptor is all that keeps its namespace: none may outlive the test.
        assert netns.held_by_this_process() <= held
    finally:
        uids.close()


def namespaces(plan: AddressPlan) -> set[str]:
    """The block's namespaces that still have a name (only while being made)."""
    return {name for name in os.listdir("/run/netns") if name.startswith(plan.netns_prefix)}


def links(plan: AddressPlan) -> set[str]:
    """The host ends of the block's veth pairs: one per namespace still there."""
    return netns.host_links(plan.interface_prefix)


def all_gone(plan: AddressPlan) -> bool:
    """No namespace of the block is left: none named, and no veth pair (a namespace no
    descriptor or process holds is freed by the kernel, its pair with it, moments later)."""
    deadline = time.monotonic() + 10
    while links(plan) or namespaces(plan):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def tables() -> str:
    listing = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return listing.stdout


def wait_pooled(isolation: NetworkIsolation, count: int) -> None:
    deadline = time.monotonic() + 20
    while isolation.pooled() < count:
        assert time.monotonic() < deadline, "the pool was not filled"
        time.sleep(0.01)


def test_a_slot_is_taken_given_back_and_reused(block: int) -> None:
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=2))
    try:
        wait_pooled(isolation, 2)
        slot = asyncio.run(isolation.take(None))
        # Held by its descriptor alone: no name for every new mount namespace to copy.
        assert slot.fd >= 0 and not os.path.exists(slot.path)
        assert slot.addresses.host_interface in links(isolation.plan)
        listener = isolation.listen(slot)
        assert listener.getsockname() == ("127.0.0.1", 9001)
        listener.close()
        isolation.give_back(slot)
        # The namespace given back is in the pool (at most 3 long) and handed out again.
        taken = [asyncio.run(isolation.take(None)) for _ in range(3)]
        assert slot in taken
    finally:
        isolation.close()
    for slot in taken:
        isolation.give_back(slot)  # as their environments would; closed with the pool
    assert all_gone(isolation.plan)
    assert f"lamina_{block} " not in tables() + " "


@pytest.mark.parametrize("how", ["give_back", "discard"])
def test_a_slot_that_comes_back_after_the_pool_closed_is_closed_at_once(
    block: int, how: str
) -> None:
    # As an environment that outlived the server's stop: its namespace went by name.
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=1))
    wait_pooled(isolation, 1)
    slot = asyncio.run(isolation.take(None))
    isolation.close()
    assert slot.fd >= 0
    getattr(isolation, how)(slot)
    assert slot.fd == -1
    assert all_gone(isolation.plan)


def test_close_waits_for_a_slot_maker_inside_a_namespace_then_lets_none_in(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot maker (the filler, or one making slots for a taker) configures each namespace
    from inside it and comes back to the server's own by a descriptor the pool holds: close
    keeps that open until the maker is back, and lets no thread in after."""
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=0, named_pool_size=0))
    inside, leave = threading.Event(), threading.Event()
    configure = slots.configure_environment_side

    def configure_slowly(link: SlotAddresses, no_ipv6: int | None = None) -> None:
        configure(link, no_ipv6)
        inside.set()
        leave.wait(30)

    monkeypatch.setattr(slots, "configure_environment_side", configure_slowly)
    table_gone = threading.Event()
    delete_table = firewall.delete_table

    def delete_table_and_say(*args: Any) -> None:
        delete_table(*args)
        table_gone.set()

    monkeypatch.setattr(firewall, "delete_table", delete_table_and_say)
    made: list[BaseException | list[Slot]] = []
    back_in: list[int] = []

    def make() -> None:
        try:
            made.append(isolation._make(None, 1))
        except BaseException as error:  # the pool closed meanwhile: its table is gone
            made.append(error)
        back_in.append(os.stat("/proc/thread-self/ns/net").st_ino)

    maker = threading.Thread(target=make)
    maker.start()
    closing = threading.Thread(target=isolation.close)
    try:
        assert inside.wait(10)
        closing.start()
        # Close has done all but its wait for the threads inside (however long that took).
        assert table_gone.wait(30)
        closing.join(1.0)
        assert closing.is_alive(), "close did not wait for the maker inside a namespace"
    finally:
        leave.set()
    maker.join(30)
    # Told as the maker came back: close's own wait for it would take 60 s.
    closing.join(30)
    assert not closing.is_alive()
    assert back_in == [os.stat("/proc/self/ns/net").st_ino]
    # The pool closed under the maker: what it made is removed, and it says so.
    assert made and isinstance(made[0], (OSError, SlotError, firewall.FirewallError))
    with pytest.raises(SlotError), isolation._entered(-1):
        pass
    assert all_gone(isolation.plan)


def test_the_filler_goes_on_after_a_tool_past_its_timeout(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An `ip` or `nft` that outlives its timeout fails one batch: the filler waits, tries
    again, and the pool fills (the thread used to end, and the pool never refilled)."""
    make = network_pool.make_slots
    calls: list[int] = []

    def slow_once(*args: Any, **kwargs: Any) -> list[Slot]:
        calls.append(1)
        if len(calls) == 1:
            raise subprocess.TimeoutExpired(["ip", "-batch", "-"], 60)
        return make(*args, **kwargs)

    monkeypatch.setattr(network_pool, "make_slots", slow_once)
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=1, named_pool_size=0))
    try:
        wait_pooled(isolation, 1)
        assert len(calls) >= 2
    finally:
        isolation.close()
    assert all_gone(isolation.plan)


def test_an_empty_pool_still_serves_at_once(block: int) -> None:
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=0, named_pool_size=0))
    try:
        slot = asyncio.run(isolation.take(None))
        assert slot.fd >= 0 and slot.addresses.host_interface in links(isolation.plan)
    finally:
        isolation.close()
    isolation.give_back(slot)


CRASH = """
import os, sys, time
from lamina.sandbox.network import NetworkIsolation, NetworkOptions
from lamina.sandbox.network.slots import run_ip
isolation = NetworkIsolation.open(int(sys.argv[1]), NetworkOptions(pool_size=3))
while isolation.pooled() < 3:
    time.sleep(0.01)
# A batch caught half made: its namespace still named, its veth pair there.
link = isolation.plan.slot(int(sys.argv[2]))
run_ip(
    f"netns add {link.netns}\\n"
    f"link add {link.host_interface} type veth peer name eth0 netns {link.netns}\\n",
    "ip",
)
os._exit(0)  # no close: a crash
"""


def test_a_crashed_servers_leftovers_go_when_its_block_is_claimed(
    block: int, tmp_path: Path
) -> None:
    plan = AddressPlan(block)
    half_made = plan.slot(200)
    subprocess.run(
        [sys.executable, "-c", CRASH, str(block), str(half_made.index)], check=True, timeout=60
    )
    # The pool's namespaces went with the crashed server's descriptors; the one still named
    # is left, with its pair, and so are the table and the gateway.
    deadline = time.monotonic() + 10
    while links(plan) != {half_made.host_interface}:
        assert time.monotonic() < deadline, links(plan)
        time.sleep(0.02)
    assert namespaces(plan) == {half_made.netns}
    assert f"inet {plan.table}" in tables()
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=1))
    try:
        wait_pooled(isolation, 1)
        # The crashed server's leftovers are gone; only the new pool's is there.
        assert namespaces(plan) == set()
        assert len(links(plan)) == 1
    finally:
        isolation.close()
    assert all_gone(plan)
    assert f"inet {plan.table}\n" not in tables()


def test_the_pool_refills_after_slots_are_taken(block: int) -> None:
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=2))
    try:
        wait_pooled(isolation, 2)
        taken = [asyncio.run(isolation.take(None))]
        # One taken leaves the pool above its low mark: refilled once takes pause.
        wait_pooled(isolation, 2)
        made = isolation.made
        taken += [asyncio.run(isolation.take(None)) for _ in range(2)]
        wait_pooled(isolation, 2)
        assert isolation.made == made + 2
    finally:
        isolation.close()
    for slot in taken:
        isolation.give_back(slot)


def test_takers_of_a_dry_pool_each_get_their_own_new_slot(block: int) -> None:
    """Many cold starts at once find the pool empty: the slots made for them on the spot
    (a batch for those waiting together) are distinct, working namespaces."""
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=0, named_pool_size=0))

    async def burst() -> list[Slot]:
        return list(await asyncio.gather(*(isolation.take(None) for _ in range(12))))

    try:
        taken = asyncio.run(burst())
        assert len({os.fstat(slot.fd).st_ino for slot in taken}) == 12
        assert len({slot.addresses.environment_address for slot in taken}) == 12
        for slot in taken:
            listener = isolation.listen(slot)
            assert listener.getsockname() == ("127.0.0.1", 9001)
            listener.close()
        assert isolation.made == 12
    finally:
        isolation.close()
    for slot in taken:
        isolation.give_back(slot)
    assert all_gone(isolation.plan)


def test_close_lets_go_of_every_taker_waiting_beyond_the_makers(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop comes while both on-demand makers are busy and more takers wait than they
    can each take in a batch: every taker is answered, with a slot or with an error it can
    handle (not a cancellation: its task was not cancelled), none is left waiting; and a
    taker that comes after gets the error at once."""
    monkeypatch.setattr(network_pool, "_ON_DEMAND_MAX", 1)  # a batch per taker
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=0, named_pool_size=0))
    making, release = threading.Semaphore(0), threading.Event()
    make = isolation._make

    def held(key: Any, count: int) -> list[Slot]:
        making.release()
        release.wait(30)
        return make(key, count)

    monkeypatch.setattr(isolation, "_make", held)
    closing = threading.Thread(target=isolation.close)

    async def stop_under_takers() -> list[BaseException | Slot | None]:
        loop = asyncio.get_running_loop()
        takers = [asyncio.ensure_future(isolation.take(None)) for _ in range(5)]
        for _ in range(2):  # both makers hold a batch of one; three takers wait
            assert await loop.run_in_executor(None, making.acquire, True, 10)
        closing.start()
        while not isolation._closing:
            await asyncio.sleep(0.01)
        release.set()
        _, pending = await asyncio.wait(takers, timeout=10)
        assert not pending, f"{len(pending)} takers still wait after close"
        assert not any(task.cancelled() for task in takers)
        return [task.exception() or task.result() for task in takers]

    try:
        answers = asyncio.run(stop_under_takers())
    finally:
        release.set()
        closing.join(60)
    assert not closing.is_alive()
    given = [answer for answer in answers if isinstance(answer, Slot)]
    assert len(given) == 2
    refused = [answer for answer in answers if isinstance(answer, network_pool.NetworkUnavailable)]
    assert len(refused) == 3
    with pytest.raises(network_pool.NetworkUnavailable):
        asyncio.run(isolation.take(None))
    for slot in given:
        isolation.give_back(slot)
    assert all_gone(isolation.plan)


def test_a_slot_made_for_a_taker_that_gave_up_goes_to_the_pool(block: int) -> None:
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=0, named_pool_size=0))
    try:
        slot = asyncio.run(isolation.take(None))
        gone: concurrent.futures.Future[Slot] = concurrent.futures.Future()
        gone.cancel()  # what a cancelled cold start leaves of its wait
        isolation._hand(gone, slot)
        assert isolation.pooled() == 1
        assert asyncio.run(isolation.take(None)) is slot
    finally:
        isolation.close()
    isolation.give_back(slot)
    assert all_gone(isolation.plan)


def ipv6_in(fd: int) -> tuple[str, str]:
    """(disable_ipv6, the IPv6 addresses) of the network namespace open as `fd`."""
    inside = InNamespace()
    try:
        with inside.entered(fd):
            with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as knob:
                disabled = knob.read().strip()
            with open("/proc/thread-self/net/if_inet6") as addresses:
                return disabled, addresses.read()
    finally:
        inside.close()


def test_every_slot_has_ipv6_off_across_renewed_procfs_instances(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slots.SysctlRoot, "RENEW_AFTER", 2)
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=0, named_pool_size=0))
    taken: list[Slot] = []
    try:
        taken = [asyncio.run(isolation.take(None)) for _ in range(5)]
        assert [ipv6_in(slot.fd) for slot in taken] == [("1", "")] * 5
    finally:
        isolation.close()
        for slot in taken:
            isolation.give_back(slot)
    assert all_gone(isolation.plan)


def procfs_of(fd: int) -> int:
    """The device of the procfs instance an open file of it belongs to."""
    try:
        return os.fstat(fd).st_dev
    finally:
        os.close(fd)


def test_the_sysctl_root_is_a_procfs_of_its_own_renewed_and_else_proc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = os.stat("/proc").st_dev
    made: list[int] = []

    def detached_procfs() -> int:
        made.append(detached())
        return made[-1]

    detached = slots.mounts.detached_procfs
    monkeypatch.setattr(slots.mounts, "detached_procfs", detached_procfs)
    root = slots.SysctlRoot()
    try:
        devices = [procfs_of(root.open_no_ipv6()) for _ in range(slots.SysctlRoot.RENEW_AFTER + 1)]
    finally:
        root.close()
    # An instance of its own, replaced once it has served RENEW_AFTER namespaces.
    assert host not in devices
    assert len(made) == 2
    # After close (a maker outliving the pool): /proc, and no new instance.
    assert procfs_of(root.open_no_ipv6()) == host and len(made) == 2

    # Out of descriptors for a moment: /proc this once, an instance again the next time.
    failures = [OSError(errno.EMFILE, "fsopen proc: Too many open files")]

    def failing_once() -> int:
        if failures:
            raise failures.pop()
        return detached_procfs()

    monkeypatch.setattr(slots.mounts, "detached_procfs", failing_once)
    root = slots.SysctlRoot()
    try:
        assert procfs_of(root.open_no_ipv6()) == host
        assert procfs_of(root.open_no_ipv6()) != host
    finally:
        root.close()

    # A kernel without the system call: /proc for good, and no further try.
    def unavailable() -> int:
        made.append(-1)
        raise OSError(errno.ENOSYS, "fsopen proc: Function not implemented")

    monkeypatch.setattr(slots.mounts, "detached_procfs", unavailable)
    root = slots.SysctlRoot()
    tries = len(made)
    assert [procfs_of(root.open_no_ipv6()) for _ in range(3)] == [host] * 3
    assert len(made) == tries + 1


def test_only_the_environments_own_address_gets_out(block: int) -> None:
    """A privileged process in a slot's namespace (root here; SnapStart init code could be)
    may add any address to eth0: datagrams from any but the slot's own are dropped on the
    host, instead of leaving it un-NATed with a forged source."""
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=0, named_pool_size=0))
    inside = InNamespace()
    try:
        slot = asyncio.run(isolation.take(None))
        with elsewhere() as outside:
            target = os.open(f"/run/netns/{outside.namespace}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                with inside.entered(target):
                    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            finally:
                os.close(target)
            receiver.bind((outside.address, 0))
            receiver.settimeout(1.0)
            forged = "192.0.2.77"  # TEST-NET-1: nobody's, and not NATed
            with inside.entered(slot.fd):  # `ip` forked from inside: the slot has no name
                netns.ip("addr", "add", f"{forged}/32", "dev", "eth0")

            def arrives(source: str) -> bool:
                with inside.entered(slot.fd):
                    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sender.bind((source, 0))
                    sender.sendto(source.encode(), receiver.getsockname())
                    try:
                        data, _ = receiver.recvfrom(100)
                    except TimeoutError:
                        return False
                    return data == source.encode()
                finally:
                    sender.close()

            assert arrives(slot.addresses.environment_address)
            assert not arrives(forged)
            receiver.close()
    finally:
        inside.close()
        isolation.close()
    isolation.give_back(slot)


# SnapStart lends a slot's eth0 to a restored environment's own network namespace. A start
# cancelled while the move still waits for its thread discards the slot at once, and the
# slot's descriptor number can then name a new slot's namespace: the queued move must act
# on its own duplicate of the descriptor, never on the number it was queued with (which the
# test would catch moving the new slot's eth0). The `block` fixture checks that the move
# ran and closed the descriptors it owned: a namespace descriptor left behind fails it.


class RestoredChild:
    """Stands in for a SnapStart child: its network namespace is a test-made one."""

    def __init__(self, namespace: str) -> None:
        self._path = f"/run/netns/{namespace}"

    def namespace(self, kind: str) -> int:
        assert kind == "net"
        return os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)


def has_eth0(fd: int) -> bool:
    """Whether the namespace open as `fd` holds an interface named eth0."""
    inside = InNamespace()
    try:
        with inside.entered(fd):
            return "eth0" in {name for _, name in socket.if_nameindex()}
    finally:
        inside.close()


@pytest.fixture
def restored() -> Iterator[str]:
    """A network namespace of its own, with nothing but loopback, as a restored child's."""
    name = f"lamina-lend-test-{os.getpid()}"
    netns.ip("netns", "add", name)
    try:
        yield name
    finally:
        netns.ip("netns", "del", name, check=False)


def test_a_move_cancelled_while_queued_leaves_a_new_slot_on_its_number_alone(
    block: int, restored: str
) -> None:
    isolation = NetworkIsolation.open(block, NetworkOptions(pool_size=0, named_pool_size=0))
    target = RestoredChild(restored)
    kept: list[Slot] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        # One worker, kept busy: the move waits in its queue.
        worker = concurrent.futures.ThreadPoolExecutor(1)
        loop.set_default_executor(worker)
        busy = threading.Event()
        holding = loop.run_in_executor(None, busy.wait, 30)
        try:
            slot = await isolation.take(None)
            number = slot.fd
            lending = asyncio.ensure_future(snapshots._lend(isolation, slot, target, None))
            await asyncio.sleep(0.05)
            lending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await lending
            # As the cancelled start does: the slot goes, and its descriptor is closed.
            isolation.discard(slot)
            # Removed whole (its veth pair deleted too) once its index is free again.
            deadline = time.monotonic() + 10
            while slot.addresses.index not in isolation._free:
                assert time.monotonic() < deadline, "the discarded slot was not removed"
                await asyncio.sleep(0.02)
            # A new slot on the same descriptor number (the lowest free one is reused).
            while not any(new.fd == number for new in kept):
                assert len(kept) < 8, f"no new slot got descriptor {number}"
                kept.append(await isolation.take(None))
        finally:
            busy.set()
        await holding
        await loop.run_in_executor(None, lambda: None)  # runs after the queued move
        worker.shutdown()

    try:
        asyncio.run(scenario())
        # The move found nothing to move (the discarded slot's pair is gone) and moved
        # nothing of the slot that now has its number.
        assert all(has_eth0(new.fd) for new in kept)
        restored_fd = os.open(f"/run/netns/{restored}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            assert not has_eth0(restored_fd)
        finally:
            os.close(restored_fd)
    finally:
        for new in kept:
            isolation.give_back(new)
        isolation.close()
