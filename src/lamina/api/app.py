"""Builds the ASGI application: stores, domain services, and every operation family."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import botocore.session
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, Router

from lamina.api import (
    aliases,
    code_signing,
    concurrency,
    event_invoke,
    functions,
    invoke,
    layers,
    policies,
    runtime_settings,
    tags,
    urls,
)
from lamina.api.asgi import LaminaApp
from lamina.api.auth import SigV4Verifier
from lamina.api.cloudwatch import CloudWatchApi
from lamina.api.code_links import CodeLinks
from lamina.api.context import ApiContext, Handler
from lamina.api.dispatch import RestJsonService
from lamina.api.telemetry import routes as telemetry_routes
from lamina.api.views import Views
from lamina.arns import Account
from lamina.audit.endpoint import audit_route
from lamina.audit.log import audit_directory
from lamina.audit.trail import AuditTrail
from lamina.aws.s3 import Boto3S3Reader
from lamina.control.concurrency import ConcurrencyService
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.function_urls.endpoint import function_url_endpoint
from lamina.invoke.async_invoke import build_dispatcher
from lamina.invoke.governor import ConcurrencyGovernor
from lamina.invoke.pool import EnvironmentPool
from lamina.invoke.service import InvokeService, Resolver
from lamina.observability.cloudwatch import MetricReader
from lamina.observability.logs import LogSink
from lamina.observability.logs_api import TARGET_PREFIX as LOGS_TARGET
from lamina.observability.logs_api import build_logs_service, open_logs
from lamina.observability.telemetry import LiveSources, Telemetry
from lamina.observability.tracing import Sampler, Tracing, traced_observer
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.api import SandboxBackend
from lamina.sandbox.artifacts import ArtifactCache
from lamina.sandbox.namespace import NamespaceBackend
from lamina.sandbox.select import select_backend
from lamina.sandbox.zygote import Templates, ZygoteBackend
from lamina.schedules.app import build_schedules
from lamina.settings import Settings
from lamina.store.protocols import Stores
from lamina.store.sqlite import open_stores

# One module per operation family; each exposes `operations(ctx) -> {name: handler}`.
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
)


def _secret(data_dir: Path) -> bytes:
    """A per-installation key for signing download links; created once, kept private."""
    path = data_dir / "link-secret"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def build_app(settings: Settings, stores: Stores | None = None) -> LaminaApp:
    # Sandboxes mount paths under the data directory from other working directories.
    settings = replace(settings, data_dir=settings.data_dir.absolute())
    stores = stores or open_stores(settings.data_dir)
    account = Account(settings.account_id, settings.region)
    domain = Domain(
        stores=stores,
        account=account,
        s3=Boto3S3Reader(settings.region),
        account_concurrency=settings.account_concurrency,
    )
    links = CodeLinks(_secret(settings.data_dir), settings.endpoint)
    ctx = ApiContext(
        settings=settings,
        domain=domain,
        functions=FunctionService(domain),
        views=Views(account, links),
    )
    handlers: dict[str, Handler] = {}
    for family in OPERATION_FAMILIES:
        handlers.update(family.operations(ctx))
    logs = open_logs(settings)
    telemetry = Telemetry.open(settings.data_dir)
    engine, closers = build_engine(settings, ctx, logs.sink, telemetry)
    closers.append(logs.close)  # after the backend: environments' last lines land first
    dispatcher = build_dispatcher(settings, ctx.domain, ctx.functions, engine)
    dispatcher.metrics.subscribe(telemetry.async_metric)
    handlers.update(invoke.operations(ctx, engine, dispatcher))
    model = botocore.session.get_session().get_service_model("lambda")
    verifier = (
        SigV4Verifier(settings.access_key_id, settings.secret_access_key)
        if settings.access_key_id and settings.secret_access_key
        else None
    )
    audit = AuditTrail.from_settings(settings) if settings.audit else None
    lambda_api = RestJsonService(model, handlers, verifier, audit)
    schedules = build_schedules(ctx, dispatcher.metrics, verifier, audit)

    async def download_code(request: Request) -> Response:
        key = request.path_params["key"]
        query = request.query_params
        if not links.is_valid(key, query.get("expires", ""), query.get("signature", "")):
            return Response("Request has expired or its signature is invalid", status_code=403)
        if not stores.blobs.exists(key):
            return Response("No such code archive", status_code=404)
        return FileResponse(stores.blobs.path(key), media_type="application/zip")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return JSONResponse(dispatcher.metrics.snapshot())

    routes = [
        Route("/_lamina/health", health, methods=["GET"]),
        Route("/_lamina/metrics", metrics, methods=["GET"]),
        Route("/_lamina/code/{key:str}", download_code, methods=["GET"]),
        audit_route(audit_directory(settings.data_dir), audit, verifier),
        *telemetry_routes(telemetry, dispatcher.metrics.snapshot, verifier, settings.metrics_token),
    ]
    cloudwatch = CloudWatchApi(MetricReader(telemetry), verifier, audit)

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        if audit is not None:
            audit.start()
        engine.start()
        telemetry.start()
        dispatcher.start()
        schedules.scheduler.start()
        try:
            yield
        finally:
            await schedules.scheduler.close()
            await dispatcher.close()
            engine.close()
            for close in closers:
                close()
            if audit is not None:
                audit.close()  # last: it writes every call recorded until the very end

    function_urls = function_url_endpoint(ctx.domain, ctx.functions, engine, verifier)
    return LaminaApp(
        # CloudWatch's query and CBOR protocols carry no target header: routed first.
        cloudwatch.route(lambda_api.handle),
        Router(routes=routes, lifespan=lifespan),
        function_urls=function_urls,
        json_services={
            "AWSEvents": schedules.endpoint,
            LOGS_TARGET: build_logs_service(logs, account, verifier, audit).handle,
            cloudwatch.target_prefix: cloudwatch.json.handle,
        },
    )


def build_engine(
    settings: Settings, ctx: ApiContext, log_sink: LogSink, telemetry: Telemetry
) -> tuple[InvokeService, list[Callable[[], None]]]:
    """The data plane (pool, governor, sandbox backend, runtimes, logs) and its closers."""
    stores = ctx.domain.stores
    data_dir = settings.data_dir
    backend: SandboxBackend = select_backend(settings.isolation, hidden=[data_dir])
    closers: list[Callable[[], None]] = [backend.close]
    if settings.zygote:
        # Template children enter the same sandbox a fresh runtime would: the zygote makes
        # cold starts cheaper, never less isolated.
        if isinstance(backend, NamespaceBackend):
            templates = Templates(sandboxed=True)
            backend.use_templates(templates)
            closers.append(templates.close)
        elif backend.name == "process":
            backend = ZygoteBackend(backend)
            closers[-1] = backend.close
    governor = ConcurrencyGovernor(settings.account_concurrency)
    pool = EnvironmentPool(settings.idle_timeout_s)
    observer, close_tracing = traced_observer(
        telemetry, settings.otlp_endpoint, settings.region, settings.account_id
    )
    engine = InvokeService(
        account=ctx.domain.account,
        resolver=Resolver(ctx.functions, stores.functions),
        governor=governor,
        pool=pool,
        backend=backend,
        artifacts=ArtifactCache(data_dir / "artifacts", stores.blobs),
        runtimes=RuntimeRegistry(dict(settings.runtime_overrides)),
        log_sink=log_sink,
        scratch_root=data_dir / "environments",
        provisioned_configs=ConcurrencyService(ctx.domain, ctx.functions),
        observer=observer,
        tracing=Tracing(Sampler(settings.trace_sample_rate)),
    )
    telemetry.attach(LiveSources(governor, pool, engine.provisioned_pool))
    # After the backend: the last invocations are counted, then saved.
    closers.append(telemetry.close)
    closers.append(close_tracing)  # sends the spans still queued, then stops exporting
    return engine, closers
