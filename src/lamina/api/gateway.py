"""The service gateway: calls for AWS services Lamina does not serve, forwarded upstream.

Function code's SDKs send every call to `AWS_ENDPOINT_URL`, Lamina. A call signed for a
service Lamina serves (Lambda, Logs, EventBridge, CloudWatch, IAM, STS, KMS) goes to its
front as usual; any other (S3, DynamoDB, SQS…) is forwarded to the upstream the operator
configured for it (`lamina.aws.upstreams`), re-signed with the upstream's credentials, and
its response streamed back as it came: status, headers (less the connection-level ones)
and body.

In enforced mode the caller's signature is checked first against Lamina's keys (for a
function: its execution role's session), before any body is held
(`lamina.api.gateway_signature`); then the caller's identity policies must allow what the
call does, as AWS would decide it (`lamina.api.gateway_access`), since upstream it acts
with the operator's credentials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio
import anyio.to_thread
import cbor2
import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from lamina.api.gateway_access import GatewayAccess
from lamina.api.gateway_errors import (
    BAD_PATH,
    INVALID_BUCKET,
    LOOP,
    NOT_CONFIGURED,
    UNREACHABLE,
    refusal,
    service_error,
    unavailable,
)
from lamina.api.gateway_signature import (
    PAYLOAD_MISMATCH,
    PayloadMismatch,
    authenticate_s3,
    check_key,
    hash_checked,
)
from lamina.api.pipeline import read_body
from lamina.aws.upstream_actions import S3_KEYS_IN_BODY, Call
from lamina.aws.upstreams import (
    HOP_BY_HOP,
    HOP_HEADER,
    SIGNED_CHUNKS_PREFIX,
    UNSIGNED_PAYLOAD,
    UNSIGNED_TRAILER,
    Service,
    ServiceCatalog,
    Unconfigured,
    Upstream,
    UpstreamTable,
    forwarded_headers,
    resign,
    without_presigning,
)
from lamina.constants import DEFAULT_REGION, MAX_REQUEST_BODY_BYTES
from lamina.control.access import Authority
from lamina.errors import IncompleteSignature, LaminaError
from lamina.identity.sigv4 import Signer, SigV4Verifier

log = logging.getLogger("lamina.gateway")

# A header signature's or a presigned URL's credential: `<key>/<date>/<region>/<service>/
# aws4_request`, or SigV4a's `<key>/<date>/<service>/aws4_request` (its regions are in
# X-Amz-Region-Set). Percent-encoded in a query, in either case.
_HEADER_CREDENTIAL = re.compile(rb"Credential=([^,\s]+)")
_QUERY_CREDENTIAL = re.compile(rb"(?:^|&)X-Amz-Credential=([^&]+)", re.IGNORECASE)
# Bodies held at once, over all calls: a service other than S3 signs a hash of the whole
# body, so it is read before its signature can be checked (after its key and date).
BUFFERED_BYTES_MAX = 256 * 1024 * 1024
# DeleteObjects' body names at most 1,000 keys of at most 1,024 bytes.
S3_KEYS_BODY_MAX_BYTES = 2 * 1024 * 1024
_UNHASHED = {UNSIGNED_PAYLOAD, UNSIGNED_TRAILER}
# Services remembered with their upstreams.
_REMEMBERED = 1024
_SIGNED_ONCE = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")
# Connections to upstreams, over all of them; a call waits this long for a free one, then
# is answered 503. Long polls (SQS) hold theirs for up to 20 s.
UPSTREAM_CONNECTIONS = 512
UPSTREAM_KEPT_ALIVE = 128
POOL_WAIT_SECONDS = 30.0
_S3_BUCKET = re.compile(r"^[a-z0-9.-]{3,63}$")


def signing_scope(scope: Scope, region: str = DEFAULT_REGION) -> tuple[str, str] | None:
    """(signing name, region) of a request's SigV4 credential scope; None if unsigned.
    S3's older presigned URLs name no service or region, SigV4a's no region: they are
    signed for `region` (SigV4a: the one X-Amz-Region-Set names, if only one)."""
    credential: bytes | None = None
    region_set = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            found = _HEADER_CREDENTIAL.search(value)
            if found is None:
                return None
            credential = found.group(1)
        elif name == b"x-amz-region-set":
            region_set = value
    query: bytes = scope.get("query_string", b"")
    if credential is None and (found := _QUERY_CREDENTIAL.search(query)):
        credential = unquote(found.group(1).decode("latin-1")).encode("latin-1")
    if credential is None:
        if b"AWSAccessKeyId=" in query and b"Signature=" in query:
            return "s3", region
        return None
    parts = credential.decode("latin-1").split("/")
    if len(parts) == 5 and parts[4] == "aws4_request":
        return parts[3], parts[2]
    if len(parts) == 4 and parts[3] == "aws4_request":
        regions = region_set.decode("latin-1").split(",")
        only = regions[0].strip() if len(regions) == 1 else ""
        return parts[2], only if only and only != "*" else region
    return None


@dataclass(frozen=True)
class GatewaySetup:
    """The gateway as the composition root chose it: the upstreams, and the address only
    environments reach, where the server listens too (None: Lamina's own address)."""

    upstreams: UpstreamTable
    url: str
    listen: tuple[str, int] | None = None
    # Where calls whose signature names no region are signed for (S3's older presigned URLs).
    region: str = DEFAULT_REGION


class ServiceGateway:
    """Forwards what Lamina does not serve: the front door asks it about each request
    (`destination`) before any of Lamina's own fronts sees it."""

    def __init__(
        self,
        setup: GatewaySetup,
        served: Iterable[str],
        verifier: SigV4Verifier | None,
        authority: Authority | None = None,
    ) -> None:
        """`authority` decides forwarded calls in enforced mode (with `verifier`)."""
        self.setup = setup
        if verifier is not None and verifier.enforcing and authority is None:
            raise ValueError("IAM keys may sign forwarded calls only where they are authorised")
        access = GatewayAccess(authority) if authority is not None else None
        self._forwarder = Forwarder(setup.upstreams, verifier, access=access)
        self._served = frozenset(served)
        self._region = setup.region

    def destination(self, scope: Scope) -> tuple[str, str] | None:
        """(signing name, region) of a call to forward; None for Lamina's own (unsigned, or
        signed for a service Lamina serves). Function URLs are the front door's to spot."""
        found = signing_scope(scope, self._region)
        if found is None or found[0] in self._served:
            return None
        return found

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, destination: tuple[str, str]
    ) -> None:
        await self._forwarder.forward(scope, receive, send, *destination)

    def closing(self, send: Send) -> Send:
        """A lifespan's `send`, closing the upstream connections as the server stops."""
        forwarder = self._forwarder

        async def closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await forwarder.aclose()
            await send(message)

        return closing


class Forwarder:
    """Checks, re-signs and forwards one call to its service's upstream."""

    def __init__(
        self,
        upstreams: UpstreamTable,
        verifier: SigV4Verifier | None,
        catalog: ServiceCatalog | None = None,
        access: GatewayAccess | None = None,
        buffered_max: int = BUFFERED_BYTES_MAX,
        connections: int = UPSTREAM_CONNECTIONS,
        pool_wait: float = POOL_WAIT_SECONDS,
    ) -> None:
        self._upstreams = upstreams
        self._verifier = verifier
        self._catalog = catalog or ServiceCatalog()
        self._access = access
        self._client: httpx.AsyncClient | None = None
        self._found: dict[tuple[str, str | None], tuple[Service, Upstream | Unconfigured]] = {}
        # Bytes of bodies held now, over all calls (the event loop's only: no lock).
        self._buffered = 0
        self._buffered_max = buffered_max
        self._connections = connections
        self._pool_wait = pool_wait

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            client = httpx.AsyncClient(
                # No read timeout: a function's own timeout bounds its calls, and SQS long
                # polls or large downloads legitimately take long. A bounded pool instead,
                # and a bounded wait for it.
                timeout=httpx.Timeout(None, connect=10.0, pool=self._pool_wait),
                limits=httpx.Limits(
                    max_connections=self._connections,
                    max_keepalive_connections=min(UPSTREAM_KEPT_ALIVE, self._connections),
                ),
                # One client serves every caller: it must keep no cookie between them.
                cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            )
            # The caller's headers only: no added Accept-Encoding, which would have the
            # upstream compress a body the caller did not ask to be compressed.
            for name in ("accept", "accept-encoding", "user-agent"):
                del client.headers[name]
            self._client = client
        return self._client

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, signing_name: str, region: str
    ) -> None:
        request = Request(scope, receive)
        request_id = str(uuid.uuid4())
        target = request.headers.get("x-amz-target", "").partition(".")[0] or None
        found = self._found.get((signing_name, target))
        if found is None:
            # Reading botocore's models, or finding the credentials, may take a moment the
            # first time: off the event loop. The server's settings do not change after.
            found = await anyio.to_thread.run_sync(self._lookup, signing_name, target)
            if len(self._found) >= _REMEMBERED:  # names come from callers: keep a bound
                self._found.clear()
            self._found[(signing_name, target)] = found
        service, upstream = found
        try:
            response = await self._forward(request, service, upstream, region, request_id, send)
        except Unconfigured as missing:
            response = service_error(service, *NOT_CONFIGURED, str(missing), request_id)
        except _Overloaded as busy:
            response = unavailable(service, str(busy), request_id)
        except LaminaError as error:
            response = refusal(service, error, request_id)
        if response is not None:
            if not isinstance(_streamed(request), bytes):
                # A refused call's body may be unread: the connection cannot carry another
                # request after it.
                response.headers["connection"] = "close"
            await response(scope, receive, send)

    def _lookup(
        self, signing_name: str, target: str | None
    ) -> tuple[Service, Upstream | Unconfigured]:
        service = self._catalog.service(signing_name, target)
        if self._access is not None:
            self._access.prepare(service)
        try:
            return service, self._upstreams.upstream(service)
        except Unconfigured as missing:
            return service, missing

    async def _forward(
        self,
        request: Request,
        service: Service,
        upstream: Upstream | Unconfigured,
        region: str,
        request_id: str,
        send: Send,
    ) -> Response | None:
        """Forwards the call and relays the answer (None); or the refusal to send. The
        caller is authenticated, then authorised, before anything about the upstreams is
        said."""
        if request.headers.get(HOP_HEADER):
            message = (
                f"The upstream configured for service {service.signing_name} sent the call "
                f"back to Lamina's gateway: point {service.setting} at the service itself"
            )
            return service_error(service, *LOOP, message, request_id)
        declared = request.headers.get("x-amz-content-sha256")
        if declared is not None and declared.startswith(SIGNED_CHUNKS_PREFIX):
            message = (
                "Lamina's gateway cannot re-sign uploads whose chunks carry the caller's "
                f"signatures ({declared}): sign the whole payload, or send it unsigned"
            )
            return service_error(service, *NOT_CONFIGURED, message, request_id)
        scope = request.scope
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if not _forwardable(raw_path):
            message = (
                "Lamina's gateway forwards only paths that start with / and hold no . or .. "
                f"segment: {raw_path[:200]}"
            )
            return service_error(service, *BAD_PATH, message, request_id)
        if service.is_s3 and (
            bucket := self._upstreams.virtual_host_bucket(request.headers.get("host", ""))
        ):
            if not _S3_BUCKET.match(bucket):
                return service_error(service, *INVALID_BUCKET, request_id)
            raw_path = f"/{bucket}{raw_path}"
        query = scope.get("query_string", b"").decode("latin-1")
        async with self._held_body(request, service) as whole:
            signer = self._verify(request, service, whole)
            body, content = whole, _streamed(request) if whole is None else whole
            if signer is not None and declared and declared not in _UNHASHED:
                if isinstance(content, bytes):
                    _check_payload(content, declared)
                else:
                    content = hash_checked(content, declared)
            if signer is not None:
                keys = await self._authorise(request, service, signer, raw_path, body)
                if keys is not None:
                    if declared and declared not in _UNHASHED:
                        _check_payload(keys, declared)
                    body = content = keys
            if isinstance(upstream, Unconfigured):
                raise upstream
            url = upstream.target(raw_path, without_presigning(query))
            caller_headers = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
            ]
            s3_payload = declared if service.is_s3 and declared else None
            headers = resign(
                upstream,
                request.method,
                url,
                forwarded_headers(caller_headers),
                region,
                body,
                s3_payload,
            )
            return await self._send(request, service, url, headers, content, request_id, send)

    async def _send(
        self,
        request: Request,
        service: Service,
        url: str,
        headers: list[tuple[str, str]],
        content: AsyncIterator[bytes] | bytes,
        request_id: str,
        send: Send,
    ) -> Response | None:
        client = self._http()
        try:
            outgoing = client.build_request(request.method, url, headers=headers, content=content)
            answer = await client.send(outgoing, stream=True)
        except httpx.InvalidURL as error:
            message = f"Lamina's gateway cannot forward this request target: {error}"
            return service_error(service, *BAD_PATH, message, request_id)
        except httpx.PoolTimeout:
            log.warning("gateway: no free connection to the %s upstream", service.signing_name)
            message = (
                f"Lamina's gateway has no free connection to the upstream of service "
                f"{service.signing_name} ({self._connections} in use): retry later"
            )
            return unavailable(service, message, request_id)
        except httpx.HTTPError as error:
            log.warning("gateway: %s upstream unreachable: %s", service.signing_name, error)
            message = (
                f"Lamina's gateway could not reach the upstream configured for service "
                f"{service.signing_name} ({service.setting} or AWS_ENDPOINT_URL)"
            )
            return service_error(service, *UNREACHABLE, message, request_id)
        await _relay(answer, request.receive, send)
        return None

    @asynccontextmanager
    async def _held_body(self, request: Request, service: Service) -> AsyncIterator[bytes | None]:
        """The body forwarding needs whole (every service but S3 signs a hash of it), read
        within the buffering budget once the signature's key and date are checked; None
        for S3's, streamed through. The budget is given back on exit."""
        if self._verifier is not None:
            check_key(self._verifier, _signing_headers(request))
        if service.is_s3:
            yield None
            return
        body, reserved = await self._read_held(request, MAX_REQUEST_BODY_BYTES)
        try:
            yield body
        finally:
            self._release(reserved)

    def _reserve(self, size: int) -> None:
        if self._buffered + size > self._buffered_max:
            raise _Overloaded("Lamina's gateway holds too many request bodies at once: retry later")
        self._buffered += size

    def _release(self, size: int) -> None:
        self._buffered -= size

    async def _read_held(self, request: Request, limit: int) -> tuple[bytes, int]:
        """The body, read within the buffering budget; with the bytes reserved for it."""
        length = request.headers.get("content-length")
        reserved = min(int(length), limit) if length and length.isdigit() else limit
        self._reserve(reserved)
        try:
            return await read_body(request, limit), reserved
        except BaseException:
            self._release(reserved)
            raise

    async def _authorise(
        self, request: Request, service: Service, signer: Signer, raw_path: str, body: bytes | None
    ) -> bytes | None:
        """Enforced mode: the caller's policies allow the call (raises otherwise). Returns
        the body when it had to be read to tell (S3's DeleteObjects), else None."""
        access = self._access
        if access is None or access.unchecked(signer.caller):
            return None
        query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"), True)
        headers = {key.lower(): value for key, value in request.headers.items()}
        call = Call(request.method, raw_path, query, headers, input_members(service, body))
        operation, params = access.operation(service, call, signer.caller)
        held: bytes | None = None
        if service.is_s3 and operation == S3_KEYS_IN_BODY:
            held, reserved = await self._read_held(request, S3_KEYS_BODY_MAX_BYTES)
            self._release(reserved)  # small, and checked at once
        client = request.client
        source_ip = client.host if client else None
        access.check(signer, service, operation, params, source_ip, held or b"")
        return held

    def _verify(self, request: Request, service: Service, body: bytes | None) -> Signer | None:
        """Enforced mode: the caller signed with a key Lamina knows (raises otherwise).
        An S3 body is not read: its declared hash is what the signature covers."""
        verifier = self._verifier
        if verifier is None:
            return None
        headers = _signing_headers(request)
        scope = request.scope
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        if service.is_s3 and body is None:
            return authenticate_s3(verifier, request.method, raw_path, query, headers)
        return verifier.authenticate(
            request.method, headers.get("host", ""), raw_path, query, headers, body or b""
        )


class _Overloaded(Exception):
    """No room for one more held body: the call is answered 503."""


def _check_payload(body: bytes, declared: str) -> None:
    if hashlib.sha256(body).hexdigest() != declared.lower():
        raise PayloadMismatch(PAYLOAD_MISMATCH)


def _signing_headers(request: Request) -> dict[str, str]:
    """The request's headers, lower-cased; refused where signing material is repeated or
    missing (the gateway accepts no presigned URL in enforced mode: it cannot check what
    such a URL allows)."""
    for name in _SIGNED_ONCE:
        if len(request.headers.getlist(name)) > 1:
            raise IncompleteSignature(f"The request carries more than one {name} header")
    if "authorization" not in request.headers:
        raise IncompleteSignature(
            "Lamina's gateway accepts presigned URLs only in development mode: "
            "sign the request with an Authorization header"
        )
    return {key.lower(): value for key, value in request.headers.items()}


def input_members(service: Service, body: bytes | None) -> dict[str, Any]:
    """A JSON, CBOR or query call's input members, to name its resource (empty when its
    body is none of these, or unreadable: the upstream answers that)."""
    if not body:
        return {}
    try:
        if service.protocol in {"json", "rest-json"}:
            found = json.loads(body)
        elif service.protocol == "smithy-rpc-v2-cbor":
            found = cbor2.loads(body)
        elif service.protocol in {"query", "ec2"}:
            found = {k: v[0] for k, v in parse_qs(body.decode(), True).items()}
        else:
            return {}
    except (ValueError, cbor2.CBORDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def _forwardable(raw_path: str) -> bool:
    """A path httpx sends as it is: absolute, with no dot segment it would resolve."""
    if not raw_path.startswith("/"):
        return False
    return all(unquote(segment) not in {".", ".."} for segment in raw_path.split("/"))


def _streamed(request: Request) -> AsyncIterator[bytes] | bytes:
    """The caller's body as a stream, or nothing for a call without one (a GET): a stream
    would be sent chunked, a body such a call must not have."""
    length = request.headers.get("content-length")
    if length in (None, "0") and "transfer-encoding" not in request.headers:
        return b""
    return request.stream()


async def _relay(answer: httpx.Response, receive: Receive, send: Send) -> None:
    """The upstream's response as it came (raw bytes: its encoding and length untouched),
    until the caller goes away: then the upstream's response is closed, not downloaded."""
    try:
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            headers = [
                (name, value)
                for name, value in answer.headers.raw
                if name.lower() not in _NOT_RELAYED
            ]
            await send(
                {"type": "http.response.start", "status": answer.status_code, "headers": headers}
            )
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await answer.aclose()


# The upstream's Date goes too: Lamina's HTTP server sets its own.
_NOT_RELAYED = frozenset(name.encode() for name in HOP_BY_HOP) | {b"date"}
