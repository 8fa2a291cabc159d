"""`GET /_lamina/cluster`: the cluster's live nodes as this node sees them, and the async
queue's depth, for `lamina cluster status` and for whoever watches a cluster.

A single node (no membership) answers with itself alone and no epoch. Signed like the Lambda
API when the server requires signatures: it names every node's address.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lamina.api.errors import error_response
from lamina.api.pipeline import verify_signature
from lamina.cluster.membership import Membership
from lamina.errors import LaminaError
from lamina.identity.sigv4 import SigV4Verifier
from lamina.store.protocols.nodes import NodeReport
from lamina.store.protocols.queue import EVENT_STATES, AsyncQueue

CLUSTER_PATH = "/_lamina/cluster"


def cluster_status_endpoint(
    membership: Membership | None,
    queue: AsyncQueue,
    this_node: Callable[[], NodeReport],
    verifier: SigV4Verifier | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """The handler: `this_node` gives this node's current report (its load right now)."""

    async def cluster_status(request: Request) -> Response:
        try:
            verify_signature(verifier, request, b"")
        except LaminaError as error:
            return error_response(error, str(uuid.uuid4()))
        counts = await anyio.to_thread.run_sync(queue.counts)
        return JSONResponse(status_document(membership, this_node(), counts, time.time()))

    return cluster_status


def cluster_status_route(
    membership: Membership | None,
    queue: AsyncQueue,
    this_node: Callable[[], NodeReport],
    verifier: SigV4Verifier | None = None,
) -> Route:
    return Route(
        CLUSTER_PATH,
        cluster_status_endpoint(membership, queue, this_node, verifier),
        methods=["GET"],
    )


def status_document(
    membership: Membership | None,
    local: NodeReport,
    counts: dict[str, dict[str, int]],
    now: float,
) -> dict[str, Any]:
    """{"nodes": [...], "queue": {state: events}}: the nodes as the registry last showed
    them to this node. `local` (this node's report of now) stands in for this node when the
    registry does not show it, and alone, with no epoch, when there is no cluster."""
    queue = {state: sum(row.get(state, 0) for row in counts.values()) for state in EVENT_STATES}
    if membership is None:
        here = replace(local, heartbeat_at=now)
        return {"nodes": [_node_row(here, now, epoch=None, this=True)], "queue": queue}
    rows = []
    seen = False
    for node in membership.nodes():
        this = node.node_id == membership.node_id
        seen = seen or this
        rows.append(
            _node_row(
                node, now, epoch=node.epoch, this=this, suspect=membership.is_suspect(node.node_id)
            )
        )
    if not seen:
        # Not registered right now (the registry is down, or the entry lapsed): still here.
        here = replace(local, node_id=membership.node_id or local.node_id, heartbeat_at=now)
        rows.append(_node_row(here, now, epoch=membership.epoch or None, this=True))
    return {"nodes": rows, "queue": queue}


def _node_row(
    node: NodeReport, now: float, *, epoch: int | None, this: bool, suspect: bool = False
) -> dict[str, Any]:
    return {
        "node_id": node.node_id,
        "address": node.address,
        "worker": node.worker,
        "epoch": epoch,
        "started_at": node.started_at,
        "heartbeat_at": node.heartbeat_at,
        "heartbeat_age_s": round(max(0.0, now - node.heartbeat_at), 3),
        "capacity_mb": node.capacity_mb,
        "memory_used_mb": node.memory_used_mb,
        "environments": node.environments,
        "in_flight": node.in_flight,
        "idle": dict(node.idle),
        "provisioned": dict(node.provisioned),
        "this": this,
        "suspect": suspect,
    }
