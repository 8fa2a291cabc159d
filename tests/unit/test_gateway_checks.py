"""The service gateway's checks before and while it forwards: signature scopes it
recognises, request targets it refuses, signatures checked before any body is held, S3
bodies checked against their signed hash as they stream, the bounded upstream pool, and
a caller that goes away. Upstreams are real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lamina.api.asgi import FrontDoor
from lamina.api.gateway import Forwarder, GatewaySetup, signing_scope
from lamina.aws.upstreams import UpstreamTable
from lamina.identity.sigv4 import SigV4Verifier
from tests.support.gateway import gateway_door

ROOT = Credentials("AKIAGATEWAYROOT00000", "root-secret")
UPSTREAM = Credentials("AKIAUPSTREAMKEY00000", "upstream-secret")


def scope_of(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "headers": headers, "query_string": query}


def test_sigv4a_and_lower_case_encoded_scopes_are_recognised() -> None:
    sigv4a = b"AWS4-ECDSA-P256-SHA256 Credential=AKIA/20260101/s3/aws4_request, SignedHeaders=host"
    assert signing_scope(scope_of([(b"authorization", sigv4a)]), "eu-west-1") == (
        "s3",
        "eu-west-1",
    )
    one_region = [(b"authorization", sigv4a), (b"x-amz-region-set", b"us-west-2")]
    assert signing_scope(scope_of(one_region)) == ("s3", "us-west-2")
    every_region = [(b"authorization", sigv4a), (b"x-amz-region-set", b"*")]
    assert signing_scope(scope_of(every_region), "eu-west-1") == ("s3", "eu-west-1")
    lower = b"x-amz-credential=AKIA%2f20260101%2feu-central-1%2fsqs%2faws4_request&X-Amz-Date=1"
    assert signing_scope(scope_of([], lower)) == ("sqs", "eu-central-1")
    upper = b"X-Amz-Credential=AKIA%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    assert signing_scope(scope_of([], upper)) == ("s3", "us-east-1")
    sigv4 = b"AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/dynamodb/aws4_request, X"
    assert signing_scope(scope_of([(b"authorization", sigv4)])) == ("dynamodb", "us-east-1")
    assert signing_scope(scope_of([(b"authorization", b"Bearer token")])) is None


# ------------------------------------------------------------------------------ upstreams


class _Upstream(http.server.BaseHTTPRequestHandler):
    """Records each request; answers with a Date header of its own, as servers do."""

    received: list[tuple[str, str, bytes]]
    release: threading.Event
    closed: threading.Event
    mode = "answer"

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.received.append((self.command, self.path, body))
        if self.mode == "hold":
            self.release.wait(30)
        self.send_response(200)  # adds Date and Server
        if self.mode == "endless":
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            try:
                for _ in range(100_000):  # far more than a caller that left reads
                    self.wfile.write(b"x" * 65536)
                    self.wfile.flush()
            except OSError:
                self.closed.set()
            return
        self.send_header("Content-Length", "8")
        self.end_headers()
        self.wfile.write(b"upstream")

    do_PUT = do_POST = do_GET = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what was recorded."""


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection the gateway aborts (a body whose hash failed) is expected here."""


class Upstream:
    def __init__(self, mode: str) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        self.release = threading.Event()
        self.closed = threading.Event()
        attributes = {
            "received": self.received,
            "release": self.release,
            "closed": self.closed,
            "mode": mode,
        }
        handler = type("Handler", (_Upstream,), attributes)
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream("answer") as running:
        yield running


def table(url: str) -> UpstreamTable:
    environ = {"AWS_ENDPOINT_URL_S3": url, "AWS_ENDPOINT_URL_DYNAMODB": url}
    return UpstreamTable(environ, lambda: UPSTREAM, own_urls=["http://localhost:9000"])


async def _not_lamina(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("a call for another service reached Lamina's own fronts")


def gateway(url: str, verifier: SigV4Verifier | None = None) -> FrontDoor:
    return gateway_door(_not_lamina, GatewaySetup(table(url), "http://gateway"), (), verifier)


def call(app: Any, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
    async def exchange() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.request(method, path, content=body, headers=headers)

    return asyncio.run(exchange())


def signed(method: str, path: str, service: str, body: bytes = b"", **headers: str) -> Any:
    request = AWSRequest(method=method, url=f"http://gateway{path}", data=body, headers=headers)
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(ROOT, service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def raw_call(app: Any, method: str, raw_path: bytes, headers: dict[str, str]) -> list[Any]:
    """One request over ASGI as sent, its target untouched (httpx would resolve dot
    segments before sending); the messages the app sent."""
    scope = {
        "type": "http",
        "method": method,
        "path": raw_path.decode(),
        "raw_path": raw_path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_request_targets_that_httpx_would_rewrite_are_refused(upstream: Upstream) -> None:
    app = gateway(upstream.url)
    for target in (b"/bucket/../admin", b"/bucket/./key", b"/bucket/%2e%2e/admin", b"*"):
        sent = raw_call(app, "GET", target, signed("GET", "/bucket/key", "s3"))
        assert sent[0]["status"] == 400, target
        assert b"<Code>InvalidURI</Code>" in sent[1]["body"]
    assert upstream.received == []


def test_a_host_named_bucket_must_be_a_valid_bucket_name(upstream: Upstream) -> None:
    headers = {**signed("GET", "/key", "s3"), "Host": "Not_A_Bucket.localhost:9000"}
    response = call(gateway(upstream.url), "GET", "/key", headers)
    assert response.status_code == 400
    assert b"<Code>InvalidBucketName</Code>" in response.content
    assert b"The specified bucket is not valid." in response.content
    assert upstream.received == []


def test_the_upstreams_date_is_not_relayed(upstream: Upstream) -> None:
    response = call(gateway(upstream.url), "GET", "/bucket/key", signed("GET", "/bucket/key", "s3"))
    assert response.content == b"upstream"
    assert "date" not in response.headers


def test_s3_keys_are_verified_as_signed_unnormalised(upstream: Upstream) -> None:
    verifier = SigV4Verifier(ROOT.access_key, ROOT.secret_key)
    app = gateway(upstream.url, verifier)
    body = b"an object under a//b"
    path = "/bucket/a//b%20c"
    response = call(app, "PUT", path, signed("PUT", path, "s3", body), body)
    assert response.status_code == 200
    assert upstream.received == [("PUT", path, body)]


def test_an_s3_body_that_is_not_the_one_signed_never_reaches_the_upstream_whole(
    upstream: Upstream,
) -> None:
    verifier = SigV4Verifier(ROOT.access_key, ROOT.secret_key)
    headers = signed("PUT", "/bucket/key", "s3", b"the signed body")
    response = call(gateway(upstream.url, verifier), "PUT", "/bucket/key", headers, b"x" * 15)
    assert response.status_code == 400
    assert b"<Code>XAmzContentSHA256Mismatch</Code>" in response.content
    assert all(body == b"" for _, _, body in upstream.received)


def test_an_unknown_key_is_refused_before_the_body_is_read(upstream: Upstream) -> None:
    verifier = SigV4Verifier(ROOT.access_key, ROOT.secret_key)
    stranger = Credentials("AKIASTRANGER00000000", "secret")
    body = b'{"TableName": "t"}'
    request = AWSRequest(method="POST", url="http://gateway/", data=body)
    request.headers["X-Amz-Target"] = "DynamoDB_20120810.DescribeTable"
    SigV4Auth(stranger, "dynamodb", "us-east-1").add_auth(request)
    app = gateway(upstream.url, verifier)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [
            (k.lower().encode(), v.encode())
            for k, v in [*request.headers.items(), ("Content-Length", str(len(body)))]
        ],
    }
    reads: list[str] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        reads.append("read")
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append({**message, "reads": len(reads)})

    asyncio.run(app(scope, receive, send))
    assert (sent[0]["status"], sent[0]["reads"]) == (403, 0)
    assert b"UnrecognizedClientException" in sent[1]["body"]
    # Its body unread, the connection is not reused.
    assert (b"connection", b"close") in sent[0]["headers"]


def forwarder_app(forwarder: Forwarder, service: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await forwarder.forward(scope, receive, send, service, "us-east-1")

    return app


def test_bodies_held_at_once_are_bounded(upstream: Upstream) -> None:
    forwarder = Forwarder(table(upstream.url), None, buffered_max=1024)
    body = b'{"TableName": "' + b"t" * 2000 + b'"}'
    headers = signed("POST", "/", "dynamodb", body, **{"X-Amz-Target": "DynamoDB_20120810.X"})
    response = call(forwarder_app(forwarder, "dynamodb"), "POST", "/", headers, body)
    assert response.status_code == 503
    assert response.json()["__type"] == "ServiceUnavailable"
    assert upstream.received == []
    small = b'{"TableName": "t"}'
    headers = signed("POST", "/", "dynamodb", small, **{"X-Amz-Target": "DynamoDB_20120810.X"})
    assert call(forwarder_app(forwarder, "dynamodb"), "POST", "/", headers, small).is_success


def test_a_busy_pool_answers_503_in_the_services_shape() -> None:
    with Upstream("hold") as held:
        forwarder = Forwarder(table(held.url), None, connections=1, pool_wait=0.2)
        app = forwarder_app(forwarder, "s3")

        async def two_calls() -> tuple[httpx.Response, httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
                first = asyncio.create_task(
                    client.get("/bucket/first", headers=signed("GET", "/bucket/first", "s3"))
                )
                while not held.received:  # the first call holds the one connection
                    await asyncio.sleep(0.01)
                second = await client.get(
                    "/bucket/second", headers=signed("GET", "/bucket/second", "s3")
                )
                held.release.set()
                return await first, second

        first, second = asyncio.run(two_calls())
        asyncio.run(forwarder.aclose())
    assert first.status_code == 200
    assert second.status_code == 503
    assert b"<Code>SlowDown</Code>" in second.content
    assert b"no free connection" in second.content


def test_a_caller_that_goes_away_stops_the_download() -> None:
    with Upstream("endless") as endless:
        forwarder = Forwarder(table(endless.url), None)
        headers = signed("GET", "/bucket/big", "s3")
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/bucket/big",
            "raw_path": b"/bucket/big",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        chunks: list[int] = []
        gone = asyncio.Event()
        requested: list[bool] = []

        async def receive() -> dict[str, Any]:
            # As an ASGI server does: the request once, then nothing until the caller leaves.
            if not requested:
                requested.append(True)
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                chunks.append(len(message["body"]))
                if len(chunks) == 3:
                    gone.set()  # the caller leaves after a few chunks

        async def exchange() -> None:
            await forwarder.forward(scope, receive, send, "s3", "us-east-1")
            await forwarder.aclose()

        asyncio.run(exchange())
        assert endless.closed.wait(10)
    assert sum(chunks) < 100_000 * 65536


def test_a_verified_s3_body_is_hashed_as_it_streams(upstream: Upstream) -> None:
    verifier = SigV4Verifier(ROOT.access_key, ROOT.secret_key)
    body = b"0123456789" * 100_000
    headers = signed("PUT", "/bucket/big", "s3", body)
    assert headers["X-Amz-Content-SHA256"] == hashlib.sha256(body).hexdigest()
    response = call(gateway(upstream.url, verifier), "PUT", "/bucket/big", headers, body)
    assert response.status_code == 200
    assert upstream.received == [("PUT", "/bucket/big", body)]
