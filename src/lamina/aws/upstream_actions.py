"""Which IAM actions on which resources a call for an upstream service asks for.

Enforced mode authorises every call the service gateway forwards as AWS would: the caller's
identity policies must allow `<service>:<Action>` on the resource the call names. The
operation is read from the request as botocore would have written it: a JSON call's
`X-Amz-Target`, a query call's `Action`, a CBOR call's path, and for rest protocols the
method, path and query matched against the operations' `http.requestUri` templates. Pure
logic, no I/O: `lamina.api.gateway_access` asks the `Authority`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader

from lamina.aws.upstreams import Service

# IAM's service prefix where it is not the signing name.
_IAM_PREFIXES = {"monitoring": "cloudwatch"}
# S3's IAM actions that are not named as the operation is.
S3_ACTIONS = {
    "HeadObject": "GetObject",
    "GetObjectAttributes": "GetObject",
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "ListBuckets": "ListAllMyBuckets",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "CopyObject": "PutObject",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts",
    "DeleteObjects": "DeleteObject",
    "GetBucketCors": "GetBucketCORS",
    "PutBucketCors": "PutBucketCORS",
    "DeleteBucketCors": "PutBucketCORS",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "DeleteBucketTagging": "PutBucketTagging",
}
# DeleteObjects names its keys in its body: the one S3 body read to authorise a call.
S3_KEYS_IN_BODY = "DeleteObjects"
_BODY_KEY = re.compile(r"<Key>(.*?)</Key>", re.DOTALL)
_CBOR_PATH = re.compile(r"^/service/[^/]+/operation/(?P<operation>[^/?]+)$")
_LABEL = re.compile(r"\{(?P<name>[A-Za-z0-9_]+)(?P<greedy>\+?)\}")


class Unidentified(LookupError):
    """The request matches no operation of its service: it cannot be authorised."""


@dataclass(frozen=True)
class Call:
    """What of a request tells its operation and resource. `raw_path` is as sent (S3's
    virtual-host bucket put in front); `headers` lower-cased; `params` the decoded body
    of a JSON, CBOR or query call (empty otherwise)."""

    method: str
    raw_path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Permission:
    """One action on one resource a call needs."""

    action: str
    resource: str


@dataclass(frozen=True)
class _Route:
    """A rest operation's `http` trait, compiled."""

    operation: str
    method: str
    path: re.Pattern[str]
    query: tuple[tuple[str, str | None], ...]  # literal query of the template
    required_query: tuple[str, ...]
    # Required members sent as headers: (member, header name).
    required_headers: tuple[tuple[str, str], ...]
    literal_length: int

    def specificity(self) -> tuple[int, int]:
        demands = len(self.query) + len(self.required_query) + len(self.required_headers)
        return demands, self.literal_length


# A service's rest operations by HTTP method.
_Routes = Mapping[str, tuple[_Route, ...]]


class OperationIndex:
    """The operations of each service's botocore model, to identify calls with."""

    def __init__(self, loader: Loader | None = None) -> None:
        self._loader = loader or Loader()
        self._lock = threading.Lock()
        self._models: dict[str, tuple[frozenset[str], _Routes]] = {}

    def prepare(self, service: Service) -> None:
        """Loads the service's model (seconds for the largest: call off the event loop)."""
        self._model(service.client_name)

    def operation(self, service: Service, call: Call) -> tuple[str, dict[str, Any]]:
        """The operation `call` invokes, with the members its path and headers carry."""
        names, routes = self._model(service.client_name)
        params = dict(call.params)
        if service.protocol in {"json", "smithy-rpc-v2-cbor"}:
            target = call.headers.get("x-amz-target", "").rpartition(".")[2]
            if not target and (found := _CBOR_PATH.match(call.raw_path)):
                target = found["operation"]
            operation = target
        elif service.protocol in {"query", "ec2"}:
            operation = str(
                call.params.get("Action") or next(iter(call.query.get("Action", [])), "")
            )
        else:
            operation, labels = _match(routes, call)
            params.update(labels)
        if operation not in names:
            raise Unidentified(operation)
        return operation, params

    def _model(self, client_name: str) -> tuple[frozenset[str], _Routes]:
        found = self._models.get(client_name)
        if found is not None:
            return found
        try:
            model = self._loader.load_service_model(client_name, "service-2")
        except DataNotFoundError:
            # No such service: it has no operation. Not remembered, so that made-up names
            # cannot grow memory; botocore's own models are a bounded set.
            return frozenset(), {}
        operations: dict[str, Any] = model["operations"]
        routes: dict[str, list[_Route]] = {}
        for name, spec in operations.items():
            route = _route(name, spec, model["shapes"])
            routes.setdefault(route.method, []).append(route)
        found = (frozenset(operations), {method: tuple(r) for method, r in routes.items()})
        with self._lock:
            self._models[client_name] = found
        return found


def _route(name: str, spec: Mapping[str, Any], shapes: Mapping[str, Any]) -> _Route:
    http = spec.get("http", {})
    path_template, _, query_template = str(http.get("requestUri", "/")).partition("?")
    pattern, position, literal = [], 0, 0
    for label in _LABEL.finditer(path_template):
        text = path_template[position : label.start()]
        pattern.append(re.escape(text))
        literal += len(text)
        group = ".+" if label["greedy"] else "[^/]+"
        pattern.append(f"(?P<{label['name']}>{group})")
        position = label.end()
    pattern.append(re.escape(path_template[position:]))
    literal += len(path_template) - position
    query: list[tuple[str, str | None]] = []
    for part in filter(None, query_template.split("&")):
        key, equals, value = part.partition("=")
        query.append((key, value if equals else None))
    shape = shapes.get(spec.get("input", {}).get("shape", ""), {})
    members: Mapping[str, Any] = shape.get("members", {})
    required = [(name, members[name]) for name in shape.get("required", []) if name in members]
    return _Route(
        operation=name,
        method=str(http.get("method", "POST")).upper(),
        path=re.compile(f"^{''.join(pattern)}$"),
        query=tuple(query),
        required_query=tuple(
            member["locationName"]
            for _, member in required
            if member.get("location") == "querystring"
        ),
        required_headers=tuple(
            (name, member["locationName"].lower())
            for name, member in required
            if member.get("location") == "header"
        ),
        literal_length=literal,
    )


def _match(routes: _Routes, call: Call) -> tuple[str, dict[str, str]]:
    """The most specific rest operation matching the call: the most demands on the query
    and headers met (UploadPart over PutObject), then the longest literal path."""
    best: tuple[tuple[int, int], str, dict[str, str]] | None = None
    path = call.raw_path
    trimmed = path[:-1] if len(path) > 1 and path.endswith("/") else None
    for route in routes.get(call.method, ()):
        if not _demands_met(route, call):  # cheaper than the path: first
            continue
        found = route.path.match(path) or (trimmed is not None and route.path.match(trimmed))
        if not found:
            continue
        if best is None or route.specificity() > best[0]:
            members = {name: unquote(value) for name, value in found.groupdict().items()}
            members.update((name, call.headers[header]) for name, header in route.required_headers)
            best = (route.specificity(), route.operation, members)
    if best is None:
        raise Unidentified(f"{call.method} {call.raw_path}")
    return best[1], best[2]


def _demands_met(route: _Route, call: Call) -> bool:
    for key, value in route.query:
        if key not in call.query or (value is not None and value not in call.query[key]):
            return False
    return all(name in call.query for name in route.required_query) and all(
        header in call.headers for _, header in route.required_headers
    )


def permissions(
    service: Service,
    operation: str,
    params: Mapping[str, Any],
    region: str,
    account: str,
    body: bytes = b"",
) -> list[Permission]:
    """What the operation needs: one permission, or one per resource it names (a batch's
    tables, DeleteObjects' keys, CopyObject's source)."""
    if service.is_s3:
        return _s3(operation, params, body)
    action = f"{_IAM_PREFIXES.get(service.signing_name, service.signing_name)}:{operation}"
    resources = _RESOURCES.get(service.signing_name, _anything)(params, region, account)
    return [Permission(action, resource) for resource in resources or ["*"]]


def _s3(operation: str, params: Mapping[str, Any], body: bytes) -> list[Permission]:
    action = "s3:" + S3_ACTIONS.get(operation, operation)
    bucket, key = params.get("Bucket"), params.get("Key")
    if not bucket:
        return [Permission(action, "*")]
    if operation == S3_KEYS_IN_BODY:
        keys = dict.fromkeys(
            _xml_text(k) for k in _BODY_KEY.findall(body.decode("utf-8", "replace"))
        )
        return [Permission(action, f"arn:aws:s3:::{bucket}/{name}") for name in keys] or [
            Permission(action, f"arn:aws:s3:::{bucket}/*")
        ]
    needed = [Permission(action, f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else ""))]
    source = params.get("CopySource")
    if isinstance(source, str) and source:
        # `/bucket/key?versionId=…`, percent-encoded: reading the source is a GetObject.
        path = unquote(source.partition("?versionId=")[0]).lstrip("/")
        needed.append(Permission("s3:GetObject", f"arn:aws:s3:::{path}"))
    return needed


def _xml_text(text: str) -> str:
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'")):
        text = text.replace(entity, char)
    return text.replace("&amp;", "&")


def _anything(params: Mapping[str, Any], region: str, account: str) -> list[str]:
    return []


def _dynamodb(params: Mapping[str, Any], region: str, account: str) -> list[str]:
    names: list[str] = []
    if isinstance(params.get("TableName"), str):
        names.append(params["TableName"])
    if isinstance(params.get("RequestItems"), Mapping):
        names.extend(str(name) for name in params["RequestItems"])
    for item in params.get("TransactItems") or []:
        for action in item.values() if isinstance(item, Mapping) else []:
            if isinstance(action, Mapping) and isinstance(action.get("TableName"), str):
                names.append(action["TableName"])
    return [
        name if name.startswith("arn:") else f"arn:aws:dynamodb:{region}:{account}:table/{name}"
        for name in dict.fromkeys(names)
    ]


def _sqs(params: Mapping[str, Any], region: str, account: str) -> list[str]:
    url, name = params.get("QueueUrl"), params.get("QueueName")
    if isinstance(url, str) and url:
        name = url.rstrip("/").rsplit("/", 1)[-1]
    return [f"arn:aws:sqs:{region}:{account}:{name}"] if isinstance(name, str) and name else []


def _sns(params: Mapping[str, Any], region: str, account: str) -> list[str]:
    for member in ("TopicArn", "TargetArn"):
        if isinstance(params.get(member), str) and params[member]:
            return [params[member]]
    name = params.get("Name")
    if params.get("Action") == "CreateTopic" and isinstance(name, str) and name:
        return [f"arn:aws:sns:{region}:{account}:{name}"]
    return []


def _secretsmanager(params: Mapping[str, Any], region: str, account: str) -> list[str]:
    # A secret's ARN ends in a suffix only its store knows: a name alone names no ARN.
    secret = params.get("SecretId")
    return [secret] if isinstance(secret, str) and secret.startswith("arn:") else []


def _kinesis(params: Mapping[str, Any], region: str, account: str) -> list[str]:
    if isinstance(params.get("StreamARN"), str) and params["StreamARN"]:
        return [params["StreamARN"]]
    name = params.get("StreamName")
    return [f"arn:aws:kinesis:{region}:{account}:stream/{name}"] if isinstance(name, str) else []


_RESOURCES = {
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "sns": _sns,
    "secretsmanager": _secretsmanager,
    "kinesis": _kinesis,
}
