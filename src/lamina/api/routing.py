"""Routes for a rest-json service, built from its botocore model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from botocore.model import OperationModel, ServiceModel

from lamina.errors import MethodNotAllowed, UnknownOperation

_LABEL = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")
# Routing answers remembered at once; a bound, since paths carry names clients choose.
_RECENT_ROUTES = 4096


@dataclass(frozen=True)
class Route:
    operation: OperationModel
    method: str
    pattern: re.Pattern[str]
    labels: tuple[str, ...]
    # Literal query parameters in the model's requestUri, e.g. `?find=LayerVersion`.
    query: tuple[tuple[str, str], ...]

    @property
    def specificity(self) -> tuple[int, int]:
        literal = len(_LABEL.sub("", self.pattern.pattern))
        return (len(self.query), literal)


def _compile(
    request_uri: str,
) -> tuple[re.Pattern[str], tuple[str, ...], tuple[tuple[str, str], ...]]:
    path, _, query = request_uri.partition("?")
    literals: list[tuple[str, str]] = []
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        literals.append((key, value))
    labels: list[str] = []
    regex = ""
    position = 0
    for match in _LABEL.finditer(path):
        regex += re.escape(path[position : match.start()])
        labels.append(match.group(1))
        regex += "(.+)" if match.group(2) else "([^/]+)"
        position = match.end()
    regex += re.escape(path[position:])
    return re.compile(f"^{regex}/?$"), tuple(labels), tuple(literals)


class RestJsonRouter:
    """Matches (method, raw path, query) to an operation of one service model."""

    def __init__(self, model: ServiceModel, operations: set[str]) -> None:
        routes = []
        for name in model.operation_names:
            if name not in operations:
                continue
            operation = model.operation_model(name)
            pattern, labels, query = _compile(operation.http["requestUri"])
            routes.append(Route(operation, operation.http["method"], pattern, labels, query))
        self.routes = sorted(routes, key=lambda route: route.specificity, reverse=True)
        # The query parameters any route matches on: with the method and path, they decide
        # the route, so recent answers are remembered under them (a hot function's Invoke
        # path is matched once instead of against every route on every call).
        self._query_keys = tuple(sorted({key for route in routes for key, _ in route.query}))
        self._recent: dict[tuple[object, ...], tuple[OperationModel, dict[str, str]]] = {}

    def match(
        self, method: str, raw_path: str, query: dict[str, list[str]]
    ) -> tuple[OperationModel, dict[str, str]]:
        key = (method, raw_path, *(query.get(name, [None])[0] for name in self._query_keys))
        found = self._recent.get(key)
        if found is None:
            found = self._match(method, raw_path, query)
            if len(self._recent) >= _RECENT_ROUTES:
                self._recent.clear()
            self._recent[key] = found
        operation, params = found
        return operation, dict(params)

    def _match(
        self, method: str, raw_path: str, query: dict[str, list[str]]
    ) -> tuple[OperationModel, dict[str, str]]:
        path_matched = False
        for route in self.routes:
            found = route.pattern.match(raw_path)
            if found is None:
                continue
            if any(query.get(key, [None])[0] != value for key, value in route.query):
                continue
            path_matched = True
            if route.method != method:
                continue
            params = {
                label: unquote(value)
                for label, value in zip(route.labels, found.groups(), strict=True)
            }
            return route.operation, params
        if path_matched:
            raise MethodNotAllowed(f"The method {method} is not allowed for {raw_path}")
        raise UnknownOperation(f"No operation matches {method} {raw_path}")
