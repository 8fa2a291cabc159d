"""Synchronous invocation: resolve the qualifier, admit under concurrency, place, run.

Admission (`admit`) is synchronous, so the concurrency check and the choice of a provisioned
environment happen atomically on the event loop; running (`run`) may then start a new
environment, which is how concurrent calls of one function scale out.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from lamina.arns import Account, FunctionRef
from lamina.control.concurrency import commitments
from lamina.control.environment_keys import EnvironmentKeys
from lamina.control.execution_role import ExecutionRoleSessions
from lamina.control.function_networks import FunctionNetworks, Placement, refuse_unenforced
from lamina.control.functions import FunctionService, Resolved
from lamina.control.states import check_invocable
from lamina.errors import (
    InvalidRuntime,
    ResourceNotFound,
    SnapStartTimeout,
    TooManyRequests,
)
from lamina.invoke.events import (
    EnvironmentLogging,
    InvocationObserver,
    InvocationRecord,
    LevelObserver,
    NoLevels,
    NoObserver,
)
from lamina.invoke.governor import Governor, Lease, Slot
from lamina.invoke.pool import EnvironmentPool, PoolKey
from lamina.invoke.provisioned import (
    ProvisionedConfigs,
    ProvisionedPool,
    Share,
    ShareReadiness,
)
from lamina.invoke.snapstart import SNAP_START, SNAPSTART_TIMEOUT, SnapStart
from lamina.invoke.tracing import Trace, Tracing
from lamina.model.functions import FunctionConfig
from lamina.model.iam import Session
from lamina.runtimes.registry import RuntimeCommand, RuntimeRegistry
from lamina.sandbox.after_answer import AfterAnswer
from lamina.sandbox.api import SandboxBackend, SandboxSpec
from lamina.sandbox.artifacts import ArtifactCache
from lamina.sandbox.environment import (
    ExecutionEnvironment,
    InvokeOutcome,
    unstarted_invocation,
)
from lamina.sandbox.lifecycle import (
    EnvironmentEvent,
    EnvironmentListener,
    InitStarted,
    RestoreStarted,
    ShutDown,
)
from lamina.sandbox.log_sink import LogSink, group_name, stream_name
from lamina.sandbox.output import EnvironmentOutput
from lamina.sandbox.runtime_api import Invocation
from lamina.sandbox.zygote import library_path
from lamina.store.protocols import FunctionStore
from lamina.store.protocols.iam import IamStore
from lamina.store.stamped import StampedCache

log = logging.getLogger("lamina.invoke")

_PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
ON_DEMAND = "on-demand"
# How often expired STS sessions (functions' and AssumeRole's) are deleted from the store.
_PURGE_INTERVAL_S = 600.0


@dataclass(frozen=True)
class ProvisionedPlacement:
    """A cluster's placement of provisioned environments over its workers (see
    `lamina.invoke.provisioned`): this node's share, when shares move, and where a node
    notes that its share is ready."""

    share: Share
    version: Callable[[], int]
    readiness: ShareReadiness


class WorkerBusy(Exception):
    """This worker has no idle environment for the call and no memory to start one."""


@dataclass(frozen=True)
class InvokeRequest:
    ref: FunctionRef
    qualifier: str | None
    payload: bytes
    client_context: str | None = None
    trace_id: str | None = None
    # The caller's request id when it has one (the Invoke API's), else a new one.
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # When the request reached the platform, if well before admission (a queued event).
    received_at: float | None = None
    # Set by a caller that reads no log tail and answers its client before anything else:
    # the invocation's END and REPORT lines, its records and the release of its environment
    # are left to it (see `AfterAnswer`), and so is its concurrency slot, unless other nodes
    # count it too (`Governor.shared`).
    after_answer: AfterAnswer | None = None


@dataclass(frozen=True)
class Admission:
    """An invocation admitted under the concurrency limits, with where it will run."""

    request_id: str
    resolved: Resolved
    config: FunctionConfig
    lease: Lease
    # A provisioned environment reserved for this call; None means on-demand placement.
    environment: ExecutionEnvironment | None
    trace: Trace


@dataclass(frozen=True)
class InvokeResult:
    request_id: str
    executed_version: str
    outcome: InvokeOutcome


@dataclass(frozen=True)
class StreamStart:
    """A streamed invocation, admitted and running."""

    executed_version: str
    # Ends when the invocation does; its chunks went to the queue given to `open_stream`.
    result: asyncio.Task[InvokeResult]


class Resolver:
    """Resolves names to configurations from memory, re-reading only after a change."""

    def __init__(self, functions: FunctionService, store: FunctionStore) -> None:
        self._functions = functions
        self._store = store
        self._cache: StampedCache[dict[tuple[str, str | None, str | None], Resolved]] = (
            StampedCache(store.change_stamp, dict)
        )
        self._committed = StampedCache(store.change_stamp, lambda: commitments(store).total)

    def resolve(self, ref: FunctionRef, qualifier: str | None) -> Resolved:
        cache = self._cache.get()
        key = (ref.name, ref.qualifier, qualifier)
        resolved = cache.get(key)
        if resolved is None:
            resolved = self._functions.resolve(ref, qualifier)
            cache[key] = resolved
        return resolved

    def version(self, name: str, version: str) -> FunctionConfig:
        """The configuration invocations of `name:version` run."""
        return self.resolve(FunctionRef(name, version), None).runnable

    def is_current(self, key: PoolKey) -> bool:
        """Whether a pool key still names the function's configuration of that version."""
        name, version, revision = key
        try:
            return self.version(name, version).revision_id == revision
        except ResourceNotFound:
            return False

    @property
    def committed(self) -> int:
        """Concurrency outside the unreserved pool (see `lamina.control.concurrency`)."""
        return self._committed.get()

    @property
    def change_stamp(self) -> int:
        return self._store.change_stamp()

    def shared_stamp(self) -> int:
        return self._store.shared_stamp()

    def catch_up(self, stamp: int) -> None:
        """See at least what another node saw when it sent this node a call."""
        self._store.catch_up(stamp)


class InvokeService:
    """Runs invocations through warm or new environments, one invocation per environment."""

    def __init__(
        self,
        account: Account,
        resolver: Resolver,
        governor: Governor,
        pool: EnvironmentPool,
        backend: SandboxBackend,
        artifacts: ArtifactCache,
        runtimes: RuntimeRegistry,
        log_sink: LogSink,
        environment_logging: EnvironmentLogging,
        scratch_root: Path,
        provisioned_configs: ProvisionedConfigs | None = None,
        observer: InvocationObserver | None = None,
        tracing: Tracing | None = None,
        levels: LevelObserver | None = None,
        placement: ProvisionedPlacement | None = None,
        endpoint: str | None = None,
        iam: IamStore | None = None,
        environment_keys: EnvironmentKeys | None = None,
        enforced: bool = False,
        networks: FunctionNetworks | None = None,
    ) -> None:
        """`endpoint`: where functions reach Lamina's APIs (their AWS_ENDPOINT_URL). `iam`:
        where execution-role sessions are kept; without it environments get credentials
        that nothing accepts. `environment_keys`: Lambda's use of functions' KMS keys at
        cold starts (see `lamina.control.environment_keys`). `enforced`: whether every call is
        verified (execution-role sessions issued otherwise are not honoured once it is)."""
        self._account = account
        self._endpoint = endpoint
        self._environment_keys = environment_keys
        # The operator's VPCs and file systems (None: no function is in a VPC).
        self._networks = networks
        self._sessions = (
            ExecutionRoleSessions(iam, account, enforced=enforced) if iam is not None else None
        )
        max_age_s = self._sessions.environment_lifetime_s if self._sessions is not None else None
        if max_age_s is not None:
            pool.retire_after(max_age_s)
        self._tracing = tracing or Tracing()
        self._observer: InvocationObserver = observer or NoObserver()
        self._levels: LevelObserver = levels or NoLevels()
        self._resolver = resolver
        self._governor = governor
        self._pool = pool
        self._backend = backend
        self._artifacts = artifacts
        self._runtimes = runtimes
        self._sink = log_sink
        self._environment_logging = environment_logging
        self._scratch = scratch_root
        # SnapStart versions' snapshots (made at publish) and their environments' backends.
        self.snapstart = SnapStart(self, backend, log_sink, environment_logging, scratch_root)
        self._provisioned = (
            ProvisionedPool(
                provisioned_configs,
                self._start,
                lambda: resolver.change_stamp,
                self._levels,
                share=placement.share if placement is not None else None,
                placement_version=placement.version if placement is not None else None,
                readiness=placement.readiness if placement is not None else None,
                max_age_s=max_age_s,
            )
            if provisioned_configs is not None
            else None
        )
        self._housekeeper: asyncio.Task[None] | None = None

    def resolve(self, ref: FunctionRef, qualifier: str | None) -> Resolved:
        return self._resolver.resolve(ref, qualifier)

    @property
    def resolver(self) -> Resolver:
        return self._resolver

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        return await self.run(self.admit(request), request)

    async def open_stream(
        self,
        request: InvokeRequest,
        chunks: asyncio.Queue[bytes | None],
        fits: Callable[[FunctionConfig], bool] | None = None,
    ) -> StreamStart:
        """Admit `request` (see `admit`) and run it in a task of its own, so a caller that
        goes away does not cut it short: it still ends and releases what it holds."""
        admission = self.admit(request, fits)
        task = asyncio.ensure_future(self.run(admission, request, stream=chunks))
        return StreamStart(admission.config.version, task)

    def admit(
        self, request: InvokeRequest, fits: Callable[[FunctionConfig], bool] | None = None
    ) -> Admission:
        """Resolve and admit `request`, or raise (not found, throttled). Never awaits.

        `fits` (a cluster's worker) says whether this node has room for the call when no
        provisioned environment takes it; if not, `WorkerBusy` is raised before any
        concurrency is taken, and the caller tries another worker."""
        resolved = self._resolver.resolve(request.ref, request.qualifier)
        config = self._pick_version(resolved)
        reserved = resolved.record.reserved_concurrency
        environment: ExecutionEnvironment | None = None
        held = 0
        if self._provisioned is not None:
            environment = self._provisioned.take(config.function_name, resolved.qualifier, config)
            # Inside a reservation, on-demand calls get what provisioning leaves of it.
            if reserved is not None:
                held = self._provisioned.carved_out(config.function_name)
        if environment is None and fits is not None and not fits(config):
            raise WorkerBusy(config.function_name)
        try:
            lease = self._governor.acquire(
                config.function_name,
                reserved,
                self._resolver.committed,
                provisioned=environment is not None,
                provisioned_held=held,
                timeout_s=config.timeout,
            )
        except TooManyRequests:
            if environment is not None:
                assert self._provisioned is not None
                self._provisioned.release(environment)
            self.throttled(resolved, config)
            raise
        self._levels.admitted(config.function_name, lease.slot is Slot.UNRESERVED)
        try:
            trace = self._tracing.begin(
                config.function_name, config.tracing_mode, request.trace_id, request.received_at
            )
        except BaseException:
            # Admitted but never run: what was taken for it goes back.
            self._give_back(lease, environment, None)
            raise
        return Admission(request.request_id, resolved, config, lease, environment, trace)

    def throttled(self, resolved: Resolved, config: FunctionConfig) -> None:
        """Count a throttle of `config`'s version (Throttles), reached through `resolved`."""
        alias = resolved.alias.name if resolved.alias is not None else None
        self._observer.throttled(config.function_name, config.version, alias)

    @property
    def pool(self) -> EnvironmentPool:
        return self._pool

    def idle_provisioned(self) -> dict[str, int]:
        """ "function:version" -> idle provisioned environments on this node."""
        return self._provisioned.idle_by_version() if self._provisioned is not None else {}

    def provisioned_memory_mb(self) -> int:
        """The memory this node's provisioned environments hold."""
        return self._provisioned.memory_mb() if self._provisioned is not None else 0

    async def run(
        self,
        admission: Admission,
        request: InvokeRequest,
        stream: asyncio.Queue[bytes | None] | None = None,
    ) -> InvokeResult:
        """Run an admitted invocation; `stream` receives the chunks of a streamed response."""
        config, request_id = admission.config, admission.request_id
        environment = admission.environment
        settled_later = False
        # The slot this call still has to give back (None once given).
        lease: Lease | None = admission.lease
        try:
            if environment is None:
                key: PoolKey = (config.function_name, config.version, config.revision_id)
                try:
                    environment, _ = await self._pool.acquire(
                        key, lambda: self._start(config), config.memory_size
                    )
                except InvalidRuntime as error:
                    # A function error to the caller, so AWS counts it in Invocations and Errors.
                    failure = self._unstarted(admission, error)
                    self._report(admission, time.time(), failure)
                    return InvokeResult(request_id, config.version, failure)
            if environment.init_error is not None:
                failure = environment.report_init_failure(request_id, admission.trace.xray)
                self._report(admission, time.time(), failure)
                return InvokeResult(request_id, config.version, failure)
            invocation = Invocation(
                request_id=request_id,
                payload=request.payload,
                deadline_ms=int(time.time() * 1000) + config.timeout * 1000,
                function_arn=self._account.function_arn(
                    config.function_name, admission.resolved.qualifier
                ),
                trace_id=admission.trace.header,
                client_context=request.client_context,
                stream=stream,
            )
            started_at = time.time()
            after = request.after_answer
            outcome = await environment.invoke(
                invocation, config.timeout, admission.trace.xray, after
            )
            if after is not None:
                if self._governor.shared and lease is not None:
                    # Another node may be asked the moment the caller has its answer.
                    shared_lease, lease = lease, None
                    self._return_slot(shared_lease)
                after.add(
                    functools.partial(
                        self._settle, admission, lease, started_at, outcome, environment
                    )
                )
                settled_later = True
            else:
                self._report(admission, started_at, outcome)
            return InvokeResult(request_id, config.version, outcome)
        finally:
            if not settled_later:
                self._give_back(lease, admission.environment, environment)

    def _settle(
        self,
        admission: Admission,
        lease: Lease | None,
        started_at: float,
        outcome: InvokeOutcome,
        environment: ExecutionEnvironment,
    ) -> None:
        """What an invocation answered first still owes: its records, then its environment
        and its concurrency slot (`lease`, unless already back), whatever the records do."""
        try:
            self._report(admission, started_at, outcome)
        except Exception:
            log.exception("recording invocation %s failed", admission.request_id)
        finally:
            self._give_back(lease, admission.environment, environment)

    def _give_back(
        self,
        lease: Lease | None,
        provisioned: ExecutionEnvironment | None,
        on_demand: ExecutionEnvironment | None,
    ) -> None:
        """Return an invocation's environment and its concurrency slot (`lease`, unless
        already back). The slot goes back even if returning the environment fails (a sandbox
        that will not die): a slot kept by mistake would throttle the function for good."""
        try:
            if provisioned is not None:
                assert self._provisioned is not None
                self._provisioned.release(provisioned)
            elif on_demand is not None:
                self._pool.release(on_demand)
        finally:
            if lease is not None:
                self._return_slot(lease)

    def _return_slot(self, lease: Lease) -> None:
        self._governor.release(lease)
        self._levels.released(lease.function, lease.slot is Slot.UNRESERVED)

    def _unstarted(self, admission: Admission, error: InvalidRuntime) -> InvokeOutcome:
        """The failure of an invocation whose runtime cannot start here, logged (START, END,
        REPORT) in a stream of its own: every invocation has one on AWS."""
        config = admission.config
        sink, listener = self._environment_logging(
            self._sink, config.logging, config.function_name, config.version, ON_DEMAND
        )
        output = EnvironmentOutput(
            sink,
            group_name(config.function_name, config.logging.log_group),
            stream_name(config.version, uuid.uuid4().hex),
        )
        payload = orjson.dumps(
            {"errorType": error.runtime_error_type, "errorMessage": error.message}
        )
        return unstarted_invocation(
            listener,
            output,
            admission.request_id,
            config.version,
            config.memory_size,
            payload,
            error.runtime_error_type,
            admission.trace.xray,
        )

    def _report(self, admission: Admission, started_at: float, outcome: InvokeOutcome) -> None:
        config, alias = admission.config, admission.resolved.alias
        self._observer.invoked(
            InvocationRecord(
                request_id=admission.request_id,
                function_name=config.function_name,
                executed_version=config.version,
                alias=alias.name if alias is not None else None,
                started_at=started_at,
                duration_ms=outcome.duration_ms,
                billed_ms=outcome.billed_ms,
                init_ms=outcome.init_ms,
                memory_mb=config.memory_size,
                max_memory_mb=outcome.max_memory_mb,
                function_error=outcome.function_error,
                error_type=outcome.error_type,
                status=outcome.status,
                provisioned=admission.environment is not None,
                architecture=config.architectures[0] if config.architectures else "x86_64",
                trace=admission.trace if admission.trace.sampled else None,
            )
        )

    def _current_version(self, name: str, version: str) -> FunctionConfig | None:
        try:
            return self._resolver.version(name, version)
        except ResourceNotFound:
            return None

    def _pick_version(self, resolved: Resolved) -> FunctionConfig:
        """The configuration this call runs, by the alias's weights; refused (AWS's 409)
        unless it is Active."""
        config = resolved.runnable
        alias = resolved.alias
        if alias is not None and alias.additional_weights:
            ((extra, weight),) = alias.additional_weights.items()
            if random.random() < weight:
                config = self._resolver.version(alias.function_name, extra)
        check_invocable(config)
        return config

    async def _start(
        self, config: FunctionConfig, initialization_type: str = ON_DEMAND
    ) -> ExecutionEnvironment:
        backend = self._backend
        restored = self.snapstart.applies(config)
        if restored:
            # A SnapStart version: its environments are forks of its snapshot.
            backend = self.snapstart.backend(config)
            initialization_type = SNAP_START
        spec, command, group, stream = await self.sandbox_spec(config, initialization_type)
        counted = initialization_type in (ON_DEMAND, SNAP_START)
        sink, platform_lines = self._environment_logging(
            self._sink, config.logging, config.function_name, config.version, initialization_type
        )
        environment = ExecutionEnvironment(
            backend,
            spec,
            config.memory_size,
            config.version,
            sink,
            group,
            stream,
            spec.scratch_root.name,
            # Pre-initialised environments never bill or report their init to an invocation.
            report_init=counted,
            listener=(
                _CountedEnvironment(platform_lines, self._levels, config.function_name)
                if counted
                else platform_lines
            ),
            restored=restored,
        )
        environment.log_init_start(config.runtime or "", command.interpreter)
        try:
            await environment.start()
        except BaseException:
            # A backend that could not start the sandbox: release what was set up, and
            # end the environment's lifecycle so its listeners see it stop.
            environment.destroy()
            raise
        if environment.restore_timed_out:
            # AWS answers the call itself with an error, not a function error.
            raise SnapStartTimeout(SNAPSTART_TIMEOUT)
        return environment

    async def sandbox_spec(
        self, config: FunctionConfig, initialization_type: str
    ) -> tuple[SandboxSpec, RuntimeCommand, str, str]:
        """What a new environment of `config` runs, and its log group and stream."""
        # First: a subnet or access point gone since the function named it fails the call
        # before anything is set up.
        placed = self._networks.placement(config) if self._networks else Placement()
        if placed.network is not None or placed.file_systems:
            # Only the namespace backend applies these, and networks only while it has
            # network isolation (`network`: None when turned off or unavailable). Templates
            # ("process+zygote") isolate as their backend does.
            kind = self._backend.name.split("+", 1)[0]
            namespaced = kind == "namespace"
            isolates = namespaced and getattr(self._backend, "network", None) is not None
            refuse_unenforced(placed, kind, isolates, namespaced)
        task_root, opt_dir = await self._unpacked(config)
        command = self._runtimes.command(config.runtime, task_root, opt_dir, config.memory_size)
        environment_id = uuid.uuid4().hex
        group = group_name(config.function_name, config.logging.log_group)
        stream = stream_name(config.version, environment_id)
        if self._environment_keys is not None:
            self._environment_keys.check(config)
        # A SnapStart snapshot and its environments fetch container credentials instead.
        session = None if initialization_type == SNAP_START else await self._issue_session(config)
        variables = self._variables(
            config,
            task_root,
            opt_dir,
            group,
            stream,
            command.execution_env,
            initialization_type,
            session,
        )
        spec = SandboxSpec(
            command=command.argv,
            environment=variables,
            task_root=task_root,
            opt_dir=opt_dir,
            memory_mb=config.memory_size,
            ephemeral_mb=config.ephemeral_storage,
            scratch_root=self._scratch / environment_id,
            network=placed.network,
            file_systems=placed.file_systems,
        )
        return spec, command, group, stream

    async def _unpacked(self, config: FunctionConfig) -> tuple[Path, Path | None]:
        """`config`'s code and layers on this node. Usually unpacked when the function was
        activated; a node that did not activate it (cluster mode) fetches and unpacks them
        on its first cold start, which can take seconds: in a thread, not on the loop."""
        layers = [_blob_of(layer.code_sha256) for layer in config.layers]
        found = self._artifacts.unpacked(config.code_blob, layers)
        if found is not None:
            return found

        def unpack() -> tuple[Path, Path | None]:
            return self._artifacts.code_dir(config.code_blob), self._artifacts.opt_dir(layers)

        return await asyncio.to_thread(unpack)

    async def execution_session(self, config: FunctionConfig) -> Session | None:
        """A new session of `config`'s execution role (None without an IAM store or role)."""
        return await self._issue_session(config)

    async def _issue_session(self, config: FunctionConfig) -> Session | None:
        """The new environment's execution-role session (cold starts only: an environment
        keeps its session for life, and is retired before it expires)."""
        if self._sessions is None or not config.role:
            return None
        return await asyncio.to_thread(self._sessions.issue, config.function_name, config.role)

    def _variables(
        self,
        config: FunctionConfig,
        task_root: Path,
        opt_dir: Path | None,
        group: str,
        stream: str,
        execution_env: str | None,
        initialization_type: str,
        session: Session | None = None,
    ) -> dict[str, str]:
        opt = str(opt_dir) if opt_dir else "/opt"
        # Where the function's AWS SDK calls go: Lamina itself, unless the function's own
        # variables say otherwise.
        endpoint = {"AWS_ENDPOINT_URL": self._endpoint} if self._endpoint else {}
        variables = {
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PATH": f"{_PATH}:{opt}/bin",
            "LD_LIBRARY_PATH": library_path(str(task_root), opt),
            "NODE_PATH": f"{opt}/nodejs/node_modules:/var/runtime/node_modules",
            **endpoint,
            **(config.environment or {}),
            "_HANDLER": config.handler or "",
            "AWS_REGION": self._account.region,
            "AWS_DEFAULT_REGION": self._account.region,
            "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": config.version,
            "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
            "AWS_LAMBDA_LOG_GROUP_NAME": group,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "LAMBDA_TASK_ROOT": str(task_root),
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            **_credentials(session),
        }
        variables["AWS_ACCESS_KEY"] = variables["AWS_ACCESS_KEY_ID"]
        if opt_dir is not None:
            variables["LAMINA_OPT_DIR"] = opt
        if execution_env:
            variables["AWS_EXECUTION_ENV"] = execution_env
        logging = config.logging
        if logging.log_format == "JSON":
            variables["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
            if logging.application_log_level:
                variables["AWS_LAMBDA_LOG_LEVEL"] = logging.application_log_level
        return variables

    # ------------------------------------------------------------ background work

    def start(self) -> None:
        """Start reaping idle environments and provisioning; call with the loop running."""
        self._housekeeper = asyncio.ensure_future(self._housekeeping())
        self.snapstart.start()
        if self._provisioned is not None:
            self._provisioned.start()

    def close(self) -> None:
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        if self._provisioned is not None:
            self._provisioned.close()
        self._pool.close()
        self.snapstart.close()

    async def _housekeeping(self) -> None:
        """Reap idle (and aged) environments; drop idle ones whose configuration changed;
        now and then, delete expired sessions."""
        seen = self._resolver.change_stamp
        loop = asyncio.get_running_loop()
        purged_at = loop.time()
        while True:
            await asyncio.sleep(self._pool.reap_interval_s)
            try:
                self._pool.reap()
            except Exception:
                log.exception("reaping idle environments failed")
            if self._sessions is not None and loop.time() - purged_at >= _PURGE_INTERVAL_S:
                purged_at = loop.time()
                try:
                    await asyncio.to_thread(self._sessions.purge)
                except Exception:
                    log.exception("deleting expired sessions failed")
            stamp = self._resolver.change_stamp
            if stamp != seen:
                seen = stamp
                try:
                    self._pool.discard_stale(self._resolver.is_current)
                except Exception:
                    log.exception("discarding environments of changed functions failed")
                try:
                    self.snapstart.sweep(self._current_version)
                except Exception:
                    log.exception("stopping snapshots of deleted versions failed")


def _credentials(session: Session | None) -> dict[str, str]:
    """An environment's AWS credentials: its execution-role session's, or without one (no
    IAM store, no role) credentials of its own that nothing accepts."""
    if session is not None:
        return {
            "AWS_ACCESS_KEY_ID": session.access_key_id,
            "AWS_SECRET_ACCESS_KEY": session.secret,
            "AWS_SESSION_TOKEN": session.token,
        }
    return {
        "AWS_ACCESS_KEY_ID": "LAMINAFUNCTION" + secrets.token_hex(3).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "AWS_SESSION_TOKEN": secrets.token_urlsafe(60),
    }


def _blob_of(code_sha256: str) -> str:
    return base64.b64decode(code_sha256).hex()


class _CountedEnvironment:
    """Passes an on-demand environment's events on, and tells the level observer when the
    environment starts its init and when it stops."""

    def __init__(self, inner: EnvironmentListener, levels: LevelObserver, function: str) -> None:
        self._inner = inner
        self._levels = levels
        self._function = function

    def environment_event(self, event: EnvironmentEvent, output: EnvironmentOutput) -> None:
        self._inner.environment_event(event, output)
        if isinstance(event, (InitStarted, RestoreStarted)):
            self._levels.environment_started(self._function)
        elif isinstance(event, ShutDown):
            self._levels.environment_stopped(self._function)
