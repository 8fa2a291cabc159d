"""What each operation family's handler factory receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lamina.api.views import Views
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.settings import Settings

# A handler takes the parsed input members and returns the output members (or None).
Handler = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    domain: Domain
    functions: FunctionService
    views: Views
