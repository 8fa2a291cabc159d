"""What every tab of a function's page shares: the function, read through the API."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from lamina.console.web import Visit

TABS = (
    ("code", "Code"),
    ("test", "Test"),
    ("configuration", "Configuration"),
    ("versions", "Versions and aliases"),
    ("triggers", "Triggers"),
    ("monitor", "Monitor"),
    ("async", "Async events"),
    ("tuning", "Power tuning"),
)


def function_name(visit: Visit) -> str:
    return str(visit.request.path_params["name"])


async def get_function(visit: Visit, name: str) -> dict[str, Any]:
    """GetFunction's answer (Configuration, Code, Tags, Concurrency)."""
    return await visit.call("lambda", "GetFunction", FunctionName=name)


def render_tab(
    visit: Visit, tab: str, function: dict[str, Any], status: int = 200, **context: Any
) -> Response:
    return visit.render(
        f"tab_{tab}.html",
        status=status,
        tab=tab,
        tabs=TABS,
        function=function,
        config=function["Configuration"],
        name=function["Configuration"]["FunctionName"],
        **context,
    )
