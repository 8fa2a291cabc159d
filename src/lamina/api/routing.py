"""Routes for a rest-json service, built from its botocore model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from botocore.model import OperationModel, ServiceModel

from lamina.errors import MethodNotAllowed, UnknownOperation

_LABEL = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")


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

    def match(
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
