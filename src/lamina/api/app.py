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
from lamina.api.code_links import CodeLinks
from lamina.api.context import ApiContext, Handler
from lamina.api.dispatch import RestJsonService
from lamina.api.views import Views
from lamina.arns import Account
from lamina.aws.s3 import Boto3S3Reader
from lamina.control.concurrency import ConcurrencyService
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.invoke.async_invoke import build_dispatcher
from lamina.invoke.governor import ConcurrencyGovernor
from lamina.invoke.pool import EnvironmentPool
from lamina.invoke.service import InvokeService, Resolver
from lamina.observability.logs import FileLogSink
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.api import SandboxBackend
from lamina.sandbox.artifacts import ArtifactCache
from lamina.sandbox.namespace import NamespaceBackend
from lamina.sandbox.select import select_backend
from lamina.sandbox.zygote import Templates, ZygoteBackend
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
    engine, closers = build_engine(settings, ctx)
    dispatcher = build_dispatcher(settings, ctx.domain, ctx.functions, engine)
    handlers.update(invoke.operations(ctx, engine, dispatcher))
    model = botocore.session.get_session().get_service_model("lambda")
    verifier = (
        SigV4Verifier(settings.access_key_id, settings.secret_access_key)
        if settings.access_key_id and settings.secret_access_key
        else None
    )
    lambda_api = RestJsonService(model, handlers, verifier)

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
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        engine.start()
        dispatcher.start()
        try:
            yield
        finally:
            await dispatcher.close()
            engine.close()
            for close in closers:
                close()

    return LaminaApp(lambda_api.handle, Router(routes=routes, lifespan=lifespan))


def build_engine(
    settings: Settings, ctx: ApiContext
) -> tuple[InvokeService, list[Callable[[], None]]]:
    """The data plane (pool, governor, sandbox backend, runtimes, logs) and its closers."""
    stores = ctx.domain.stores
    data_dir = settings.data_dir
    backend: SandboxBackend = select_backend(settings.isolation, hidden=[data_dir])
    log_sink = FileLogSink(data_dir / "logs")
    closers: list[Callable[[], None]] = [log_sink.close, backend.close]
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
    engine = InvokeService(
        account=ctx.domain.account,
        resolver=Resolver(ctx.functions, stores.functions),
        governor=ConcurrencyGovernor(settings.account_concurrency),
        pool=EnvironmentPool(settings.idle_timeout_s),
        backend=backend,
        artifacts=ArtifactCache(data_dir / "artifacts", stores.blobs),
        runtimes=RuntimeRegistry(dict(settings.runtime_overrides)),
        log_sink=log_sink,
        scratch_root=data_dir / "environments",
        provisioned_configs=ConcurrencyService(ctx.domain, ctx.functions),
    )
    return engine, closers
