"""Where the service gateway sends calls for services Lamina does not serve, and how.

A request names its service by the signing name in its SigV4 credential scope
(`Credential=<key>/<date>/<region>/<signing name>/aws4_request`). That name is mapped to
botocore's client name (`s3`, `dynamodb`, `stepfunctions`…), and the upstream is then found
exactly as boto3 would find it for that client in the server's own process: botocore's
`AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, then the `services` section and
`endpoint_url` of the shared config file. So one configuration serves both Lamina's own calls
and its functions'.

The caller's signature never travels on: the request is re-signed with the server's own
credentials (botocore's normal chain: environment, shared credentials file, …) for the
upstream, or sent unsigned when there are none. Pure logic, no I/O: the HTTP side is
`lamina.api.gateway`.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore import utils as botocore_utils
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.configprovider import ConfiguredEndpointProvider
from botocore.credentials import Credentials
from botocore.loaders import Loader

# The payload values of SigV4 that are not a SHA-256 of the body (S3 only).
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
# Chunks signed with the caller's key (SigV4 or SigV4a, with or without a trailer).
SIGNED_CHUNKS_PREFIX = "STREAMING-AWS4-"
# Connection-level headers (RFC 9110 §7.6.1) and the caller's own signing material: neither
# is passed on. Host, Content-Length and the date are set anew for the upstream.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_CALLER_SIGNING = frozenset(
    {"authorization", "x-amz-security-token", "x-amz-date", "x-amz-content-sha256", "host"}
)
# `Expect: 100-continue` was answered by Lamina's own HTTP server already.
_NOT_FORWARDED = HOP_BY_HOP | _CALLER_SIGNING | {"expect"}
# A presigned URL's signing parameters: the caller's, replaced by a header signature.
PRESIGN_PARAMETERS = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-signature",
        "x-amz-security-token",
    }
)
# S3's older presigned URLs (what boto3's `generate_presigned_url` makes for S3 by default):
# `?AWSAccessKeyId=…&Signature=…&Expires=…`.
PRESIGN_V2_PARAMETERS = frozenset({"awsaccesskeyid", "signature", "expires"})
# Services remembered by signing name and target.
_REMEMBERED = 1024
# How far into a model file its metadata is looked for.
_METADATA_WITHIN = 16 * 1024
# Marks a request the gateway sent, so that an upstream pointing back at Lamina is refused
# instead of looping.
HOP_HEADER = "x-lamina-gateway"


@dataclass(frozen=True)
class Service:
    """A service as botocore knows it: enough to route a call and to word its errors."""

    signing_name: str
    # botocore's client name (`boto3.client(<name>)`); the signing name when botocore has
    # no model that signs with it.
    client_name: str
    # botocore's protocol: rest-xml, rest-json, json, query, ec2, smithy-rpc-v2-cbor.
    protocol: str

    @property
    def setting(self) -> str:
        """botocore's per-service endpoint variable, named from the client name."""
        return endpoint_variable(self.client_name)

    @property
    def is_s3(self) -> bool:
        """S3's signing rules: the path is signed as sent, the payload may go unsigned."""
        return self.signing_name == "s3"


def endpoint_variable(client_name: str) -> str:
    """`AWS_ENDPOINT_URL_<SERVICE>` for a client, as botocore derives it (aliases and the
    hyphenated service id overrides, e.g. secretsmanager → SECRETS_MANAGER)."""
    name = botocore_utils.SERVICE_NAME_ALIASES.get(client_name, client_name)
    service_id = botocore_utils.CLIENT_NAME_TO_HYPHENIZED_SERVICE_ID_OVERRIDES.get(name, name)
    return "AWS_ENDPOINT_URL_" + str(service_id).replace("-", "_").upper()


class ServiceCatalog:
    """Maps a signing name (and a JSON call's target prefix) to botocore's service.

    Most signing names are a client name as well (s3, sqs, dynamodb), so one model is read;
    the others (`states` is stepfunctions) need the index of every model's signing name,
    built once on first need (a few seconds: call off the event loop)."""

    def __init__(self, loader: Loader | None = None) -> None:
        self._loader = loader or Loader()
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str | None], Service] = {}
        self._index: dict[str, list[tuple[str, dict[str, Any]]]] | None = None
        self._names: frozenset[str] | None = None

    def service(self, signing_name: str, target: str | None = None) -> Service:
        """The service a request signed for `signing_name` calls; `target` is the prefix of
        its `X-Amz-Target` (JSON protocols), which tells apart services sharing a name
        (dynamodb and dynamodbstreams)."""
        key = (signing_name, target)
        found = self._known.get(key)
        if found is None:
            found = self._find(signing_name, target)
            with self._lock:
                if len(self._known) >= _REMEMBERED:  # names come from callers: keep a bound
                    self._known.clear()
                self._known[key] = found
        return found

    def _find(self, signing_name: str, target: str | None) -> Service:
        if signing_name in self._client_names():
            metadata = self._metadata(signing_name)
            if _signs_as(metadata) == signing_name and _targets(metadata, target):
                return Service(signing_name, signing_name, metadata["protocol"])
        candidates = self._signing_index().get(signing_name, [])
        for name, metadata in candidates:
            if target is not None and metadata.get("targetPrefix") == target:
                return Service(signing_name, name, metadata["protocol"])
        # Several services share a signing name (s3 and s3control): the one whose endpoint
        # prefix is that name is the service people mean.
        for name, metadata in sorted(candidates, key=lambda c: c[1].get("endpointPrefix") != c[0]):
            return Service(signing_name, name, metadata["protocol"])
        return Service(signing_name, signing_name, "json" if target else "rest-json")

    def _client_names(self) -> frozenset[str]:
        if self._names is None:
            self._names = frozenset(self._loader.list_available_services("service-2"))
        return self._names

    def _metadata(self, client_name: str) -> dict[str, Any]:
        """A model's metadata. A model file opens with it: reading and parsing only its
        first bytes is a hundred times faster than loading the model (hundreds of them
        make the index); the whole model is loaded when that finds nothing."""
        version = self._loader.determine_latest_version(client_name, "service-2")
        for base in self._loader.search_paths:
            for suffix in (".json", ".json.gz"):
                path = os.path.join(base, client_name, version, "service-2" + suffix)
                if os.path.isfile(path):
                    found = _leading_metadata(path)
                    if found is not None:
                        return found
        metadata: dict[str, Any] = self._loader.load_service_model(client_name, "service-2")[
            "metadata"
        ]
        return metadata

    def _signing_index(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        with self._lock:
            if self._index is None:
                index: dict[str, list[tuple[str, dict[str, Any]]]] = {}
                for name in sorted(self._client_names()):
                    metadata = self._metadata(name)
                    index.setdefault(_signs_as(metadata), []).append((name, metadata))
                self._index = index
            return self._index


def _leading_metadata(path: str) -> dict[str, Any] | None:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as model:
        head = model.read(_METADATA_WITHIN)
    start = head.find('"metadata"')
    if start < 0:
        return None
    try:
        found, _ = json.JSONDecoder().raw_decode(head, head.index("{", start))
    except ValueError:
        return None
    return found if isinstance(found, dict) and "protocol" in found else None


def _signs_as(metadata: Mapping[str, Any]) -> str:
    return str(metadata.get("signingName") or metadata.get("endpointPrefix") or "")


def _targets(metadata: Mapping[str, Any], target: str | None) -> bool:
    return target is None or metadata.get("targetPrefix") in (None, target)


@dataclass(frozen=True)
class Upstream:
    """Where one service's calls go, with the credentials they are signed with there."""

    service: Service
    url: str
    credentials: Credentials | None

    def target(self, raw_path: str, query: str) -> str:
        """The upstream URL of a request's path and query (an endpoint may carry a path)."""
        base = urlsplit(self.url)
        path = base.path.rstrip("/") + raw_path
        return f"{base.scheme}://{base.netloc}{path}" + (f"?{query}" if query else "")


class Unconfigured(LookupError):
    """No upstream for a service: the message says which setting to set."""

    def __init__(self, service: Service, reason: str = "") -> None:
        self.service = service
        super().__init__(
            f"No upstream is configured for service {service.signing_name}: set "
            f"{service.setting} (or AWS_ENDPOINT_URL) on the Lamina server{reason}"
        )


class UpstreamTable:
    """The upstream of each service, resolved as boto3 resolves endpoints in the server.

    `own_urls` are Lamina's own addresses (its endpoint and the gateway's): the server's
    `AWS_ENDPOINT_URL` often points at Lamina itself for the `aws` CLI's sake, and sending
    a call there would only come back to the gateway."""

    def __init__(
        self,
        environ: Mapping[str, str],
        credentials: Callable[[], Credentials | None],
        own_urls: Iterable[str] = (),
        full_config: Mapping[str, Any] | None = None,
        scoped_config: Mapping[str, Any] | None = None,
    ) -> None:
        """`credentials` is called once, on first need: botocore's chain may ask the
        instance metadata service, which takes seconds where there is none."""
        self._environ = dict(environ)
        self._find_credentials = credentials
        self._credentials: Credentials | None = None
        self._credentials_found = False
        self._lock = threading.Lock()
        self._own = frozenset(_origin(url) for url in own_urls)
        hosts = {urlsplit(origin).hostname or "" for origin in self._own}
        # `localhost` is 127.0.0.1 to `_origin`, and to the SDKs a host name that buckets
        # may be put in front of.
        self._own_hosts = frozenset(hosts | ({"localhost"} if "127.0.0.1" in hosts else set()))
        self._full_config = dict(full_config or {})
        self._scoped_config = dict(scoped_config or {})

    @classmethod
    def of_this_process(cls, own_urls: Iterable[str]) -> UpstreamTable:
        """The upstreams boto3 would use in this process: its environment, its shared
        config file, and botocore's credential chain."""
        import botocore.session

        session = botocore.session.get_session()
        return cls(
            os.environ,
            session.get_credentials,
            own_urls,
            session.full_config,
            session.get_scoped_config(),
        )

    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._credentials_found:
                self._credentials = self._find_credentials()
                self._credentials_found = True
            return self._credentials

    def upstream(self, service: Service) -> Upstream:
        """The service's upstream; `Unconfigured` when there is none."""
        url = ConfiguredEndpointProvider(
            self._full_config, self._scoped_config, service.client_name, self._environ
        ).provide()
        if not url:
            raise Unconfigured(service)
        if _origin(url) in self._own:
            raise Unconfigured(service, " (it points at Lamina itself)")
        return Upstream(service, str(url), self.credentials())

    def virtual_host_bucket(self, host: str) -> str | None:
        """The bucket of an S3 call addressed virtual-host style to Lamina
        (`<bucket>.localhost:9000`, as the JS SDK addresses a named endpoint); None for
        path-style calls. The upstream gets it path-style, which every S3 store accepts."""
        name = host.rsplit(":", 1)[0].lower() if host.count(":") <= 1 else host
        for own in self._own_hosts:
            if name.endswith("." + own):
                return name[: -len(own) - 1]
        return None


def _origin(url: str) -> str:
    parts = urlsplit(url.rstrip("/"))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    if host == "localhost":
        host = "127.0.0.1"
    return f"{parts.scheme}://{host}:{port}"


def forwarded_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The caller's headers an upstream receives: neither connection-level ones nor the
    caller's signature, token or date (the re-signing sets its own)."""
    return [(name, value) for name, value in headers if name.lower() not in _NOT_FORWARDED]


def without_presigning(query: str) -> str:
    """A presigned URL's query without the caller's signing parameters; the others are
    kept as the caller encoded them."""
    parts = query.split("&")
    names = [unquote(part.partition("=")[0]).lower() for part in parts]
    signing = PRESIGN_PARAMETERS | (PRESIGN_V2_PARAMETERS if "awsaccesskeyid" in names else set())
    return "&".join(
        part for part, name in zip(parts, names, strict=True) if part and name not in signing
    )


class _DeclaredPayloadS3Auth(S3SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """S3's signer with the payload value given rather than computed from a body the
    gateway streams (the caller's SHA-256, which S3 then checks, or UNSIGNED-PAYLOAD)."""

    def __init__(self, credentials: Credentials, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


def resign(
    upstream: Upstream,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    region: str,
    body: bytes | None,
    declared_payload: str | None = None,
) -> list[tuple[str, str]]:
    """The headers to send `url` with: `headers` signed with the upstream's credentials,
    or left unsigned when it has none. `body` is the whole body for services that sign
    it; S3's streamed bodies pass `body=None` and the caller's `declared_payload`."""
    credentials = upstream.credentials
    sent = [*headers, (HOP_HEADER, "1")]
    if credentials is None:
        if upstream.service.is_s3 and declared_payload:
            sent.append(("x-amz-content-sha256", declared_payload))
        return sent
    # Refreshable credentials (an assumed role) are read at their current value.
    frozen = credentials.get_frozen_credentials()
    request = AWSRequest(method=method, url=url, headers=dict(sent), data=body or b"")
    signer: SigV4Auth
    if upstream.service.is_s3:
        payload = declared_payload or UNSIGNED_PAYLOAD
        if body is not None and declared_payload is None:
            payload = S3SigV4Auth(frozen, "s3", region).payload(request)
        signer = _DeclaredPayloadS3Auth(frozen, region, payload)
    else:
        signer = SigV4Auth(frozen, upstream.service.signing_name, region)
    signer.add_auth(request)
    return [(name, value) for name, value in request.headers.items()]
