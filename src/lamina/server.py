"""The composition root: one Lamina process, built from its Settings.

Everything concrete is chosen here and nowhere else: the stores, the sandbox backend and its
templates, the engine, the asynchronous dispatcher, the scheduler, telemetry, tracing and
the audit trail. Each is handed to the layers that use it; `lamina.api.app` then mounts
every HTTP front over these services in one route table.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from starlette.routing import Route

from lamina.api.app import Services, front_door
from lamina.api.asgi import FrontDoor
from lamina.api.cluster_status import cluster_status_route
from lamina.api.code_links import CodeLinks
from lamina.api.gateway import GatewaySetup
from lamina.api.node_invoke import node_routes
from lamina.arns import Account
from lamina.audit.trail import AuditTrail
from lamina.aws.clients import ClientCache
from lamina.aws.destinations import Boto3Destinations
from lamina.aws.event_sources import Boto3EventSources
from lamina.aws.s3 import Boto3S3Reader
from lamina.aws.upstreams import UpstreamTable
from lamina.cluster.auth import NodeAuth
from lamina.cluster.gate import WorkerGate, default_capacity_mb
from lamina.cluster.membership import Membership
from lamina.cluster.placement import PlacementView
from lamina.cluster.provisioned_status import StoredShareReadiness
from lamina.cluster.router import RoutedEngine
from lamina.control.access import Authority
from lamina.control.concurrency import ConcurrencyService
from lamina.control.context import Domain
from lamina.control.environment_keys import EnvironmentKeys
from lamina.control.function_networks import FunctionNetworks
from lamina.control.functions import FunctionService
from lamina.control.iam import IamService
from lamina.control.mappings import MappingService
from lamina.control.networks import load_catalog, networks_path
from lamina.control.policies import PolicyService
from lamina.control.role_permissions import RolePermissions
from lamina.function_urls.url_form import choose_form
from lamina.identity.sigv4 import SigV4Verifier
from lamina.invoke.asynchronous.dispatcher import build_dispatcher
from lamina.invoke.cluster_governor import ClusterGovernor
from lamina.invoke.engine import Engine
from lamina.invoke.governor import ConcurrencyGovernor, Governor
from lamina.invoke.pool import EnvironmentPool
from lamina.invoke.preparation import CodePreparation
from lamina.invoke.service import InvokeService, ProvisionedPlacement, Resolver
from lamina.invoke.tracing import Sampler, Tracing
from lamina.metrics import MetricsRegistry
from lamina.observability.logs_service import open_logs
from lamina.observability.platform_log import environment_logging
from lamina.observability.telemetry import Telemetry
from lamina.observability.tracing import traced_observer
from lamina.pollers.context import PollerContext
from lamina.pollers.invoking import BatchInvoker
from lamina.pollers.kinds import factories as poller_factories
from lamina.pollers.supervisor import AccessCheck, PollerSupervisor
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.api import SandboxBackend
from lamina.sandbox.artifacts import ArtifactCache
from lamina.sandbox.log_sink import LogSink
from lamina.sandbox.namespace import NamespaceBackend
from lamina.sandbox.network import network_options
from lamina.sandbox.process import ProcessBackend
from lamina.sandbox.select import select_backend
from lamina.schedules.bus import EventRouter
from lamina.schedules.clock import ScheduleClock
from lamina.schedules.rules import RuleService
from lamina.schedules.scheduler import Scheduler
from lamina.schedules.targets import LambdaTargets
from lamina.settings import Settings
from lamina.stop_steps import stop_in_order
from lamina.store.files import open_audit
from lamina.store.files.secrets import FileSecrets
from lamina.store.protocols import AuditStore, LogStore, MetricsStore, Stores
from lamina.store.protocols.nodes import NodeReport
from lamina.store.protocols.ownership import LocalOwnership, OwnershipLeases
from lamina.store.protocols.secrets import SharedSecrets
from lamina.store.sealing import MASTER_KEY_FILE, open_master_key
from lamina.store.sqlite import open_log_store, open_metrics, open_stores

Closer = Callable[[], None]
# Redis keys of a node with no shared store (a PostgreSQL store gives its cluster its own).
REDIS_PREFIX = "lamina:"
# `build_engine` with everything but the placement of provisioned environments given.
EngineBuilder = Callable[[ProvisionedPlacement | None], tuple[InvokeService, list[Closer]]]

log = logging.getLogger("lamina.server")


def build_server(settings: Settings, stores: Stores | None = None) -> FrontDoor:
    """The ASGI application of one Lamina process; its lifespan starts and stops the parts."""
    # Sandboxes mount paths under the data directory from other working directories.
    settings = replace(settings, data_dir=settings.data_dir.absolute())
    node_id = node_name(settings)
    storage = open_storage(settings, stores, node_id)
    stores = storage.stores
    shared_secrets = storage.secrets
    event_sources = Boto3EventSources(
        settings.region,
        sqs_endpoint=settings.sqs_endpoint,
        kinesis_endpoint=settings.kinesis_endpoint,
        dynamodb_streams_endpoint=settings.dynamodb_streams_endpoint,
        mq_brokers=[name for name, _ in settings.mq_brokers],
    )
    domain = Domain(
        stores=stores,
        account=Account(settings.account_id, settings.region),
        s3=Boto3S3Reader(settings.region),
        account_concurrency=settings.account_concurrency,
        event_sources=event_sources,
    )
    # One artifact cache and one runtime registry: activation unpacks and locates what
    # cold starts then find ready.
    artifacts = ArtifactCache(settings.data_dir / "artifacts", stores.blobs)
    runtimes = RuntimeRegistry(dict(settings.runtime_overrides))
    authority, roles = build_authority(settings, stores, domain.account)
    functions = FunctionService(
        domain,
        CodePreparation(artifacts, runtimes),
        open_networks(settings, domain.account, roles),
    )
    logs = open_logs(settings, storage.logs)
    telemetry = Telemetry(storage.metrics, settings.account_concurrency, mappings=stores.mappings)
    engine, closers, node = build_data_plane(
        settings,
        domain,
        functools.partial(
            build_engine,
            settings,
            domain,
            functions,
            logs.sink,
            telemetry,
            artifacts,
            runtimes,
            storage.redis_prefix,
            authority=authority,
            # Where environments reach the service gateway: known once the backend is.
            gateway=(gateway := GatewayAddress(settings.endpoint)),
        ),
        shared_secrets,
        node_id,
        storage.redis_prefix,
    )
    # After the backend: environments' last lines land first.
    closers += [logs.close, event_sources.close]
    destinations = Boto3Destinations(settings.region, settings.events_endpoint)
    dispatcher = build_dispatcher(settings, domain, functions, node.engine, destinations, authority)
    dispatcher.metrics.subscribe(telemetry.async_metric)
    # EventBridge's metrics are its own: only Lambda's feed the AWS/Lambda series.
    events_metrics = MetricsRegistry()
    scheduler, rules, router = build_scheduler(
        settings, domain, functions, events_metrics, dispatcher.metrics
    )
    pollers = build_pollers(
        settings,
        domain,
        node.engine,
        telemetry,
        storage.leases,
        roles.poller_refusal if roles else None,
    )
    closers.append(pollers.context.clients.close)
    audit = AuditTrail.from_settings(settings, storage.audit) if settings.audit else None
    closers.extend(storage.closers)  # after everything that reads or writes the stores
    url_form = choose_form(settings)
    log.info("function URLs: the %s form, %s (%s)", *url_form.described())

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        if audit is not None:
            audit.start()
        engine.start()
        await node.start()  # a cluster's node joins before the first call is routed
        telemetry.start()
        dispatcher.start()
        scheduler.start()
        finish_interrupted(domain, functions)
        pollers.start()
        try:
            yield
        finally:
            await stop_in_order(
                # Pollers before the engine: batches in flight finish first.
                ("event source pollers", pollers.close),
                ("schedules", scheduler.close),
                ("asynchronous invocations", dispatcher.close),
                # A cluster's node leaves: no more calls are routed here.
                ("the cluster node", node.close),
                ("the invoke engine", engine.close),
                *((getattr(close, "__qualname__", repr(close)), close) for close in closers),
                # Last: the audit trail writes every call recorded until the very end.
                *([("the audit trail", audit.close)] if audit is not None else []),
            )

    services = Services(
        settings=settings,
        domain=domain,
        functions=functions,
        engine=node.engine,
        dispatcher=dispatcher,
        events_metrics=events_metrics,
        rules=rules,
        event_router=router,
        logs=logs,
        telemetry=telemetry,
        # Shared by every node of a store: a link one node hands out works on any other.
        links=CodeLinks(shared_secrets.secret("link"), settings.endpoint),
        verifier=_verifier(settings),
        audit_records=storage.audit,
        audit=audit,
        url_form=url_form,
        pollers=pollers,
        node_routes=node.routes,
        authority=authority,
        gateway=GatewaySetup(
            UpstreamTable.of_this_process(own_urls(settings, gateway)),
            gateway.url,
            gateway.listen,
            settings.region,
        ),
    )
    return front_door(services, lifespan)


@dataclass
class GatewayAddress:
    """Where function code's SDK calls go (their AWS_ENDPOINT_URL): Lamina's own endpoint,
    or the address a backend with network isolation gives only its environments, where the
    server then listens too (`listen`). Chosen by `build_engine` with the backend."""

    url: str
    listen: tuple[str, int] | None = None

    def choose(self, settings: Settings, backend: SandboxBackend) -> str:
        network = backend.network if isinstance(backend, NamespaceBackend) else None
        if network is None:
            return self.url
        host = network.gateway_address
        network.open_gateway_port(settings.port)
        self.url = f"http://{host}:{settings.port}"
        # A server listening on every address already listens on the gateway's.
        if settings.host not in {host, "0.0.0.0", "::"}:
            self.listen = (host, settings.port)
        return self.url


def settle_heap() -> None:
    """Exempt what building the server made from the cyclic garbage collector's full passes.

    The server holds some 100,000 long-lived objects once built (service models, routes,
    the store's and the engine's state) that no collection will ever free. A full
    collection walks every one of them, writing to each: during a burst of 100 cold starts,
    which allocates enough to trigger one, that walk took 70 ms of the event loop's thread
    (the burst about 800 ms) and most of the server's 4,600 page faults (800 once frozen).
    Frozen, they are left out of every pass; the collector keeps watching everything
    allocated afterwards.
    """
    gc.collect()
    gc.freeze()


def own_urls(settings: Settings, gateway: GatewayAddress) -> list[str]:
    """Lamina's own addresses: an upstream configured at one of them would loop back."""
    advertised = [settings.advertise_url] if settings.advertise_url else []
    return [settings.endpoint, gateway.url, *advertised]


def build_authority(
    settings: Settings, stores: Stores, account: Account
) -> tuple[Authority | None, RolePermissions | None]:
    """Enforced mode's one decider of calls (for the API, the dispatcher and the console) and
    its view of execution roles (what Lambda does as a function's role: pollers, KMS keys,
    file systems), with one policy cache; neither in development mode."""
    if not settings.authentication_enabled:
        return None, None
    authority = Authority(IamService(stores.iam, account), stores.functions)
    return authority, RolePermissions(authority, account)


def open_networks(
    settings: Settings, account: Account, roles: RolePermissions | None = None
) -> FunctionNetworks:
    """The operator's VPCs and file systems, read once (see `lamina.control.networks`);
    NetworksFileError names what is wrong in the file and where. `roles`: enforced mode's
    check of what a function's role lets it do with a file system at each cold start."""
    catalog = load_catalog(networks_path(settings.networks_file, settings.data_dir))
    if catalog.source is not None:
        log.info(
            "networks: %d VPCs, %d access points from %s",
            len(catalog.vpcs),
            len(catalog.access_points),
            catalog.source,
        )
    return FunctionNetworks(catalog, account, roles)


def finish_interrupted(domain: Domain, functions: FunctionService) -> None:
    """Finish what a stop interrupted."""
    # Functions left Pending or InProgress finish in the background: one reading a slow S3
    # object must not hold the server's start.
    threading.Thread(
        target=_finish_activations, args=(functions,), name="lamina-activation", daemon=True
    ).start()
    # Event source mappings a stop left Creating, Updating or Deleting settle now.
    MappingService(domain, functions).finish_transitions()


def _finish_activations(functions: FunctionService) -> None:
    functions.finish_changes()
    # SnapStart versions whose snapshot a stop interrupted are snapshotted again.
    functions.finish_snapshots()


def build_engine(
    settings: Settings,
    domain: Domain,
    functions: FunctionService,
    log_sink: LogSink,
    telemetry: Telemetry,
    artifacts: ArtifactCache,
    runtimes: RuntimeRegistry,
    redis_prefix: str = REDIS_PREFIX,
    placement: ProvisionedPlacement | None = None,
    *,
    authority: Authority | None = None,
    gateway: GatewayAddress | None = None,
) -> tuple[InvokeService, list[Closer]]:
    """The data plane (pool, governor, sandbox backend, runtimes, logs) and its closers."""
    stores = domain.stores
    data_dir = settings.data_dir
    # An API-only node starts no environments: no template to keep warm for them.
    templates = settings.zygote and settings.worker
    # `backend.network` (NamespaceBackend) holds the gateway address environments reach.
    network = network_options(settings) if settings.worker else None
    backend = select_backend(
        settings.isolation, [data_dir], templates, network, settings.cgroup_fast_moves
    )
    if settings.authentication_enabled and isinstance(backend, ProcessBackend):
        # Function code under the process backend can read the data directory and other
        # environments' variables: the IAM store's keys and every role's session with them.
        log.warning(
            "enforced mode with the process backend: functions are not isolated from the "
            "data directory or each other, so their code can read IAM keys and sessions; "
            "use the namespace backend (see `lamina doctor`)"
        )
    closers: list[Closer] = [backend.close]
    governor = build_governor(settings, closers, redis_prefix)
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
        placement=placement,
        endpoint=(gateway or GatewayAddress(settings.endpoint)).choose(settings, backend),
        iam=stores.iam,
        environment_keys=EnvironmentKeys(
            stores.kms, RolePermissions(authority, domain.account) if authority else None
        ),
        enforced=settings.authentication_enabled,
        networks=functions.networks,
    )
    # SnapStart: published versions' snapshots are made by this data plane, when the
    # operator turned it on; otherwise SnapStart versions run as any other.
    if settings.snapstart:
        engine.snapstart.serve(functions, settings.snapstart_snapshots)
    # After the backend: the last invocations are counted, then saved.
    closers.append(telemetry.close)
    closers.append(close_tracing)  # sends the spans still queued, then stops exporting
    return engine, closers


def build_governor(
    settings: Settings, closers: list[Closer], redis_prefix: str = REDIS_PREFIX
) -> Governor:
    """This node's concurrency counts, or with `redis_url` every node's (shared leases)."""
    if settings.redis_url is None:
        return ConcurrencyGovernor(settings.account_concurrency)
    # Lazy: a single node never loads the Redis client.
    from lamina.store.redis import open_redis_leases

    leases = open_redis_leases(settings.redis_url, prefix=redis_prefix + "leases:")
    closers.append(leases.close)
    return ClusterGovernor(leases, settings.account_concurrency)


def build_pollers(
    settings: Settings,
    domain: Domain,
    engine: Engine,
    telemetry: Telemetry,
    leases: OwnershipLeases | None = None,
    access: AccessCheck | None = None,
) -> PollerSupervisor:
    """The event source mapping pollers, reading their sources at the configured endpoints;
    their counters feed `telemetry`."""
    metrics = MetricsRegistry()
    metrics.subscribe(telemetry.mapping_metric)
    clients = ClientCache(
        settings.region,
        {
            "sqs": settings.sqs_endpoint,
            "kinesis": settings.kinesis_endpoint,
            "dynamodbstreams": settings.dynamodb_streams_endpoint,
        },
    )
    context = PollerContext(
        invoker=BatchInvoker(engine),
        store=domain.stores.mappings,
        metrics=metrics,
        clients=clients,
        # Each SQS long poll holds a thread for up to 20 s.
        threads=ThreadPoolExecutor(max_workers=64, thread_name_prefix="lamina-poller"),
        account=domain.account,
        mq_brokers=dict(settings.mq_brokers),
    )
    return PollerSupervisor(
        context,
        poller_factories(),
        interval_s=settings.poller_reconcile_s,
        leases=leases,
        access=access,
    )


@dataclass
class Node:
    """This process as a node: the engine the fronts invoke through, its own endpoints, and
    in a cluster its membership (None on a single node)."""

    engine: Engine
    routes: list[Route]
    membership: Membership | None = None
    routed: RoutedEngine | None = None

    async def start(self) -> None:
        if self.membership is not None:
            await self.membership.start()

    async def close(self) -> None:
        if self.membership is not None:
            await self.membership.close()
        if self.routed is not None:
            await self.routed.close()


def build_data_plane(
    settings: Settings,
    domain: Domain,
    build_engine: EngineBuilder,
    shared_secrets: SharedSecrets,
    node_id: str,
    redis_prefix: str = REDIS_PREFIX,
) -> tuple[InvokeService, list[Closer], Node]:
    """This node's engine and how the fronts reach it: directly on a single node; in a
    cluster, through routing (`build_cluster`)."""
    if settings.routed:
        return build_cluster(settings, domain, build_engine, shared_secrets, node_id, redis_prefix)
    engine, closers = build_engine(None)
    report = functools.partial(node_report, settings, node_id, engine, None)
    status = cluster_status_route(None, domain.stores.queue, report, _verifier(settings))
    return engine, closers, Node(engine, [status])


def build_cluster(
    settings: Settings,
    domain: Domain,
    build_engine: EngineBuilder,
    shared_secrets: SharedSecrets,
    node_id: str,
    redis_prefix: str = REDIS_PREFIX,
) -> tuple[InvokeService, list[Closer], Node]:
    """Membership in the cluster (heartbeats in Redis), provisioned environments placed over
    its workers, the worker's gate unless `--no-worker`, routing, and the endpoints other
    nodes call."""
    assert settings.redis_url is not None
    # Lazy: a single node never loads the Redis client.
    from lamina.store.redis import open_redis_nodes

    registry = open_redis_nodes(settings.redis_url, settings.node_expiry_s, prefix=redis_prefix)
    # The membership is made before the engine (whose provisioned pool places by it), and
    # reports the engine's load once both exist.
    engine: InvokeService | None = None
    gate: WorkerGate | None = None

    def report() -> NodeReport:
        assert engine is not None
        return node_report(settings, node_id, engine, gate)

    membership = Membership(registry, report, settings.heartbeat_s, settings.node_expiry_s)
    # Suspects still hold their provisioned environments: one failed connection must not
    # move them (routing leaves suspects out; placement does not).
    view = PlacementView(node_id, membership.worker_ids, lambda: membership.version)
    readiness = StoredShareReadiness(domain.stores.functions, node_id, view.ids)
    engine, closers = build_engine(ProvisionedPlacement(view.share, view.version, readiness))
    closers.append(registry.close)
    if settings.worker:
        gate = WorkerGate(engine, settings.worker_memory_mb or default_capacity_mb())
    auth = NodeAuth(shared_secrets.secret("node-auth"))
    routed = RoutedEngine(engine, gate, membership, auth)
    routes = [
        *node_routes(gate, auth),
        cluster_status_route(membership, domain.stores.queue, report, _verifier(settings)),
    ]
    return engine, closers, Node(routed, routes, membership, routed)


def node_report(
    settings: Settings, node_id: str, engine: InvokeService, gate: WorkerGate | None
) -> NodeReport:
    """What this node tells its cluster at each heartbeat: where it answers, and its load."""
    pool = engine.pool
    return NodeReport(
        node_id=node_id,
        address=settings.node_url,
        worker=settings.worker,
        capacity_mb=gate.capacity_mb if gate is not None else 0,
        memory_used_mb=gate.memory_used_mb if gate is not None else 0,
        environments=pool.size,
        in_flight=gate.in_flight if gate is not None else 0,
        idle=pool.idle_by_version(),
        provisioned=engine.idle_provisioned(),
    )


@dataclass
class Storage:
    """Every store of one node, on SQLite and files (one node) or PostgreSQL (a cluster)."""

    stores: Stores
    logs: LogStore
    metrics: MetricsStore
    audit: AuditStore
    # Secrets every node of the store shares (download links, node-to-node calls).
    secrets: SharedSecrets
    # Event source mapping leases: shared through PostgreSQL, else trivially this node's.
    leases: OwnershipLeases = field(default_factory=LocalOwnership)
    # What this store's cluster keeps in Redis is under this prefix, so that clusters
    # sharing one Redis never see each other's nodes or leases.
    redis_prefix: str = REDIS_PREFIX
    # What closes the stores (the audit store is closed by the audit trail, when there is one).
    closers: list[Closer] = field(default_factory=list)


def open_storage(
    settings: Settings, stores: Stores | None = None, node_id: str | None = None
) -> Storage:
    """The stores `settings` name: every one in PostgreSQL when `store_url` is set (the
    node's own files, archives' cache and environments stay under `data_dir`), else SQLite
    and files under `data_dir`. `stores` (tests) replaces the control plane's stores."""
    data_dir = settings.data_dir
    log_bytes, audit_bytes = settings.log_store_max_mb << 20, settings.audit_max_mb << 20
    key_file = settings.master_key_file or data_dir / MASTER_KEY_FILE
    if settings.store_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        return Storage(
            stores=stores or open_stores(data_dir, open_master_key(key_file)),
            logs=open_log_store(data_dir, log_bytes),
            metrics=open_metrics(data_dir),
            audit=open_audit(data_dir, audit_bytes, settings.audit),
            secrets=FileSecrets(data_dir),
        )
    # Lazy: a single node never loads the driver.
    from lamina.store import postgres
    from lamina.store.postgres.database import PgDatabase
    from lamina.store.postgres.ownership import PgOwnershipLeases
    from lamina.store.postgres.secrets import PgSharedSecrets

    url = settings.store_url
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:  # connecting and migrating: psycopg's errors, which nothing outside store/ names
        database = PgDatabase(url)
        leases = PgOwnershipLeases(
            database, node_id or node_name(settings), settings.mapping_lease_s
        )
        audit = postgres.open_pg_audit(url, audit_bytes)
        shared_secrets = PgSharedSecrets(database)
        cluster_id = shared_secrets.secret("cluster").hex()[:16]
        return Storage(
            stores=stores
            or postgres.pg_stores(database, data_dir / "blobs", open_master_key(key_file)),
            logs=postgres.open_pg_log_store(url, log_bytes),
            metrics=postgres.open_pg_metrics(url),
            audit=audit,
            leases=leases,
            secrets=shared_secrets,
            redis_prefix=f"lamina:{cluster_id}:",
            closers=[database.close] if settings.audit else [database.close, audit.close],
        )
    except Exception as error:
        raise StoreUnavailable(f"cannot open the store at {_redacted(url)}: {error}") from error


class StoreUnavailable(Exception):
    """The store named by `--store` cannot be reached or opened."""


def _redacted(url: str) -> str:
    """`url` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def node_name(settings: Settings) -> str:
    """This process among a cluster's nodes: host, port, process and a random part (a node
    restarted on the same address is another owner of leases)."""
    return f"{socket.gethostname()}:{settings.port}:{os.getpid()}:{secrets.token_hex(4)}"


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
