"""The composition root: one Lamina process, built from its Settings.

Everything concrete is chosen here and nowhere else: the stores, the sandbox backend and its
templates, the engine, the asynchronous dispatcher, the scheduler, telemetry, tracing and
the audit trail. Each is handed to the layers that use it; `lamina.api.app` then mounts
every HTTP front over these services in one route table.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

from lamina.api.app import Services, front_door
from lamina.api.asgi import FrontDoor
from lamina.api.code_links import CodeLinks
from lamina.arns import Account
from lamina.audit.trail import AuditTrail
from lamina.aws.destinations import Boto3Destinations
from lamina.aws.event_sources import Boto3EventSources
from lamina.aws.s3 import Boto3S3Reader
from lamina.control.concurrency import ConcurrencyService
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.control.mappings import MappingService
from lamina.control.policies import PolicyService
from lamina.function_urls.url_form import choose_form
from lamina.identity.sigv4 import SigV4Verifier
from lamina.invoke.asynchronous.dispatcher import build_dispatcher
from lamina.invoke.governor import ConcurrencyGovernor
from lamina.invoke.pool import EnvironmentPool
from lamina.invoke.preparation import CodePreparation
from lamina.invoke.service import InvokeService, Resolver
from lamina.invoke.tracing import Sampler, Tracing
from lamina.metrics import MetricsRegistry
from lamina.observability.logs_service import open_logs
from lamina.observability.platform_log import environment_logging
from lamina.observability.telemetry import Telemetry
from lamina.observability.tracing import traced_observer
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.artifacts import ArtifactCache
from lamina.sandbox.log_sink import LogSink
from lamina.sandbox.select import select_backend
from lamina.schedules.bus import EventRouter
from lamina.schedules.clock import ScheduleClock
from lamina.schedules.rules import RuleService
from lamina.schedules.scheduler import Scheduler
from lamina.schedules.targets import LambdaTargets
from lamina.settings import Settings
from lamina.store.files import open_audit
from lamina.store.protocols import Stores
from lamina.store.sqlite import open_log_store, open_metrics, open_stores

Closer = Callable[[], None]

log = logging.getLogger("lamina.server")


def build_server(settings: Settings, stores: Stores | None = None) -> FrontDoor:
    """The ASGI application of one Lamina process; its lifespan starts and stops the parts."""
    # Sandboxes mount paths under the data directory from other working directories.
    settings = replace(settings, data_dir=settings.data_dir.absolute())
    stores = stores or open_stores(settings.data_dir)
    account = Account(settings.account_id, settings.region)
    event_sources = Boto3EventSources(
        settings.region,
        sqs_endpoint=settings.sqs_endpoint,
        kinesis_endpoint=settings.kinesis_endpoint,
        dynamodb_streams_endpoint=settings.dynamodb_streams_endpoint,
    )
    domain = Domain(
        stores=stores,
        account=account,
        s3=Boto3S3Reader(settings.region),
        account_concurrency=settings.account_concurrency,
        event_sources=event_sources,
    )
    # One artifact cache and one runtime registry: activation unpacks and locates what
    # cold starts then find ready.
    artifacts = ArtifactCache(settings.data_dir / "artifacts", stores.blobs)
    runtimes = RuntimeRegistry(dict(settings.runtime_overrides))
    functions = FunctionService(domain, CodePreparation(artifacts, runtimes))
    logs = open_logs(settings, open_log_store(settings.data_dir, settings.log_store_max_mb << 20))
    telemetry = Telemetry(open_metrics(settings.data_dir), settings.account_concurrency)
    engine, closers = build_engine(
        settings, domain, functions, logs.sink, telemetry, artifacts, runtimes
    )
    closers.append(logs.close)  # after the backend: environments' last lines land first
    closers.append(event_sources.close)
    destinations = Boto3Destinations(settings.region, settings.events_endpoint)
    dispatcher = build_dispatcher(settings, domain, functions, engine, destinations)
    dispatcher.metrics.subscribe(telemetry.async_metric)
    # EventBridge's metrics are its own: only Lambda's feed the AWS/Lambda series.
    events_metrics = MetricsRegistry()
    scheduler, rules, router = build_scheduler(
        settings, domain, functions, events_metrics, dispatcher.metrics
    )
    audit_records = open_audit(settings.data_dir, settings.audit_max_mb << 20, settings.audit)
    audit = AuditTrail.from_settings(settings, audit_records) if settings.audit else None
    url_form = choose_form(settings)
    log.info(
        "function URLs: the %s form, %s (%s)",
        url_form.form,
        url_form.url("<url-id>"),
        url_form.reason,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        if audit is not None:
            audit.start()
        engine.start()
        telemetry.start()
        dispatcher.start()
        scheduler.start()
        # Changes a stop interrupted (functions left Pending or InProgress) are finished in
        # the background: one reading a slow S3 object must not hold the server's start.
        threading.Thread(
            target=functions.finish_changes, name="lamina-activation", daemon=True
        ).start()
        # Event source mappings a stop left Creating, Updating or Deleting settle now.
        MappingService(domain, functions).finish_transitions()
        try:
            yield
        finally:
            await scheduler.close()
            await dispatcher.close()
            engine.close()
            for close in closers:
                close()
            if audit is not None:
                audit.close()  # last: it writes every call recorded until the very end

    services = Services(
        settings=settings,
        domain=domain,
        functions=functions,
        engine=engine,
        dispatcher=dispatcher,
        events_metrics=events_metrics,
        rules=rules,
        event_router=router,
        logs=logs,
        telemetry=telemetry,
        links=CodeLinks(_link_secret(settings.data_dir), settings.endpoint),
        verifier=_verifier(settings),
        audit_records=audit_records,
        audit=audit,
        url_form=url_form,
    )
    return front_door(services, lifespan)


def build_engine(
    settings: Settings,
    domain: Domain,
    functions: FunctionService,
    log_sink: LogSink,
    telemetry: Telemetry,
    artifacts: ArtifactCache,
    runtimes: RuntimeRegistry,
) -> tuple[InvokeService, list[Closer]]:
    """The data plane (pool, governor, sandbox backend, runtimes, logs) and its closers."""
    stores = domain.stores
    data_dir = settings.data_dir
    backend = select_backend(settings.isolation, hidden=[data_dir], templates=settings.zygote)
    closers: list[Closer] = [backend.close]
    governor = ConcurrencyGovernor(settings.account_concurrency)
    pool = EnvironmentPool(settings.idle_timeout_s)
    observer, close_tracing = traced_observer(telemetry, settings)
    engine = InvokeService(
        account=domain.account,
        resolver=Resolver(functions, stores.functions),
        governor=governor,
        pool=pool,
        backend=backend,
        artifacts=artifacts,
        runtimes=runtimes,
        log_sink=log_sink,
        environment_logging=environment_logging,
        scratch_root=data_dir / "environments",
        provisioned_configs=ConcurrencyService(domain, functions),
        observer=observer,
        tracing=Tracing(Sampler(settings.trace_sample_rate)),
        levels=telemetry,
    )
    # After the backend: the last invocations are counted, then saved.
    closers.append(telemetry.close)
    closers.append(close_tracing)  # sends the spans still queued, then stops exporting
    return engine, closers


def build_scheduler(
    settings: Settings,
    domain: Domain,
    functions: FunctionService,
    metrics: MetricsRegistry,
    lambda_metrics: MetricsRegistry,
) -> tuple[Scheduler, RuleService, EventRouter]:
    """EventBridge rules, the scheduler that fires their schedules into the async queue, and
    the router that matches PutEvents' events against them."""
    clock = ScheduleClock(
        settings.schedule_time_scale, settings.schedule_time_origin or time.time()
    )
    targets = LambdaTargets(functions, PolicyService(domain, functions), domain.account)
    scheduler = Scheduler(
        rules=domain.stores.rules,
        queue=domain.stores.queue,
        targets=targets,
        account=domain.account,
        metrics=metrics,
        clock=clock,
        lambda_metrics=lambda_metrics,
    )
    rules = RuleService(domain.stores.rules, domain.account, clock.now, scheduler.changed)
    router = EventRouter(
        rules=domain.stores.rules,
        targets=targets,
        account=domain.account,
        bus_name=rules.bus_name,
        bus_exists=rules.bus_exists,
        metrics=metrics,
    )
    return scheduler, rules, router


def _verifier(settings: Settings) -> SigV4Verifier | None:
    """Signatures are checked only when the operator configured the account's key pair."""
    if settings.access_key_id and settings.secret_access_key:
        return SigV4Verifier(settings.access_key_id, settings.secret_access_key)
    return None


def _link_secret(data_dir: Path) -> bytes:
    """A per-installation key for signing download links; created once, kept private."""
    path = data_dir / "link-secret"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()
