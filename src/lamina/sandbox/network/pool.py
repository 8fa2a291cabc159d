"""Network isolation for one server: its table, its gateway and pools of prepared slots.

Slots are made in the background, a batch at a time, by one filler thread, so a cold start
only takes one from a deque. The filler waits for a quiet moment (no slot taken for a
while) before it refills, unless a pool runs low: making namespaces costs CPU (iproute2
processes) that a burst of cold starts would otherwise share. A pool that runs dry makes
slots on the spot (slower, still correct), for the cold starts waiting, a batch at a time:
one iproute2 process for all the takers that arrived meanwhile rather than one each, with at
most `_ON_DEMAND_BATCHES` batches under way.

A slot comes back to its pool once every process of its environment is gone (the PID
namespace killed, the cgroup removed): nothing of the function can then hold a socket in it,
and its next environment finds it as new."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence

from lamina.model.networks import DEFAULT_NETWORK, NetworkPolicy
from lamina.sandbox.network import firewall
from lamina.sandbox.network.addresses import (
    MAX_SLOTS,
    RUNTIME_API_HOST,
    RUNTIME_API_PORT,
    AddressPlan,
)
from lamina.sandbox.network.options import NetworkOptions, tools
from lamina.sandbox.network.slots import (
    InNamespace,
    Slot,
    SlotError,
    SysctlRoot,
    configure_environment_side,
    make_slots,
    remove_leftovers,
    remove_slots,
    run_ip,
)

log = logging.getLogger("lamina.sandbox")

# A pool holds at most this many times its size; slots beyond are removed when given back.
_KEEP_FACTOR = 4
_RETRY_S = 1.0
# Refill once no slot was taken for this long, or at once below half a pool.
_QUIET_S = 0.2
# The key of the default network's pool.
_DEFAULT: NetworkPolicy | None = None
# Slots made on the spot for takers a dry pool keeps waiting: batches in hand at once (each
# prepares its addresses and firewall rules while another has its turn at making namespaces,
# see `slots`), and the most one batch makes.
_ON_DEMAND_BATCHES = 2
_ON_DEMAND_MAX = 32

Waiter = concurrent.futures.Future[Slot]


class NetworkUnavailable(RuntimeError):
    """The host cannot isolate environments' networks (tools missing, nft refused)."""


_STOPPING = "the network pool is closed: the server is stopping"


def _refuse(waiter: Waiter) -> None:
    """Answer a waiting taker with an error it can handle, not a cancellation: its task
    was not cancelled, and a cancellation would escape handlers of ordinary errors."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        waiter.set_exception(NetworkUnavailable(_STOPPING))


class NetworkIsolation:
    """A network namespace per environment, for the server holding `plan`'s block."""

    def __init__(self, plan: AddressPlan, options: NetworkOptions, ip: str, nft: str) -> None:
        self.plan = plan
        self._options = options
        self._ip = ip
        self._nft = nft
        self._inside = InNamespace()
        self._sysctl = SysctlRoot()
        # Threads inside another namespace through `_inside` now: it is closed only once
        # none is, or one would come back to a closed (or reused) descriptor.
        self._inside_now = 0
        self._ports: set[int] = set(options.gateway_ports)
        lock = threading.RLock()
        self._ready = threading.Condition(lock)
        # Told when the last thread inside a namespace comes back, for `close` alone: told
        # through `_ready`, the filler woke for nothing at every cold start.
        self._all_outside = threading.Condition(lock)
        self._pools: dict[NetworkPolicy | None, deque[Slot]] = {_DEFAULT: deque()}
        self._wanted: dict[NetworkPolicy | None, int] = {_DEFAULT: options.pool_size}
        self._chains: dict[NetworkPolicy, str] = {}
        self._chain_lock = threading.Lock()
        self._doomed: list[Slot] = []
        self._free: list[int] = []
        self._next = 1
        self._closing = False
        # Closed: every namespace of the block removed; a slot coming back is closed at once.
        self._closed = False
        self._filler: threading.Thread | None = None
        self._last_take = 0.0
        # Takers a dry pool keeps waiting, by pool, and the batches making slots for them.
        self._waiting: dict[NetworkPolicy | None, deque[Waiter]] = {}
        self._making = 0
        # Threads of their own for those batches: in a burst, the default executor's queue
        # holds every cold start's credential write, which the batch would wait behind.
        self._makers = concurrent.futures.ThreadPoolExecutor(
            _ON_DEMAND_BATCHES, thread_name_prefix="lamina-netns-now"
        )
        self.made = 0

    # ------------------------------------------------------------------- open / close

    @classmethod
    def open(cls, block: int, options: NetworkOptions) -> NetworkIsolation:
        """Claim the block's table, gateway and namespaces (removing a crashed server's
        leftovers of the same block first), and start filling the pool."""
        found, why = tools()
        if found is None:
            raise NetworkUnavailable(why)
        ip, nft = found
        isolation = cls(AddressPlan(block), options, ip, nft)
        try:
            isolation._claim()
        except (OSError, SlotError, firewall.FirewallError, ValueError) as error:
            isolation.close()
            raise NetworkUnavailable(str(error)) from error
        isolation._filler = threading.Thread(
            target=isolation._fill, name=f"lamina-netns-{block}", daemon=True
        )
        isolation._filler.start()
        return isolation

    def _claim(self) -> None:
        plan = self.plan
        remove_leftovers(plan, self._ip)
        firewall.delete_table(plan, self._nft)
        with open("/proc/sys/net/ipv4/ip_forward", "w", encoding="ascii") as forwarding:
            forwarding.write("1")
        # On the host's loopback: a local address of the host (so the server can listen on
        # it) that needs no device of its own (some kernels lack the dummy driver).
        run_ip(f"addr replace {plan.gateway_address}/32 dev lo\n", self._ip)
        options = self._options
        script = firewall.table_script(
            plan, options.platform_endpoints, self._ports, options.platform_ports
        )
        firewall.nft(script, self._nft)

    def close(self) -> None:
        """Remove every namespace, the table and the gateway (the server is stopping)."""
        with self._ready:
            self._closing = True
            # The makers stop at their next batch, and a maker refuses only the batch it
            # takes: with more batches waiting than makers, the rest would wait for good.
            for waiting in self._waiting.values():
                for waiter in waiting:
                    _refuse(waiter)
            self._waiting.clear()
            self._ready.notify_all()
        if self._filler is not None:
            self._filler.join(30)
        self._makers.shutdown(wait=True)
        self._sysctl.close()
        with self._ready:
            slots = [slot for pool in self._pools.values() for slot in pool] + self._doomed
            self._pools.clear()
            self._doomed = []
            self._closed = True
        remove_slots(slots, self._ip)
        remove_leftovers(self.plan, self._ip)
        firewall.delete_table(self.plan, self._nft)
        with self._ready:
            # A SnapStart move cancelled by the stop still runs on its thread, as does a
            # filler that outlived its 30 s.
            self._all_outside.wait_for(lambda: self._inside_now == 0, timeout=60)
            if self._inside_now == 0:
                self._inside.close()

    # ------------------------------------------------------------------------ gateway

    @property
    def gateway_address(self) -> str:
        """The host address only this server's environments reach (and only on the
        gateway ports): where the server listens for function code's AWS calls."""
        return self.plan.gateway_address

    def open_gateway_port(self, port: int) -> None:
        """Let environments connect to the gateway address on `port` (TCP)."""
        if port not in self._ports:
            firewall.nft(firewall.open_port_script(self.plan, port), self._nft)
            self._ports.add(port)

    # -------------------------------------------------------------------------- slots

    async def take(self, policy: NetworkPolicy | None) -> Slot:
        """A prepared slot of `policy`'s network (None: the default network)."""
        key = None if policy is None or policy == DEFAULT_NETWORK else policy
        with self._ready:
            if self._closing:
                raise NetworkUnavailable(_STOPPING)
            pool = self._pools.get(key)
            if pool is None:
                # A named network's pool starts on first use, small.
                pool = self._pools[key] = deque()
                self._wanted[key] = self._options.named_pool_size
            self._last_take = time.monotonic()
            # The filler recomputes when to refill (see `_idle_for`).
            self._ready.notify()
            if pool:
                return pool.popleft()
            waiter: Waiter = concurrent.futures.Future()
            self._waiting.setdefault(key, deque()).append(waiter)
            if self._making < _ON_DEMAND_BATCHES:
                self._making += 1
                # Under the lock: `close` shuts the executor only after it set `_closing`.
                self._makers.submit(self._make_for_waiting)
        try:
            return await asyncio.wrap_future(waiter)
        except asyncio.CancelledError:
            # A slot handed over just as the taker gave up would otherwise be lost.
            if not waiter.cancel() and not waiter.cancelled() and waiter.exception() is None:
                self.give_back(waiter.result())
            raise

    def listen(self, slot: Slot) -> socket.socket:
        """The environment's Runtime API socket, listening at 127.0.0.1:9001 inside the slot."""
        return self.listen_in(slot.fd)

    def listen_in(self, netns: int) -> socket.socket:
        """A socket listening at 127.0.0.1:9001 inside the network namespace open as `netns`.

        Only socket() needs to run inside: a socket stays in the namespace it was made in.
        The event loop's thread is inside for microseconds, with nothing else running.
        """
        with self._entered(netns):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # The previous environment's connections may linger in TIME_WAIT on the port.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((RUNTIME_API_HOST, RUNTIME_API_PORT))
            listener.listen(128)
        except BaseException:
            listener.close()
            raise
        return listener

    def lend(self, slot: Slot, slot_netns: int, netns: int) -> None:
        """Move the slot's `eth0` into the network namespace open as descriptor `netns`, one
        a process made for itself (a SnapStart environment: see `lamina.sandbox.snapshots`),
        configured as in the slot. Named by descriptor, not by pid: that process's pid could
        be another's by now. `slot_netns` is the caller's own descriptor of the slot's
        namespace (the slot's may be closed meanwhile, and its number reused, if the caller
        gave up). The slot is then spent: `discard` it once that process is gone."""
        target = f"/proc/self/fd/{netns}"
        argv = [self._ip, "link", "set", "eth0", "netns", target]
        # The slot has no name: `ip` runs in its namespace, which a child forked by a
        # thread inside it starts in.
        with self._entered(slot_netns):
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, check=False, pass_fds=(netns,)
            )
        if result.returncode != 0:
            raise SlotError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
        with self._entered(netns):
            configure_environment_side(slot.addresses)

    @contextlib.contextmanager
    def _entered(self, netns: int) -> Iterator[None]:
        """This thread inside `netns` (see `InNamespace`), unless the pool has closed."""
        with self._ready:
            if self._closed:
                raise SlotError("the network namespaces' pool is closed")
            self._inside_now += 1
        try:
            with self._inside.entered(netns):
                yield
        finally:
            with self._ready:
                self._inside_now -= 1
                if not self._inside_now:
                    self._all_outside.notify_all()

    def give_back(self, slot: Slot) -> None:
        """Return the slot of an environment whose processes are all gone."""
        with self._ready:
            if self._closed:
                slot.close()  # its veth pair went as the pool closed
                return
            pool = self._pools.get(slot.network)
            limit = max(1, self._wanted.get(slot.network, 1)) * _KEEP_FACTOR
            if self._closing or pool is None or len(pool) >= limit:
                self._doomed.append(slot)
            else:
                pool.append(slot)
            self._ready.notify()

    def discard(self, slot: Slot) -> None:
        """Remove a slot that may still hold something of its environment."""
        with self._ready:
            if self._closed:
                slot.close()
                return
            self._doomed.append(slot)
            self._ready.notify()

    def pooled(self, policy: NetworkPolicy | None = None) -> int:
        """How many slots of `policy`'s network are ready (benchmarks and tests)."""
        with self._ready:
            return len(self._pools.get(policy, ()))

    # ------------------------------------------------------------------------ filling

    def _indices(self, count: int) -> list[int]:
        taken: list[int] = []
        with self._ready:
            while len(taken) < count and self._free:
                taken.append(self._free.pop())
            while len(taken) < count and self._next <= MAX_SLOTS:
                taken.append(self._next)
                self._next += 1
        if not taken:
            raise SlotError(f"every address of {self.plan.subnet} is in use")
        return taken

    def _make(self, key: NetworkPolicy | None, count: int) -> list[Slot]:
        indices = self._indices(count)
        try:
            chain = self._chain(key) if key is not None else None
            slots = make_slots(self.plan, indices, key, self._ip, self._entered, self._sysctl)
            try:
                pairs = [
                    (slot.addresses.host_interface, slot.addresses.environment_address)
                    for slot in slots
                ]
                firewall.nft(firewall.sources_script(self.plan, pairs), self._nft)
                if key is not None and chain is not None:
                    interfaces = [slot.addresses.host_interface for slot in slots]
                    firewall.nft(
                        firewall.join_script(self.plan, interfaces, chain, key.internet),
                        self._nft,
                    )
            except BaseException:
                remove_slots(slots, self._ip)
                raise
        except BaseException:
            with self._ready:
                self._free.extend(indices)
            raise
        with self._ready:
            self.made += len(slots)
        return slots

    def _chain(self, key: NetworkPolicy) -> str:
        with self._chain_lock:
            chain = self._chains.get(key)
            if chain is None:
                chain = f"network_{len(self._chains) + 1}"
                firewall.nft(firewall.network_chain_script(self.plan, chain, key), self._nft)
                self._chains[key] = chain
            return chain

    def _make_for_waiting(self) -> None:
        """Make slots for the takers waiting, a batch per pool, until none waits."""
        try:
            while True:
                with self._ready:
                    # Closing: `close` has refused every waiting taker, and waits for this
                    # thread.
                    key, batch = (None, []) if self._closing else self._next_waiting()
                    if not batch:
                        self._making -= 1
                        return
                try:
                    slots = self._make(key, len(batch))
                except BaseException as error:
                    for waiter in batch:
                        with contextlib.suppress(concurrent.futures.InvalidStateError):
                            waiter.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                    continue
                for waiter, slot in zip(batch, slots, strict=False):
                    self._hand(waiter, slot)
                if len(slots) < len(batch):
                    with self._ready:  # fewer addresses were free: the rest wait again
                        rest = batch[len(slots) :]
                        if self._closing:  # unless close has already let the others go
                            for waiter in rest:
                                _refuse(waiter)
                        else:
                            self._waiting.setdefault(key, deque()).extendleft(reversed(rest))
        except BaseException:
            with self._ready:
                self._making -= 1
            raise

    def _next_waiting(self) -> tuple[NetworkPolicy | None, list[Waiter]]:
        """(pool, its waiting takers up to a batch) for the first pool anyone waits on."""
        for key, waiting in list(self._waiting.items()):
            batch: list[Waiter] = []
            while waiting and len(batch) < _ON_DEMAND_MAX:
                waiter = waiting.popleft()
                if not waiter.done():  # its taker gave up, or close refused it
                    batch.append(waiter)
            if batch:
                # Served last next time: every network's takers get their turn.
                self._waiting[key] = self._waiting.pop(key)
                return key, batch
        return None, []

    def _hand(self, waiter: Waiter, slot: Slot) -> None:
        """`slot` to its taker, or to the pool if the taker gave up meanwhile."""
        try:
            waiter.set_result(slot)
        except concurrent.futures.InvalidStateError:
            self.give_back(slot)

    def _fill(self) -> None:
        while True:
            with self._ready:
                while not self._closing and (wait := self._idle_for()) != 0.0:
                    self._ready.wait(wait)
                if self._closing:
                    return
                doomed, self._doomed = self._doomed, []
                short = self._short()
            self._remove(doomed)
            for key, count in short:
                if self._closing:
                    return
                try:
                    slots = self._make(key, count)
                except (
                    OSError,
                    subprocess.SubprocessError,  # `ip` or `nft` past its timeout
                    SlotError,
                    firewall.FirewallError,
                ) as error:
                    if self._closing:
                        return  # the pool closed under the filler: nothing to retry
                    log.warning("network: could not prepare namespaces: %s", error)
                    with self._ready:
                        self._ready.wait(_RETRY_S)
                    continue
                with self._ready:
                    # A filler that outlived close's wait for it: its pools are gone.
                    if not self._closed:
                        self._pools.setdefault(key, deque()).extend(slots)
                        continue
                remove_slots(slots, self._ip)

    def _idle_for(self) -> float | None:
        """How long the filler may still wait (None: until woken; 0: work now)."""
        short = self._short()
        if not short and not self._doomed:
            return None
        if any(len(self._pools.get(key, ())) < self._wanted[key] // 2 for key, _ in short):
            return 0.0
        return max(0.0, self._last_take + _QUIET_S - time.monotonic())

    def _short(self) -> list[tuple[NetworkPolicy | None, int]]:
        return [
            (key, wanted - len(self._pools.get(key, ())))
            for key, wanted in self._wanted.items()
            if len(self._pools.get(key, ())) < wanted
        ]

    def _remove(self, slots: Sequence[Slot]) -> None:
        if not slots:
            return
        remove_slots(slots, self._ip)
        with self._ready:
            self._free.extend(slot.addresses.index for slot in slots)

    # ----------------------------------------------------------------------- describe

    def describe(self) -> tuple[str, bool, str]:
        return (
            "network namespace per environment: the host's loopback and addresses, the "
            "platform's ports and other environments unreachable; outbound through NAT",
            True,
            f"pooled namespaces in {self.plan.subnet}, gateway {self.gateway_address}, "
            f"nftables table inet {self.plan.table}",
        )
