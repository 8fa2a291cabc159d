"""Settings: one typed object built once from the environment and CLI flags."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from lamina.constants import ACCOUNT_CONCURRENCY_DEFAULT, DEFAULT_ACCOUNT_ID, DEFAULT_REGION

# How LAMINA_* on/off variables are written; anything else leaves the default.
_ON = frozenset({"1", "on", "true", "yes"})
_OFF = frozenset({"0", "off", "false", "no"})
# X-Ray's default rule samples 5% of requests beyond the first each second.
DEFAULT_TRACE_SAMPLE_RATE = 0.05
# OpenTelemetry's OTLP/HTTP path for spans, added to a collector's base address.
_TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class SpanBatching:
    """How exported spans are batched: the OpenTelemetry specification's `OTEL_BSP_*`."""

    delay_ms: int = 5000
    max_queue: int = 2048
    max_batch: int = 512

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SpanBatching:
        def number(name: str, default: int) -> int:
            value = environ.get(name, "")
            return int(value) if value.isdigit() and int(value) > 0 else default

        base = cls()
        return cls(
            delay_ms=number("OTEL_BSP_SCHEDULE_DELAY", base.delay_ms),
            max_queue=number("OTEL_BSP_MAX_QUEUE_SIZE", base.max_queue),
            max_batch=number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", base.max_batch),
        )


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one Lamina process."""

    host: str = "127.0.0.1"
    port: int = 9000
    data_dir: Path = Path(".lamina")
    account_id: str = DEFAULT_ACCOUNT_ID
    region: str = DEFAULT_REGION
    # When both are set every API request must carry a valid SigV4 signature made with them.
    access_key_id: str | None = None
    secret_access_key: str | None = None
    insecure: bool = False
    account_concurrency: int = ACCOUNT_CONCURRENCY_DEFAULT
    # The address clients use to reach this server; `Code.Location` URLs point here.
    public_url: str | None = None
    # How `FunctionUrl`s are written: "host" (`<id>.lambda-url.<region>.localhost`), "path"
    # (`<endpoint>/lambda-url/<id>/`), or "auto": host where the system resolver maps
    # `*.localhost` to this server, else path (see `lamina.function_urls.url_form`).
    function_url_form: str = "auto"
    # Idle warm environments are stopped after this long.
    idle_timeout_s: float = 600.0
    # "auto" picks the strongest isolation the host allows; "process" forces the fallback.
    isolation: str = "auto"
    # A network namespace per environment under the namespace backend (off: environments
    # share the host's network, loopback services included).
    network_isolation: bool = True
    # Let the namespace backend set the kernel's cgroup2 `favordynmods` flag, which makes
    # moving a cold start's runtime into its cgroup ~30x cheaper (`lamina.sandbox.
    # cgroup_moves`); off (LAMINA_CGROUP_FAST_MOVES=off) leaves the host's flags alone.
    cgroup_fast_moves: bool = True
    # Fork Python runtimes from a pre-initialised template process (see README).
    zygote: bool = True
    runtime_overrides: tuple[tuple[str, str], ...] = ()
    # A factor on schedule time: a minute of schedules lasts this many real minutes, counted
    # from `schedule_time_origin` (epoch seconds; default: when the process starts). 1 is
    # real time; tests use e.g. 0.01 so that a `rate(1 minute)` rule fires every 0.6 s.
    schedule_time_scale: float = 1.0
    schedule_time_origin: float | None = None
    # How many asynchronous events this process runs at once.
    async_workers: int = 64
    # A factor on every asynchronous interval: retry delays, throttle backoff and maximum
    # event age. 1 is AWS's timing; tests use e.g. 0.01 so that minutes pass in seconds.
    async_retry_scale: float = 1.0
    # How long a claimed event stays leased without renewal; after a crash its events
    # return to the queue once this has passed.
    async_lease_s: float = 30.0
    # Control-plane calls are appended to an audit log under the data directory.
    audit: bool = True
    # Invokes too (CloudTrail's "data events"): off by default, as on AWS.
    audit_invokes: bool = False
    # Synchronous Invokes served from the parsed HTTP request (`lamina.api.fast_invoke`);
    # off only to compare with the generic path (LAMINA_FAST_INVOKE=0).
    fast_invoke: bool = True
    # SnapStart (`SnapStart.ApplyOn=PublishedVersions` on Python functions): published
    # versions are snapshotted and their environments restored from the snapshot. An
    # operator can turn it off (LAMINA_SNAPSTART=off): see the README's SnapStart section for
    # what a restored environment shares with its version's others.
    snapstart: bool = True
    # Snapshots a node keeps at most (LAMINA_SNAPSTART_SNAPSHOTS). Each holds its version's
    # initialised process, 257 uids and two network namespaces: past this many, the least
    # recently used one with no environment running is stopped (its version's next call is
    # refused as not ready while it is made again, as after a restart).
    snapstart_snapshots: int = 32
    # The audit log's size budget; the oldest entries go first.
    audit_max_mb: int = 100
    # The log store's disk budget (LAMINA_LOG_STORE_MAX_MB); the oldest events go first.
    log_store_max_mb: int = 1024
    # What one invocation may log; the rest is dropped after a marker line.
    log_invocation_max_mb: int = 64
    # AWS list prices (USD, us-east-1, first tier) for `lamina cost` and `lamina tune`.
    price_request_per_million: float = 0.20
    price_gb_second: float = 0.0000166667
    price_gb_second_arm64: float = 0.0000133334
    # When set, `/metrics` answers only `Authorization: Bearer <token>` (a Prometheus
    # scrape config's `authorization.credentials`).
    metrics_token: str | None = None
    # Where spans of actively traced functions go (OTLP/HTTP, e.g.
    # http://localhost:4318/v1/traces); None records none (see README, Tracing).
    otlp_endpoint: str | None = None
    # Active tracing samples the first invocation each second per function, then this share.
    trace_sample_rate: float = DEFAULT_TRACE_SAMPLE_RATE
    span_batching: SpanBatching = SpanBatching()
    # Where EventBridge destinations are sent; None leaves it to boto3 (AWS itself).
    events_endpoint: str | None = None
    # Where the queues and streams of event source mappings are reached (botocore's
    # AWS_ENDPOINT_URL_SQS, _KINESIS, _DYNAMODB_STREAMS, else AWS_ENDPOINT_URL); None leaves
    # it to boto3 (AWS itself).
    sqs_endpoint: str | None = None
    kinesis_endpoint: str | None = None
    dynamodb_streams_endpoint: str | None = None
    # Where RabbitMQ brokers named by Amazon MQ ARNs listen: broker name -> amqp:// URL
    # (LAMINA_MQ_BROKERS, `<broker-name>=amqp://host:port,...`). A local stand-in for the MQ
    # API cannot hand out a reachable endpoint, so the operator says where each broker is.
    mq_brokers: tuple[tuple[str, str], ...] = ()
    # How often the poller supervisor compares the running pollers with the stored mappings.
    poller_reconcile_s: float = 0.25
    # Where the cluster's shared state lives: a PostgreSQL URL (LAMINA_STORE, `--store`) puts
    # every store there, so several nodes serve one set of functions; None keeps SQLite and
    # files under `data_dir` (one node).
    store_url: str | None = None
    # Redis for the soft state nodes share (LAMINA_REDIS, `--redis`): cluster-wide
    # concurrency leases. None: each node counts its own concurrency.
    redis_url: str | None = None
    # How long a node's lease on an event source mapping lasts unrenewed, with a PostgreSQL
    # store (LAMINA_MAPPING_LEASE_SECONDS): when a node dies, another node starts polling
    # its mappings within about this long.
    mapping_lease_s: float = 10.0
    # Whether this node runs execution environments (`--no-worker`, LAMINA_NO_WORKER: an
    # API-only frontend that routes every invocation to the cluster's workers).
    worker: bool = True
    # The memory a worker lends its environments (LAMINA_WORKER_MEMORY_MB): a cold start
    # that would pass it answers Busy, so the caller tries another worker. 0: three
    # quarters of the machine's memory.
    worker_memory_mb: int = 0
    # Where the cluster's other nodes reach this one (LAMINA_ADVERTISE_URL, `--advertise`);
    # None: `endpoint`.
    advertise_url: str | None = None
    # A node heartbeats every `heartbeat_s`; a node silent for `node_expiry_s` is dead to the
    # others (LAMINA_HEARTBEAT_SECONDS, LAMINA_NODE_EXPIRY_SECONDS).
    heartbeat_s: float = 1.0
    node_expiry_s: float = 3.0
    # The key environment variables and KMS keys are sealed under at rest, kept outside the
    # database (LAMINA_MASTER_KEY_FILE); None: `data_dir/master-key`, made on first start.
    # Every node of a PostgreSQL store needs the same file.
    master_key_file: Path | None = None
    # The operator's VPC-style networks and EFS-style file systems (LAMINA_NETWORKS_FILE);
    # None: `data_dir/networks.toml` when that file exists (see `lamina.control.networks`).
    networks_file: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str) -> str | None:
            value = environ.get(f"LAMINA_{name}")
            return value if value else None

        def flag(name: str, default: bool) -> bool:
            # Only a word that says the opposite of the default changes it.
            value = (get(name) or "").lower()
            return value not in _OFF if default else value in _ON

        base = cls()
        return replace(
            base,
            host=get("HOST") or base.host,
            port=int(get("PORT") or base.port),
            data_dir=Path(get("DATA_DIR") or base.data_dir),
            account_id=get("ACCOUNT_ID") or base.account_id,
            region=get("REGION") or base.region,
            access_key_id=get("ACCESS_KEY_ID"),
            secret_access_key=get("SECRET_ACCESS_KEY"),
            insecure=flag("INSECURE", base.insecure),
            account_concurrency=int(get("ACCOUNT_CONCURRENCY") or base.account_concurrency),
            public_url=get("PUBLIC_URL"),
            function_url_form=(get("FUNCTION_URL_FORM") or base.function_url_form).lower(),
            idle_timeout_s=float(get("IDLE_TIMEOUT") or base.idle_timeout_s),
            isolation=get("ISOLATION") or base.isolation,
            network_isolation=flag("NETWORK_ISOLATION", base.network_isolation),
            zygote=flag("ZYGOTE", base.zygote),
            runtime_overrides=tuple(sorted(overrides_from_env(environ).items())),
            schedule_time_scale=float(get("SCHEDULE_TIME_SCALE") or base.schedule_time_scale),
            schedule_time_origin=float(origin) if (origin := get("SCHEDULE_TIME_ORIGIN")) else None,
            async_workers=int(get("ASYNC_WORKERS") or base.async_workers),
            async_retry_scale=float(get("ASYNC_RETRY_SCALE") or base.async_retry_scale),
            async_lease_s=float(get("ASYNC_LEASE_SECONDS") or base.async_lease_s),
            audit=flag("AUDIT", base.audit),
            audit_invokes=flag("AUDIT_INVOKES", base.audit_invokes),
            fast_invoke=flag("FAST_INVOKE", base.fast_invoke),
            cgroup_fast_moves=flag("CGROUP_FAST_MOVES", base.cgroup_fast_moves),
            snapstart=flag("SNAPSTART", base.snapstart),
            snapstart_snapshots=max(1, int(get("SNAPSTART_SNAPSHOTS") or base.snapstart_snapshots)),
            audit_max_mb=int(get("AUDIT_MAX_MB") or base.audit_max_mb),
            log_store_max_mb=int(get("LOG_STORE_MAX_MB") or base.log_store_max_mb),
            log_invocation_max_mb=int(get("LOG_INVOCATION_MAX_MB") or base.log_invocation_max_mb),
            price_request_per_million=float(
                get("PRICE_REQUEST_PER_MILLION") or base.price_request_per_million
            ),
            price_gb_second=float(get("PRICE_GB_SECOND") or base.price_gb_second),
            price_gb_second_arm64=float(get("PRICE_GB_SECOND_ARM64") or base.price_gb_second_arm64),
            metrics_token=get("METRICS_TOKEN"),
            otlp_endpoint=otlp_traces_url(environ),
            trace_sample_rate=float(get("TRACE_SAMPLE_RATE") or base.trace_sample_rate),
            span_batching=SpanBatching.from_env(environ),
            # botocore reads AWS_ENDPOINT_URL_<service id>, ..._EVENTBRIDGE for EventBridge;
            # the name people set is ..._EVENTS (the endpoint prefix), so both are honoured.
            events_endpoint=environ.get("AWS_ENDPOINT_URL_EVENTBRIDGE")
            or environ.get("AWS_ENDPOINT_URL_EVENTS"),
            sqs_endpoint=service_endpoint(environ, "SQS"),
            kinesis_endpoint=service_endpoint(environ, "KINESIS"),
            dynamodb_streams_endpoint=service_endpoint(environ, "DYNAMODB_STREAMS"),
            mq_brokers=mq_brokers_from(get("MQ_BROKERS") or ""),
            poller_reconcile_s=float(get("POLLER_RECONCILE_SECONDS") or base.poller_reconcile_s),
            store_url=get("STORE"),
            redis_url=get("REDIS"),
            mapping_lease_s=float(get("MAPPING_LEASE_SECONDS") or base.mapping_lease_s),
            worker=not flag("NO_WORKER", False),
            worker_memory_mb=int(get("WORKER_MEMORY_MB") or base.worker_memory_mb),
            advertise_url=get("ADVERTISE_URL"),
            heartbeat_s=float(get("HEARTBEAT_SECONDS") or base.heartbeat_s),
            node_expiry_s=float(get("NODE_EXPIRY_SECONDS") or base.node_expiry_s),
            master_key_file=Path(key_file) if (key_file := get("MASTER_KEY_FILE")) else None,
            networks_file=Path(networks) if (networks := get("NETWORKS_FILE")) else None,
        )

    @property
    def authentication_enabled(self) -> bool:
        return bool(self.access_key_id and self.secret_access_key)

    @property
    def routed(self) -> bool:
        """Whether invocations are routed among the cluster's worker nodes: with a shared
        store and Redis (where nodes find each other)."""
        return self.store_url is not None and self.redis_url is not None

    @property
    def node_url(self) -> str:
        """Where the cluster's other nodes reach this node."""
        return (self.advertise_url or self.endpoint).rstrip("/")

    @property
    def endpoint(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in {"0.0.0.0", "::"}:
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def check(self) -> None:
        """Refuse configurations that would expose an unauthenticated API to a network."""
        if not 0 < self.poller_reconcile_s < self.mapping_lease_s / 3:
            raise ValueError(
                "LAMINA_POLLER_RECONCILE_SECONDS must be above 0 and under a third of "
                "LAMINA_MAPPING_LEASE_SECONDS: a lease is renewed at a reconcile"
            )
        if self.isolation not in {"auto", "process", "namespace"}:
            raise ValueError(
                f"isolation must be auto, process or namespace, got {self.isolation!r}"
            )
        if self.function_url_form not in {"auto", "host", "path"}:
            raise ValueError(
                "LAMINA_FUNCTION_URL_FORM must be auto, host or path, "
                f"got {self.function_url_form!r}"
            )
        if self.async_workers < 1 or self.async_retry_scale <= 0 or self.async_lease_s <= 0:
            raise ValueError(
                "LAMINA_ASYNC_WORKERS, LAMINA_ASYNC_RETRY_SCALE and LAMINA_ASYNC_LEASE_SECONDS "
                "must be positive"
            )
        if self.audit_max_mb < 1:
            raise ValueError(f"LAMINA_AUDIT_MAX_MB must be at least 1, got {self.audit_max_mb}")
        if self.log_store_max_mb < 1 or self.log_invocation_max_mb < 1:
            raise ValueError(
                "LAMINA_LOG_STORE_MAX_MB and LAMINA_LOG_INVOCATION_MAX_MB must be at least 1"
            )
        if not 0 <= self.trace_sample_rate <= 1:
            raise ValueError(
                f"LAMINA_TRACE_SAMPLE_RATE must be between 0 and 1, got {self.trace_sample_rate}"
            )
        if self.store_url is not None and not self.store_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError(
                f"--store/LAMINA_STORE must be a postgresql:// URL, got {self.store_url!r}"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError(f"--redis/LAMINA_REDIS must be a redis:// URL, got {self.redis_url!r}")
        if self.mapping_lease_s <= 0:
            raise ValueError("LAMINA_MAPPING_LEASE_SECONDS must be positive")
        if not self.worker and not self.routed:
            raise ValueError(
                "--no-worker needs --store and --redis: an API-only node routes invocations "
                "to the workers of a cluster"
            )
        if self.worker_memory_mb < 0:
            raise ValueError(
                "LAMINA_WORKER_MEMORY_MB must be 0 (automatic) or more, "
                f"got {self.worker_memory_mb}"
            )
        if not 0 < self.heartbeat_s <= self.node_expiry_s / 2:
            raise ValueError(
                "LAMINA_HEARTBEAT_SECONDS must be above 0 and at most half of "
                "LAMINA_NODE_EXPIRY_SECONDS: one late heartbeat must not look like a death"
            )
        if self.schedule_time_scale <= 0:
            raise ValueError("LAMINA_SCHEDULE_TIME_SCALE must be positive")
        if len(self.account_id) != 12 or not self.account_id.isdigit():
            raise ValueError(f"account id must be 12 digits, got {self.account_id!r}")
        if not is_loopback(self.host) and not self.authentication_enabled and not self.insecure:
            raise ValueError(
                f"refusing to listen on {self.host}, which is reachable from other machines, "
                "without authentication: set LAMINA_ACCESS_KEY_ID and "
                "LAMINA_SECRET_ACCESS_KEY, or pass --insecure to accept the risk"
            )


def is_loopback(host: str) -> bool:
    """Whether a host name or address stays on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mq_brokers_from(text: str) -> tuple[tuple[str, str], ...]:
    """`name=amqp://host:port,name2=amqps://...` as (name, URL) pairs; ValueError if malformed."""
    brokers = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip().startswith(("amqp://", "amqps://")):
            raise ValueError(f"LAMINA_MQ_BROKERS: {item!r} is not <broker-name>=amqp://host:port")
        brokers.append((name.strip(), url.strip()))
    return tuple(brokers)


def service_endpoint(environ: Mapping[str, str], service: str) -> str | None:
    """botocore's endpoint setting for one service: `AWS_ENDPOINT_URL_<SERVICE>`, else the
    global `AWS_ENDPOINT_URL`; None when neither is set (AWS itself)."""
    return environ.get(f"AWS_ENDPOINT_URL_{service}") or environ.get("AWS_ENDPOINT_URL") or None


def overrides_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`LAMINA_RUNTIME_PYTHON3_12=/opt/py/bin/python3` → {"python3.12": "/opt/py/bin/python3"}."""
    result = {}
    for key, value in environ.items():
        if key.startswith("LAMINA_RUNTIME_") and value:
            name = key.removeprefix("LAMINA_RUNTIME_").lower()
            # python3_12 -> python3.12, nodejs20_x -> nodejs20.x, provided_al2 -> provided.al2
            result[name.replace("_", ".")] = value
    return result


def otlp_traces_url(environ: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP traces URL: `LAMINA_OTLP_ENDPOINT`, else OpenTelemetry's own variables.

    `LAMINA_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_ENDPOINT` name a collector (`/v1/traces`
    is added, as the OpenTelemetry specification says for the latter);
    `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is the full URL already.
    """
    base = environ.get("LAMINA_OTLP_ENDPOINT") or ""
    if not base:
        if full := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            return full
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""
    if not base:
        return None
    base = base.rstrip("/")
    return base if base.endswith(_TRACES_PATH) else base + _TRACES_PATH
