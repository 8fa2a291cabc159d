"""What each operation family's handler factory receives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from lamina.api.views import Views
from lamina.arns import FunctionRef, parse_function_ref
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.control.role_permissions import RolePermissions
from lamina.function_urls.url_form import UrlForm
from lamina.identity.caller import Caller
from lamina.settings import Settings

# A handler takes the parsed input members and returns the output members (or None).
# The id of the API request being served; Invoke uses it as the invocation's request id.
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
# The caller's X-Amzn-Trace-Id: not an Invoke input member in the model, so it is read
# from the request itself and the invoke handlers take it from here.
current_trace_header: ContextVar[str | None] = ContextVar("current_trace_header", default=None)
# The operation being served: AWS names it in the refusal of another account's resource.
current_operation: ContextVar[str] = ContextVar("current_operation", default="Invoke")

# Who signed the request being served (enforced mode; None in development mode).
current_caller: ContextVar[Caller | None] = ContextVar("current_caller", default=None)

# Async handlers (the invoke path) run on the event loop; the rest in a worker thread.
# A handler that streams its answer returns a ready Response instead, passed through as is.
Handler = (
    Callable[[dict[str, Any]], dict[str, Any] | None]
    | Callable[[dict[str, Any]], Awaitable[dict[str, Any] | Response | None]]
)


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    domain: Domain
    functions: FunctionService
    views: Views
    # How `FunctionUrl`s are written, decided once at start-up.
    url_form: UrlForm
    # Enforced mode only: checks a function's execution role when mappings and destinations
    # are configured (None in development mode).
    role_permissions: RolePermissions | None = None

    def function_ref(self, params: dict[str, Any]) -> FunctionRef:
        """The function named by the `FunctionName` member, in any of its accepted forms."""
        return self.parse_function(params["FunctionName"])

    def parse_function(self, value: str) -> FunctionRef:
        """A function name or ARN as the operation being served reads it."""
        return parse_function_ref(value, self.domain.account, current_operation.get())
