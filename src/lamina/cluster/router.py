"""Routing invocations to worker nodes (cluster mode).

A node that receives an invocation ranks the live workers by rendezvous hash of the function
version, so every node sends a function's calls to the same few workers and finds their warm
environments without asking anyone. It tries the top k, where k grows with the calls of that
function it has in flight, workers that recently reported idle environments for it first;
each worker decides on its own whether it has room (`cluster.gate`) or answers Busy. After
k + 1 Busy answers the caller gets AWS's throttle.

A worker that cannot be reached is left out until it heartbeats again. A call is retried on
another worker only when it provably never started: the connection was refused, or the
request never reached the worker whole (a worker starts nothing before it has checked the
HMAC of the whole body). A call lost after that is AWS's 5xx ServiceException.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from lamina.arns import FunctionRef
from lamina.cluster import wire
from lamina.cluster.auth import HEADER as AUTH_HEADER
from lamina.cluster.auth import NodeAuth
from lamina.cluster.gate import WorkerGate
from lamina.cluster.membership import Membership
from lamina.cluster.rendezvous import rank
from lamina.control.functions import Resolved
from lamina.errors import CANNOT_BE_PROCESSED, ServiceError, TooManyRequests
from lamina.invoke.governor import ACCOUNT_EXCEEDED, THROTTLE_MESSAGE
from lamina.invoke.service import (
    InvokeRequest,
    InvokeResult,
    InvokeService,
    StreamStart,
    WorkerBusy,
)
from lamina.store.protocols.nodes import NodeReport

log = logging.getLogger("lamina.cluster")

# Every this many calls of one function in flight from this node widen its set of workers
# by one: a busy function spreads, a quiet one stays on its warm home.
CALLS_PER_WORKER = 4
# A call may take the function's timeout; the rest is the worker's own overhead.
RESPONSE_GRACE_S = 30.0
CONNECT_TIMEOUT_S = 1.0
# AWS's words for a call the service lost.
LOST_MESSAGE = CANNOT_BE_PROCESSED

# Failures that prove the worker never started the call.
_NEVER_STARTED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError)


T = TypeVar("T")
# One try of a call on one worker (the function's timeout bounds the wait).
Attempt = Callable[[NodeReport, InvokeRequest, int], Awaitable[T]]


class _Unreachable(Exception):
    pass


class RoutedEngine:
    """The `Engine` of a cluster node: invocations run on the worker routing picks."""

    def __init__(
        self,
        local: InvokeService,
        gate: WorkerGate | None,
        membership: Membership,
        auth: NodeAuth,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._local = local
        self._gate = gate
        self._membership = membership
        self._auth = auth
        self._client = client or httpx.AsyncClient(
            # Idle connections are dropped before the worker's server drops them (uvicorn
            # after 5 s): a call sent as the peer closes would look lost though it never
            # arrived.
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=256, keepalive_expiry=2.0
            ),
            # Each node's address is its own: never a proxy from the environment.
            trust_env=False,
        )
        self._in_flight: Counter[str] = Counter()

    def resolve(self, ref: FunctionRef, qualifier: str | None) -> Resolved:
        return self._local.resolve(ref, qualifier)

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        return await self._route(request, self._invoke_on)

    async def open_stream(
        self, request: InvokeRequest, chunks: asyncio.Queue[bytes | None]
    ) -> StreamStart:
        return await self._route(request, functools.partial(self._stream_on, chunks=chunks))

    async def _route(self, request: InvokeRequest, attempt: Attempt[T]) -> T:
        """`attempt` on each candidate worker in turn until one takes the call."""
        resolved = self._local.resolve(request.ref, request.qualifier)
        config = resolved.runnable
        key = f"{config.function_name}:{config.version}"
        self._in_flight[key] += 1
        try:
            for node in self.candidates(key, self._in_flight[key]):
                try:
                    return await attempt(node, request, config.timeout)
                except WorkerBusy:  # this node's gate, or a worker's answer
                    continue
                except _Unreachable:
                    self._membership.suspect(node.node_id)
                    continue
        finally:
            self._in_flight[key] -= 1
            if not self._in_flight[key]:
                del self._in_flight[key]
        self._local.throttled(resolved, config)
        raise TooManyRequests(THROTTLE_MESSAGE, Reason=ACCOUNT_EXCEEDED)

    def candidates(self, key: str, in_flight: int) -> list[NodeReport]:
        """The k + 1 workers to try, best first: those that reported idle or provisioned
        environments for `key`, wherever they rank; then the top k by rendezvous hash; then
        the next one."""
        workers = {node.node_id: node for node in self._membership.workers()}
        ranked = [workers[node_id] for node_id in rank(key, workers)]
        k = min(len(ranked), 1 + (in_flight - 1) // CALLS_PER_WORKER)
        top, spare = ranked[:k], ranked[k : k + 1]
        # Among the k a random start spreads concurrent calls over them.
        if k > 1:
            start = random.randrange(k)
            top = top[start:] + top[:start]
        # Workers that reported idle environments for the version come first, wherever
        # they rank: provisioned environments are placed by their own hash, not this one.
        warm = [node for node in ranked if node.provisioned.get(key) or node.idle.get(key)]
        tried = {node.node_id for node in warm}
        ordered = [*warm, *(node for node in [*top, *spare] if node.node_id not in tried)]
        return ordered[: k + 1]  # after k + 1 Busy answers, AWS's throttle

    def _here(self, node: NodeReport) -> WorkerGate | None:
        return self._gate if node.node_id == self._membership.node_id else None

    async def _invoke_on(
        self, node: NodeReport, request: InvokeRequest, timeout_s: int
    ) -> InvokeResult:
        if (gate := self._here(node)) is not None:
            return await gate.invoke(request)
        response = await self._send(node, wire.INVOKE_PATH, request, timeout_s, stream=False)
        if result := response.headers.get(wire.RESULT):
            return wire.result_of(result, response.content)
        raise self._refusal(node, request, response)

    async def _stream_on(
        self,
        node: NodeReport,
        request: InvokeRequest,
        timeout_s: int,
        chunks: asyncio.Queue[bytes | None],
    ) -> StreamStart:
        if (gate := self._here(node)) is not None:
            return await gate.open_stream(request, chunks)
        response = await self._send(node, wire.STREAM_PATH, request, timeout_s, stream=True)
        version = response.headers.get(wire.EXECUTED_VERSION)
        if version is None:
            await response.aread()
            await response.aclose()
            raise self._refusal(node, request, response)
        relay = asyncio.ensure_future(self._relay(node, request, response, chunks))
        return StreamStart(version, relay)

    async def _send(
        self, node: NodeReport, path: str, request: InvokeRequest, timeout_s: int, stream: bool
    ) -> httpx.Response:
        description = wire.describe(request, self._local.resolver.shared_stamp())
        call = self._client.build_request(
            "POST",
            node.address + path,
            content=request.payload,
            headers={
                wire.INVOCATION: description,
                AUTH_HEADER: self._auth.sign(path, description.encode(), request.payload),
            },
            timeout=httpx.Timeout(timeout_s + RESPONSE_GRACE_S, connect=CONNECT_TIMEOUT_S),
        )
        try:
            return await self._client.send(call, stream=stream)
        except _NEVER_STARTED as error:
            log.warning("worker %s (%s) unreachable: %r", node.node_id, node.address, error)
            raise _Unreachable from error
        except httpx.HTTPError as error:
            log.error("worker %s lost call %s: %r", node.node_id, request.request_id, error)
            raise ServiceError(LOST_MESSAGE) from error

    def _refusal(
        self, node: NodeReport, request: InvokeRequest, response: httpx.Response
    ) -> Exception:
        """What a worker's answer without a result means: Busy, the error admission raised,
        or a call lost."""
        if response.headers.get(wire.BUSY):
            return WorkerBusy(node.node_id)
        if error_header := response.headers.get(wire.ERROR):
            return wire.error_of(error_header)
        if response.status_code == 401:
            log.error(
                "worker %s refused this node's signature: do the nodes share one store?",
                node.node_id,
            )
        log.error(
            "worker %s answered call %s with %s and no result",
            node.node_id,
            request.request_id,
            response.status_code,
        )
        return ServiceError(LOST_MESSAGE)

    async def _relay(
        self,
        node: NodeReport,
        request: InvokeRequest,
        response: httpx.Response,
        chunks: asyncio.Queue[bytes | None],
    ) -> InvokeResult:
        """The worker's frames: chunks into `chunks`, then the result."""
        reader = wire.FrameReader()
        try:
            async for data in response.aiter_raw():
                for kind, body in reader.feed(data):
                    if kind == wire.CHUNK:
                        chunks.put_nowait(body)
                    elif kind == wire.END:
                        return wire.result_of_end(body)
        except httpx.HTTPError as error:
            log.error(
                "worker %s lost streamed call %s: %r", node.node_id, request.request_id, error
            )
            raise ServiceError(LOST_MESSAGE) from error
        finally:
            await response.aclose()
        log.error("worker %s ended streamed call %s early", node.node_id, request.request_id)
        raise ServiceError(LOST_MESSAGE)

    async def close(self) -> None:
        await self._client.aclose()
