"""Deploying through the Lambda API, as any client would: create or update, then wait."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

# What a public (AuthType NONE) function URL needs in the resource policy: since October 2025
# lambda:InvokeFunction (limited to calls through a URL) besides lambda:InvokeFunctionUrl.
PUBLIC_URL_STATEMENTS: tuple[dict[str, Any], ...] = (
    {
        "StatementId": "FunctionURLAllowPublicAccess",
        "Action": "lambda:InvokeFunctionUrl",
        "FunctionUrlAuthType": "NONE",
    },
    {
        "StatementId": "FunctionURLAllowInvokeAction",
        "Action": "lambda:InvokeFunction",
        "InvokedViaFunctionUrl": True,
    },
)


class DeployError(Exception):
    """A deploy the server refused or that did not finish; the message says why."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    runtime: str
    handler: str
    role: str
    memory: int | None = None
    timeout: int | None = None
    environment: dict[str, str] | None = None

    def configuration(self) -> dict[str, Any]:
        """The settings `lamina dev` owns; others stay as they are on an existing function."""
        config: dict[str, Any] = {"Runtime": self.runtime, "Handler": self.handler}
        if self.memory is not None:
            config["MemorySize"] = self.memory
        if self.timeout is not None:
            config["Timeout"] = self.timeout
        if self.environment is not None:
            config["Environment"] = {"Variables": self.environment}
        return config


class Deployer:
    """Creates the function once, then replaces its code; every step waits until done."""

    def __init__(self, client: Any, spec: FunctionSpec, wait_timeout: float = 120.0) -> None:
        self._client = client
        self.spec = spec
        self._wait_timeout = wait_timeout

    def deploy(self, archive: bytes) -> str:
        """First deploy: "created" or "updated" (an existing function is taken over)."""
        name = self.spec.name
        try:
            current = self._call("get_function_configuration", FunctionName=name)
        except DeployError as error:
            if error.code != "ResourceNotFoundException":
                raise
            self._call(
                "create_function",
                FunctionName=name,
                Role=self.spec.role,
                Code={"ZipFile": archive},
                **self.spec.configuration(),
            )
            self._wait()
            return "created"
        wanted = self.spec.configuration()
        if any(current.get(key) != value for key, value in wanted.items()):
            self._wait()  # an update still in progress would refuse another
            self._call("update_function_configuration", FunctionName=name, **wanted)
            self._wait()
        self.update_code(archive)
        return "updated"

    def update_code(self, archive: bytes) -> None:
        """Replace $LATEST's code: the next invoke starts an environment with it."""
        self._call("update_function_code", FunctionName=self.spec.name, ZipFile=archive)
        self._wait()

    def ensure_public_url(self) -> str:
        """A function URL without auth, and the permission that lets anyone call it."""
        name = self.spec.name
        try:
            config = self._call("get_function_url_config", FunctionName=name)
            if config["AuthType"] != "NONE":
                config = self._call(
                    "update_function_url_config", FunctionName=name, AuthType="NONE"
                )
        except DeployError as error:
            if error.code != "ResourceNotFoundException":
                raise
            config = self._call("create_function_url_config", FunctionName=name, AuthType="NONE")
        for statement in PUBLIC_URL_STATEMENTS:
            try:
                self._call("add_permission", FunctionName=name, Principal="*", **statement)
            except DeployError as error:
                if error.code != "ResourceConflictException":  # already there
                    raise
        url: str = config["FunctionUrl"]
        return url

    def _wait(self) -> None:
        """Until the function is Active and its last update Successful; Failed raises."""
        deadline = time.monotonic() + self._wait_timeout
        delay = 0.05
        while True:
            config = self._call("get_function_configuration", FunctionName=self.spec.name)
            state, status = config.get("State"), config.get("LastUpdateStatus")
            if state == "Failed" or status == "Failed":
                reason = config.get("LastUpdateStatusReason") or config.get("StateReason")
                raise DeployError(f"the update of {self.spec.name} failed: {reason}")
            if state == "Active" and status in (None, "Successful"):
                return
            if time.monotonic() > deadline:
                raise DeployError(
                    f"{self.spec.name} is still {state}/{status} after {self._wait_timeout:.0f}s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        operation = self._client.meta.method_to_api_mapping.get(method, method)
        try:
            result: dict[str, Any] = getattr(self._client, method)(**params)
        except ClientError as error:
            details = error.response.get("Error", {})
            code = details.get("Code")
            raise DeployError(f"{operation}: {code}: {details.get('Message')}", code) from None
        except BotoCoreError as error:
            raise DeployError(f"{operation}: {error}") from None
        return result
