"""Synchronous invocation: resolve the qualifier, admit under concurrency, place, run."""

from __future__ import annotations

import base64
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from lamina.arns import Account, FunctionRef
from lamina.control.functions import FunctionService, Resolved
from lamina.control.model import FunctionConfig
from lamina.errors import InvalidRuntime
from lamina.invoke.governor import ConcurrencyGovernor
from lamina.invoke.pool import EnvironmentPool, PoolKey
from lamina.observability.logs import LogSink, group_name, stream_name
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.api import SandboxBackend, SandboxSpec
from lamina.sandbox.artifacts import ArtifactCache
from lamina.sandbox.environment import ExecutionEnvironment, InvokeOutcome
from lamina.sandbox.runtime_api import Invocation
from lamina.store.protocols import FunctionStore

_PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"


@dataclass(frozen=True)
class InvokeRequest:
    ref: FunctionRef
    qualifier: str | None
    payload: bytes
    client_context: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True)
class InvokeResult:
    request_id: str
    executed_version: str
    outcome: InvokeOutcome


class Resolver:
    """Resolves names to configurations from memory, re-reading only after a change."""

    def __init__(self, functions: FunctionService, store: FunctionStore) -> None:
        self._functions = functions
        self._store = store
        self._stamp = -1
        self._cache: dict[tuple[str, str | None, str | None], Resolved] = {}
        self._total_reserved = 0

    def _fresh(self) -> None:
        stamp = self._store.change_stamp()
        if stamp != self._stamp:
            self._cache.clear()
            self._total_reserved = sum(
                record.reserved_concurrency or 0 for record in self._store.page(None, 1_000_000)
            )
            self._stamp = stamp

    def resolve(self, ref: FunctionRef, qualifier: str | None) -> Resolved:
        self._fresh()
        key = (ref.name, ref.qualifier, qualifier)
        resolved = self._cache.get(key)
        if resolved is None:
            resolved = self._functions.resolve(ref, qualifier)
            self._cache[key] = resolved
        return resolved

    def version(self, name: str, version: str) -> FunctionConfig:
        return self.resolve(FunctionRef(name, version), None).config

    @property
    def total_reserved(self) -> int:
        self._fresh()
        return self._total_reserved


class InvokeService:
    """Runs invocations through warm or new environments, one invocation per environment."""

    def __init__(
        self,
        account: Account,
        resolver: Resolver,
        governor: ConcurrencyGovernor,
        pool: EnvironmentPool,
        backend: SandboxBackend,
        artifacts: ArtifactCache,
        runtimes: RuntimeRegistry,
        log_sink: LogSink,
        scratch_root: Path,
    ) -> None:
        self._account = account
        self._resolver = resolver
        self._governor = governor
        self._pool = pool
        self._backend = backend
        self._artifacts = artifacts
        self._runtimes = runtimes
        self._sink = log_sink
        self._scratch = scratch_root

    def resolve(self, ref: FunctionRef, qualifier: str | None) -> Resolved:
        return self._resolver.resolve(ref, qualifier)

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        resolved = self._resolver.resolve(request.ref, request.qualifier)
        config = self._pick_version(resolved)
        lease = self._governor.acquire(
            config.function_name,
            resolved.record.reserved_concurrency,
            self._resolver.total_reserved,
        )
        request_id = str(uuid.uuid4())
        try:
            key: PoolKey = (config.function_name, config.version, config.revision_id)
            try:
                environment, _ = await self._pool.acquire(key, lambda: self._start(config))
            except InvalidRuntime as error:
                return InvokeResult(request_id, config.version, _runtime_failure(error))
            if environment.init_error is not None:
                outcome = _init_failure(environment)
                self._pool.release(environment)
                return InvokeResult(request_id, config.version, outcome)
            invocation = Invocation(
                request_id=request_id,
                payload=request.payload,
                deadline_ms=int(time.time() * 1000) + config.timeout * 1000,
                function_arn=self._account.function_arn(config.function_name, resolved.qualifier),
                trace_id=request.trace_id,
                client_context=request.client_context,
            )
            try:
                outcome = await environment.invoke(invocation, config.timeout)
            finally:
                self._pool.release(environment)
            return InvokeResult(request_id, config.version, outcome)
        finally:
            self._governor.release(lease)

    def _pick_version(self, resolved: Resolved) -> FunctionConfig:
        alias = resolved.alias
        if alias is None or not alias.additional_weights:
            return resolved.config
        ((extra, weight),) = alias.additional_weights.items()
        if random.random() < weight:
            return self._resolver.version(alias.function_name, extra)
        return resolved.config

    async def _start(self, config: FunctionConfig) -> ExecutionEnvironment:
        task_root = self._artifacts.code_dir(config.code_blob)
        opt_dir = self._artifacts.opt_dir([_blob_of(layer.code_sha256) for layer in config.layers])
        command = self._runtimes.command(config.runtime, task_root, opt_dir)
        environment_id = uuid.uuid4().hex
        group = group_name(config.function_name, config.logging.log_group)
        stream = stream_name(config.version, environment_id)
        variables = self._variables(
            config, task_root, opt_dir, group, stream, command.execution_env
        )
        spec = SandboxSpec(
            command=command.argv,
            environment=variables,
            task_root=task_root,
            opt_dir=opt_dir,
            memory_mb=config.memory_size,
            ephemeral_mb=config.ephemeral_storage,
            scratch_root=self._scratch / environment_id,
        )
        environment = ExecutionEnvironment(
            self._backend,
            spec,
            config.memory_size,
            config.version,
            self._sink,
            group,
            stream,
            environment_id,
        )
        environment.log_init_start(config.runtime or "", command.interpreter)
        await environment.start()
        return environment

    def _variables(
        self,
        config: FunctionConfig,
        task_root: Path,
        opt_dir: Path | None,
        group: str,
        stream: str,
        execution_env: str | None,
    ) -> dict[str, str]:
        opt = str(opt_dir) if opt_dir else "/opt"
        variables = {
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PATH": f"{_PATH}:{opt}/bin",
            "LD_LIBRARY_PATH": (
                f"/var/lang/lib:/lib64:/usr/lib64:{task_root}:{task_root}/lib:{opt}/lib"
            ),
            "NODE_PATH": f"{opt}/nodejs/node_modules:/var/runtime/node_modules",
            **(config.environment or {}),
            "_HANDLER": config.handler or "",
            "AWS_REGION": self._account.region,
            "AWS_DEFAULT_REGION": self._account.region,
            "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": config.version,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": group,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "LAMBDA_TASK_ROOT": str(task_root),
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            # Credentials of the function's own, not the platform's: they grant nothing.
            "AWS_ACCESS_KEY_ID": "LAMINAFUNCTION" + secrets.token_hex(3).upper(),
            "AWS_ACCESS_KEY": "",
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            "AWS_SESSION_TOKEN": secrets.token_urlsafe(60),
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

    def start(self) -> None:
        self._pool.start_reaper()

    def close(self) -> None:
        self._pool.close()


def _blob_of(code_sha256: str) -> str:
    return base64.b64decode(code_sha256).hex()


def _runtime_failure(error: InvalidRuntime) -> InvokeOutcome:
    payload = orjson.dumps({"errorType": error.runtime_error_type, "errorMessage": error.message})
    return InvokeOutcome(payload, True, b"", 0.0, 0, None, 0, "error", error.runtime_error_type)


def _init_failure(environment: ExecutionEnvironment) -> InvokeOutcome:
    assert environment.init_error is not None
    return InvokeOutcome(
        environment.init_error,
        True,
        environment.tail(),
        0.0,
        0,
        environment.init_ms,
        environment.memory_mb,
        "error",
        None,
    )
