"""The route table: every HTTP front Lamina serves, mounted over the services it is given.

`lamina.server` builds the services; this module only decides which adapter serves what.
Each AWS front is one protocol adapter (rest-json, JSON, query, CBOR) over a service model
and a table of handlers; the handler tables come from one module per operation family.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import botocore.session
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, Router

from lamina.api import (
    aliases,
    code_signing,
    concurrency,
    event_invoke,
    events,
    functions,
    invoke,
    layers,
    mappings,
    policies,
    runtime_settings,
    tags,
    urls,
)
from lamina.api.asgi import FrontDoor, Fronts
from lamina.api.audit import audit_route
from lamina.api.authorization import PolicyAuthorizer
from lamina.api.cloudwatch import CloudWatchApi
from lamina.api.code_links import CodeLinks
from lamina.api.context import ApiContext, Handler
from lamina.api.errors import error_response
from lamina.api.fast_invoke import InvokeFastPath
from lamina.api.function_urls import function_url_endpoint
from lamina.api.gateway import GatewaySetup, ServiceGateway
from lamina.api.identity import identity_query_services
from lamina.api.json_service import JsonService
from lamina.api.kms import TARGET_PREFIX as KMS_TARGET
from lamina.api.kms import build_kms_service
from lamina.api.logs import TARGET_PREFIX as LOGS_TARGET
from lamina.api.logs import build_logs_service
from lamina.api.pipeline import verify_signature
from lamina.api.redrive import redrive_route
from lamina.api.rest_json import RestJsonService
from lamina.api.telemetry import routes as telemetry_routes
from lamina.api.views import Views
from lamina.audit.trail import AuditTrail
from lamina.console.app import console_for
from lamina.control.access import Authority
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.control.kms import KmsService
from lamina.control.role_permissions import RolePermissions
from lamina.errors import LaminaError
from lamina.function_urls.url_form import UrlForm
from lamina.identity.sigv4 import SigV4Verifier
from lamina.invoke.asynchronous.dispatcher import AsyncDispatcher
from lamina.invoke.engine import Engine
from lamina.metrics import MetricsRegistry
from lamina.model.mappings import KAFKA, EventSourceMapping, mapping_arn
from lamina.observability.cloudwatch import MetricReader
from lamina.observability.logs_service import Logs, LogsService
from lamina.observability.telemetry import Telemetry
from lamina.pollers.protocol import PollerStatus
from lamina.pollers.supervisor import PollerSupervisor
from lamina.schedules.bus import EventRouter
from lamina.schedules.rules import RuleService
from lamina.settings import Settings
from lamina.store.protocols.audit import AuditStore

# One module per Lambda operation family; each exposes `operations(ctx) -> {name: handler}`.
OPERATION_FAMILIES: tuple[Any, ...] = (
    functions,
    aliases,
    layers,
    code_signing,
    policies,
    tags,
    concurrency,
    event_invoke,
    urls,
    runtime_settings,
    mappings,
)

Lifespan = Callable[[object], AbstractAsyncContextManager[None]]
# The signing names of the services mounted below; calls signed for any other service are
# the gateway's to forward.
LAMINA_SIGNING_NAMES = ("lambda", "events", "logs", "monitoring", "kms", "iam", "sts")


@dataclass(frozen=True)
class Services:
    """What the fronts adapt: built by the composition root (`lamina.server`)."""

    settings: Settings
    domain: Domain
    functions: FunctionService
    engine: Engine
    dispatcher: AsyncDispatcher
    # EventBridge's own counters (AWS/Events, per rule), apart from the dispatcher's.
    events_metrics: MetricsRegistry
    rules: RuleService
    # PutEvents: matches events against rules and plans their targets' invocations.
    event_router: EventRouter
    logs: Logs
    telemetry: Telemetry
    links: CodeLinks
    # None unless the operator configured the account's key pair.
    verifier: SigV4Verifier | None
    # Where `/_lamina/audit` reads; `audit` records into it (None when auditing is off).
    audit_records: AuditStore
    audit: AuditTrail | None
    # The form of the `FunctionUrl`s handed out (chosen for this host at start-up).
    url_form: UrlForm
    # The event source mapping pollers (`/_lamina/mappings`; their metrics on `/metrics`).
    pollers: PollerSupervisor | None = None
    # Enforced mode's one decider of calls (None in development mode): the API's authorizer
    # and the checks of functions' roles share its caches of compiled policies.
    authority: Authority | None = None
    # A cluster node's own endpoints (routed invocations, the cluster's status).
    node_routes: Sequence[Route] = ()
    # Where calls for services Lamina does not serve go (None: nowhere, they are refused).
    gateway: GatewaySetup | None = None


def front_door(services: Services, lifespan: Lifespan) -> FrontDoor:
    """Every front over `services`, routed from one table (see `lamina.api.asgi`)."""
    verifier, audit = enforcing(services), services.audit
    session = botocore.session.get_session()
    cloudwatch = CloudWatchApi(MetricReader(services.telemetry), verifier, audit)
    events_api = JsonService(
        session.get_service_model("events"),
        events.operations(services.rules, services.event_router, services.dispatcher.accept_batch),
        verifier,
        audit,
    )
    logs = LogsService(services.logs.store, services.logs.sink, services.domain.account)
    logs_api = build_logs_service(logs, verifier, audit)
    # The web console calls these fronts in-process, signed as its signed-in person.
    console = console_for(
        services.settings,
        services.domain,
        services.dispatcher,
        services.telemetry,
        verifier,
        services.authority,
        services.pollers,
    )
    gateway = (
        ServiceGateway(services.gateway, LAMINA_SIGNING_NAMES, verifier, services.authority)
        if services.gateway is not None
        else None
    )
    lambda_api = _lambda_api(services, verifier)
    fast_invoke = (
        InvokeFastPath(
            lambda_api.model.operation_model("Invoke"),
            services.engine,
            services.domain.account,
            lambda_api.error_response,
            verifier,
            audit,
            gateway=gateway is not None,
        )
        if services.settings.fast_invoke
        else None
    )
    door = FrontDoor(
        Fronts(
            lambda_api=lambda_api.handle,
            internal=Router(routes=_internal_routes(services), lifespan=lifespan),
            json_targets={
                "AWSEvents": events_api.handle,
                LOGS_TARGET: logs_api.handle,
                cloudwatch.target_prefix: cloudwatch.json.handle,
                KMS_TARGET: build_kms_service(
                    KmsService(services.domain.stores.kms, services.domain.account), verifier, audit
                ).handle,
            },
            query_services={
                cloudwatch.signing_name: cloudwatch.query.handle,
                **identity_query_services(services.domain, verifier, audit),
            },
            cbor_services={cloudwatch.target_prefix: cloudwatch.cbor.handle},
            function_urls=function_url_endpoint(
                services.domain, services.functions, services.engine, verifier
            ),
            console=console.router,
        ),
        gateway,
        fast_invoke,
    )
    console.bind(door)
    return door


def enforcing(services: Services) -> SigV4Verifier | None:
    """The AWS fronts' verifier: with the account's key pair configured (enforced mode), IAM
    users and STS sessions sign too, and every call is authorised. Lamina's own endpoints
    keep `services.verifier`, which knows the root key only."""
    if services.verifier is None:
        return None
    domain, authority = services.domain, services.authority
    assert authority is not None  # built with the verifier, by the composition root
    authorizer = PolicyAuthorizer(
        authority,
        authority.iam,
        domain.account,
        domain.stores.kms,
        networks=services.functions.networks.catalog,
    )
    return services.verifier.with_iam(domain.stores.iam, domain.account.account_id, authorizer)


def _lambda_api(services: Services, verifier: SigV4Verifier | None) -> RestJsonService:
    ctx = ApiContext(
        settings=services.settings,
        domain=services.domain,
        functions=services.functions,
        views=Views(services.domain.account, services.links, services.settings.snapstart),
        url_form=services.url_form,
        role_permissions=_role_permissions(services),
    )
    handlers: dict[str, Handler] = {}
    for family in OPERATION_FAMILIES:
        handlers.update(family.operations(ctx))
    handlers.update(invoke.operations(ctx, services.engine, services.dispatcher))
    model = botocore.session.get_session().get_service_model("lambda")
    return RestJsonService(model, handlers, verifier, services.audit)


def _role_permissions(services: Services) -> RolePermissions | None:
    """Enforced mode: what a function's execution role allows, checked when mappings and
    destinations are configured. None in development mode, which checks nothing."""
    if services.authority is None:
        return None
    return RolePermissions(services.authority, services.domain.account)


def _internal_routes(services: Services) -> list[Route]:
    """Lamina's own endpoints: health, code downloads, async and mapping counters, audit,
    telemetry, event source mappings."""
    blobs, links = services.domain.stores.blobs, services.links
    dispatcher_snapshot = services.dispatcher.metrics.snapshot
    pollers = services.pollers

    def snapshot() -> dict[str, dict[str, dict[str, float]]]:
        """The dispatcher's counters by function, and the pollers' by mapping UUID."""
        merged = dispatcher_snapshot()
        if pollers is not None:
            merged.update(pollers.context.metrics.snapshot())
        return merged

    async def download_code(request: Request) -> Response:
        key = request.path_params["key"]
        query = request.query_params
        if not links.is_valid(key, query.get("expires", ""), query.get("signature", "")):
            return Response("Request has expired or its signature is invalid", status_code=403)
        if not blobs.exists(key):
            return Response("No such code archive", status_code=404)
        return FileResponse(blobs.path(key), media_type="application/zip")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def async_metrics(request: Request) -> Response:
        """The dispatcher's counters, the pollers' and EventBridge's, by metric name then
        resource (function, mapping UUID or rule)."""
        merged = snapshot()
        for metric, series in services.events_metrics.snapshot().items():
            merged.setdefault(metric, {}).update(series)
        return JSONResponse(merged)

    settings = services.settings
    return [
        Route("/_lamina/health", health, methods=["GET"]),
        Route("/_lamina/metrics", async_metrics, methods=["GET"]),
        Route("/_lamina/code/{key:str}", download_code, methods=["GET"]),
        audit_route(services.audit_records, services.audit, services.verifier),
        *telemetry_routes(services.telemetry, snapshot, services.verifier, settings.metrics_token),
        _mappings_route(services),
        redrive_route(services.dispatcher, services.verifier),
        *services.node_routes,
    ]


MAPPINGS_PATH = "/_lamina/mappings"
_PAGE = 1000


def _mappings_route(services: Services) -> Route:
    """`GET /_lamina/mappings[?function=NAME]`: every event source mapping (or a function's)
    with its state, last result, running poller's lag and errors, and its counters since
    start. Signed like the Lambda API when the server requires signatures."""
    store = services.domain.stores.mappings
    account = services.domain.account
    pollers = services.pollers

    def read(function: str | None) -> list[EventSourceMapping]:
        found: list[EventSourceMapping] = []
        after: str | None = None
        while True:
            page = store.page(after, _PAGE, function_name=function)
            found.extend(page)
            if len(page) < _PAGE:
                return found
            after = page[-1].uuid

    async def list_mappings(request: Request) -> Response:
        try:
            verify_signature(services.verifier, request, b"")
        except LaminaError as error:
            return error_response(error, str(uuid.uuid4()))
        wanted = request.query_params.get("function") or None
        # A name, a partial ARN (`name:alias`) or an ARN: mappings are kept per function name.
        function = wanted.split(":function:")[-1].split(":")[0] if wanted else None
        mappings = await anyio.to_thread.run_sync(read, function)
        statuses = pollers.statuses() if pollers is not None else {}
        counters = pollers.context.metrics.snapshot() if pollers is not None else {}
        rows = []
        for mapping in mappings:
            row: dict[str, Any] = {
                "UUID": mapping.uuid,
                "EventSourceMappingArn": mapping_arn(account, mapping.uuid),
                "FunctionName": mapping.function_name,
                "FunctionArn": mapping.function_arn,
                "EventSourceArn": mapping.event_source_arn,
                "Kind": mapping.kind,
                "State": mapping.state,
                "StateTransitionReason": mapping.state_transition_reason,
                "LastProcessingResult": mapping.last_processing_result,
                "LastModified": mapping.last_modified,
                "Poller": _poller_view(statuses.get(mapping.uuid)),
                "Metrics": {
                    metric: series[mapping.uuid]
                    for metric, series in sorted(counters.items())
                    if mapping.uuid in series
                },
            }
            if mapping.kind == KAFKA:
                row["BootstrapServers"] = list(mapping.bootstrap_servers)
            rows.append(row)
        return JSONResponse({"Mappings": rows})

    return Route(MAPPINGS_PATH, list_mappings, methods=["GET"])


def _poller_view(status: PollerStatus | None) -> dict[str, Any] | None:
    """A running poller's status; None when no poller runs for the mapping."""
    if status is None:
        return None
    return {
        "Lag": status.lag,
        "LagUnit": status.lag_unit,
        "Errors": status.errors,
        "LastError": status.last_error,
    }
