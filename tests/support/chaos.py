"""Load and bookkeeping for a chaos test: what the clients were told, which faults happened
when, and what the ledger's runs say about them.

`Load` runs client threads in the test's (root) namespace against every node, dead or
alive: asynchronous invokes (an event counts as accepted only on a 202), synchronous calls
to a function with reserved concurrency, and plain synchronous calls (a call counts only
when it returned 200 with the function's own answer). Connection errors, 5xx and throttles
are expected while nodes die; they are counted, never raised.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tests.support.ledger import Run


@dataclass(frozen=True)
class Fault:
    """A fault the test injected: `kill` (node dead from `start`), `cut` (node off the
    network from `start` to `end`), `redis` (Redis restarted, node None)."""

    kind: str
    node: int | None
    start: float
    end: float


@dataclass
class Outcomes:
    """What the clients were told."""

    accepted: set[str] = field(default_factory=set)  # async request ids answered 202
    answered: set[str] = field(default_factory=set)  # sync request ids answered 200 + payload
    refusals: Counter[str] = field(default_factory=Counter)  # why a call did not succeed
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, request_id: str) -> None:
        with self._lock:
            self.accepted.add(request_id)

    def answer(self, request_id: str) -> None:
        with self._lock:
            self.answered.add(request_id)

    def refuse(self, reason: str) -> None:
        with self._lock:
            self.refusals[reason] += 1


def refusal(error: Exception) -> str:
    """A short name for why a call failed: the API's error code, or the transport's."""
    if isinstance(error, ClientError):
        return str(error.response["Error"]["Code"])
    return type(error).__name__


class Load:
    """Client threads calling random nodes until `stop()`."""

    def __init__(self, clients: Callable[[], list[Any]], seed: int) -> None:
        self._clients = clients  # a fresh set of per-node clients for each thread
        self._seed = seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.outcomes = Outcomes()

    def send_events(self, function: str, sleep_s: float, pause_s: float) -> None:
        """A thread of asynchronous invokes, one every `pause_s` or so."""

        def one(client: Any, n: int) -> None:
            payload = json.dumps({"n": n, "sleep": sleep_s}).encode()
            response = client.invoke(FunctionName=function, InvocationType="Event", Payload=payload)
            response["Payload"].close()  # empty; its connection goes back to the pool
            if response["StatusCode"] == 202:
                self.outcomes.accept(response["ResponseMetadata"]["RequestId"])
            time.sleep(pause_s)

        self._spawn(one)

    def call(self, function: str, sleep_s: float, pause_s: float = 0.0) -> None:
        """A thread of synchronous calls, back to back (after `pause_s`)."""

        def one(client: Any, n: int) -> None:
            payload = json.dumps({"n": n, "sleep": sleep_s}).encode()
            response = client.invoke(FunctionName=function, Payload=payload)
            answer = json.loads(response["Payload"].read() or b"null")
            request_id = response["ResponseMetadata"]["RequestId"]
            if "FunctionError" in response or answer != {"request": request_id, "n": n}:
                self.outcomes.refuse(f"wrong answer: {answer}")
            else:
                self.outcomes.answer(request_id)
            time.sleep(pause_s)

        self._spawn(one)

    def _spawn(self, one: Callable[[Any, int], None]) -> None:
        chooser = random.Random(self._seed + len(self._threads))

        def loop() -> None:
            clients = self._clients()
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    one(chooser.choice(clients), n)
                except (ClientError, BotoCoreError) as error:
                    self.outcomes.refuse(refusal(error))
                    # A dead node refuses at once: do not spin on it.
                    time.sleep(0.05)
            for client in clients:
                client.close()

        thread = threading.Thread(target=loop, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a load thread did not stop"


def hit_by(run: Run, fault: Fault, ack_s: float, settle_s: float) -> bool:
    """Whether the fault could have cut the run short: a kill or a cut while the run's event
    was in flight. In flight: from the run's start (its event was claimed before) until
    `ack_s` after it ended (the acknowledgement follows the end), or forever if it never
    ended. A killed node starts nothing after the kill; a cut one may start what it had
    claimed until `settle_s` after it is back (its connections to the store recover, its
    workers free up).

    Any node's fault counts, not only the one the run was on: the node that claimed an event
    need not be the one that runs it (a routed invocation), and if the claimer dies its
    event runs again wherever the first run was."""
    if fault.kind not in {"kill", "cut"}:
        return False
    started_in_time = run.start <= fault.end + (settle_s if fault.kind == "cut" else ack_s)
    still_in_flight = run.end is None or run.end + ack_s >= fault.start
    return started_in_time and still_in_flight


def most_at_once(runs: Iterable[Run], longest_s: float) -> tuple[int, float]:
    """The most runs that overlapped, and when. A run with no end was killed: it ran at most
    `longest_s`."""
    edges: list[tuple[float, int]] = []
    for run in runs:
        end = run.end if run.end is not None else run.start + longest_s
        edges += [(run.start, 1), (end, -1)]
    # At equal times an end comes first: a run that ended as another began did not overlap.
    edges.sort()
    most, now, when = 0, 0, 0.0
    for moment, step in edges:
        now += step
        if now > most:
            most, when = now, moment
    return most, when
