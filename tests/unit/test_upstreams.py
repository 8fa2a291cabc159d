"""The service gateway's upstreams: which one serves a service, and how calls are re-signed.

Re-signing is proven against a real HTTP server that records what it receives: the
forwarded request carries a signature made with the upstream's credentials (checked with
Lamina's own SigV4 verifier), and nothing of the caller's credentials.
"""

from __future__ import annotations

import asyncio
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
from lamina.api.gateway import GatewaySetup, signing_scope
from lamina.aws.upstreams import (
    Service,
    ServiceCatalog,
    Unconfigured,
    UpstreamTable,
    endpoint_variable,
    forwarded_headers,
    without_presigning,
)
from lamina.identity.sigv4 import SigV4Verifier
from tests.support.gateway import gateway_door

CALLER = Credentials("ASIACALLERKEY0000000", "caller-secret", "caller-session-token")
UPSTREAM = Credentials("AKIAUPSTREAMKEY00000", "upstream-secret")
S3 = Service("s3", "s3", "rest-xml")


def test_the_setting_is_named_as_botocore_names_it() -> None:
    assert endpoint_variable("s3") == "AWS_ENDPOINT_URL_S3"
    assert endpoint_variable("dynamodb") == "AWS_ENDPOINT_URL_DYNAMODB"
    assert endpoint_variable("secretsmanager") == "AWS_ENDPOINT_URL_SECRETS_MANAGER"
    assert endpoint_variable("dynamodbstreams") == "AWS_ENDPOINT_URL_DYNAMODB_STREAMS"


def test_the_catalog_maps_signing_names_to_botocore_services() -> None:
    catalog = ServiceCatalog()
    assert catalog.service("s3") == Service("s3", "s3", "rest-xml")
    assert catalog.service("sqs").client_name == "sqs"
    assert catalog.service("sns").protocol == "query"
    # Services sharing a signing name are told apart by the target of a JSON call.
    assert catalog.service("dynamodb", "DynamoDB_20120810").client_name == "dynamodb"
    assert catalog.service("dynamodb", "DynamoDBStreams_20120810").client_name == (
        "dynamodbstreams"
    )
    # A signing name that is no client's name.
    assert catalog.service("states", "AWSStepFunctions").client_name == "stepfunctions"
    unknown = catalog.service("no-such-service")
    assert (unknown.client_name, unknown.protocol) == ("no-such-service", "rest-json")


def table(environ: dict[str, str], **kwargs: Any) -> UpstreamTable:
    return UpstreamTable(environ, lambda: UPSTREAM, **kwargs)


def test_the_service_setting_comes_before_the_global_one() -> None:
    environ = {"AWS_ENDPOINT_URL_S3": "http://s3.example:9000", "AWS_ENDPOINT_URL": "http://all"}
    assert table(environ).upstream(S3).url == "http://s3.example:9000"
    sqs = Service("sqs", "sqs", "json")
    assert table(environ).upstream(sqs).url == "http://all"
    assert table(environ).upstream(S3).credentials is UPSTREAM


def test_the_shared_config_file_is_honoured_too() -> None:
    full = {"services": {"local": {"s3": {"endpoint_url": "http://from-config:9000"}}}}
    upstreams = table({}, full_config=full, scoped_config={"services": "local"})
    assert upstreams.upstream(S3).url == "http://from-config:9000"


def test_without_an_upstream_the_message_names_the_setting() -> None:
    with pytest.raises(Unconfigured) as missing:
        table({}).upstream(S3)
    assert str(missing.value) == (
        "No upstream is configured for service s3: set AWS_ENDPOINT_URL_S3 "
        "(or AWS_ENDPOINT_URL) on the Lamina server"
    )


def test_an_upstream_at_laminas_own_address_is_refused_rather_than_looped() -> None:
    upstreams = table(
        {"AWS_ENDPOINT_URL": "http://localhost:9000/"}, own_urls=["http://127.0.0.1:9000"]
    )
    with pytest.raises(Unconfigured, match=r"\(it points at Lamina itself\)$"):
        upstreams.upstream(S3)


def test_the_callers_signing_headers_and_connection_headers_stay_behind() -> None:
    headers = [
        ("Authorization", "AWS4-HMAC-SHA256 Credential=..."),
        ("X-Amz-Security-Token", "token"),
        ("X-Amz-Date", "20260101T000000Z"),
        ("x-amz-content-sha256", "abc"),
        ("Host", "100.64.0.0:9000"),
        ("Connection", "keep-alive"),
        ("Transfer-Encoding", "chunked"),
        ("Expect", "100-continue"),
        ("Content-Type", "text/plain"),
        ("x-amz-meta-colour", "blue"),
    ]
    assert forwarded_headers(headers) == [
        ("Content-Type", "text/plain"),
        ("x-amz-meta-colour", "blue"),
    ]


def test_a_presigned_query_loses_only_its_signing_parameters() -> None:
    query = (
        "versionId=a%2Fb&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=K%2F20260101%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=abc&x-id=GetObject"
    )
    assert without_presigning(query) == "versionId=a%2Fb&x-id=GetObject"
    assert without_presigning("list-type=2") == "list-type=2"
    # S3's older form, whose parameter names are only signing ones beside AWSAccessKeyId.
    older = "AWSAccessKeyId=K&Signature=abc%3D&Expires=1796287560&response-content-type=a"
    assert without_presigning(older) == "response-content-type=a"
    assert without_presigning("Expires=1&Signature=2") == "Expires=1&Signature=2"


def test_the_service_is_read_from_a_header_or_a_presigned_query() -> None:
    header = b"AWS4-HMAC-SHA256 Credential=K/20260101/eu-west-1/s3/aws4_request, SignedHeaders=h"
    assert signing_scope({"headers": [(b"authorization", header)]}) == ("s3", "eu-west-1")
    query = b"X-Amz-Credential=K%2F20260101%2Fus-east-2%2Fsqs%2Faws4_request&X-Amz-Date=1"
    assert signing_scope({"headers": [], "query_string": query}) == ("sqs", "us-east-2")
    assert signing_scope({"headers": [], "query_string": b""}) is None
    older = b"AWSAccessKeyId=K&Signature=abc%3D&Expires=1796287560"
    assert signing_scope({"headers": [], "query_string": older}, "eu-west-3") == (
        "s3",
        "eu-west-3",
    )


# ----------------------------------------------------------------- re-signing, end to end


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict[str, str], bytes]] = []

    def _record(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.received.append((self.command, self.path, dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("x-amz-request-id", "upstream-id")
        self.send_header("Set-Cookie", "session=of-one-caller; Path=/")
        self.send_header("Content-Length", "8")
        self.end_headers()
        self.wfile.write(b"upstream")

    do_PUT = do_POST = do_GET = _record

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what was recorded."""


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str, dict[str, str], bytes]]]]:
    received: list[tuple[str, str, dict[str, str], bytes]] = []
    handler = type("Recorder", (_Recorder,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join()


async def _not_lamina(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("a call for another service reached Lamina's own fronts")


def _gateway(upstream_url: str) -> FrontDoor:
    environ = {"AWS_ENDPOINT_URL_S3": upstream_url, "AWS_ENDPOINT_URL_DYNAMODB": upstream_url}
    setup = GatewaySetup(UpstreamTable(environ, lambda: UPSTREAM), "http://gateway")
    return gateway_door(_not_lamina, setup, served=("lambda",), verifier=None)


def _call(app: Any, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
    """One request to `app` over ASGI, as an HTTP client would send it."""

    async def exchange() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.request(method, path, content=body, headers=headers)

    return asyncio.run(exchange())


def _signed_by_caller(request: AWSRequest, service: str) -> dict[str, str]:
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(CALLER, service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _assert_signed_by_upstream(
    method: str, path: str, headers: dict[str, str], body: bytes, raw_path: str | None = None
) -> None:
    assert "Credential=AKIAUPSTREAMKEY00000/" in headers["Authorization"]
    everything = repr(headers) + path
    for secret in (CALLER.access_key, CALLER.secret_key, CALLER.token):
        assert secret not in everything
    lowered = {name.lower(): value for name, value in headers.items()}
    # The upstream can check it: Lamina's verifier, with the upstream's key pair.
    verifier = SigV4Verifier(UPSTREAM.access_key, UPSTREAM.secret_key)
    verifier.authenticate(method, lowered["host"], raw_path or path, "", lowered, body)


def test_an_s3_call_is_re_signed_with_the_upstreams_credentials(
    recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]],
) -> None:
    url, received = recorder
    body = b"hello through the gateway"
    request = AWSRequest(method="PUT", url="http://gateway/bucket/a-key.txt", data=body)
    request.headers["Content-Type"] = "text/plain"
    headers = _signed_by_caller(request, "s3")
    response = _call(_gateway(url), "PUT", "/bucket/a-key.txt", headers, body)
    assert (response.status_code, response.content) == (200, b"upstream")
    assert response.headers["x-amz-request-id"] == "upstream-id"
    [(method, path, sent, received_body)] = received
    assert (method, path, received_body) == ("PUT", "/bucket/a-key.txt", body)
    # The caller's payload hash travels on, so the upstream checks the body against it.
    lowered = {name.lower(): value for name, value in sent.items()}
    assert lowered["x-amz-content-sha256"] == headers["X-Amz-Content-SHA256"]
    assert lowered["content-type"] == "text/plain"
    _assert_signed_by_upstream(method, path, sent, received_body)


def test_a_json_call_is_re_signed_over_its_body(
    recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]],
) -> None:
    url, received = recorder
    body = b'{"TableName": "t"}'
    request = AWSRequest(method="POST", url="http://gateway/", data=body)
    request.headers["X-Amz-Target"] = "DynamoDB_20120810.DescribeTable"
    request.headers["Content-Type"] = "application/x-amz-json-1.0"
    headers = _signed_by_caller(request, "dynamodb")
    response = _call(_gateway(url), "POST", "/", headers, body)
    assert response.status_code == 200
    [(method, path, sent, received_body)] = received
    assert (method, path, received_body) == ("POST", "/", body)
    assert {k.lower(): v for k, v in sent.items()}["x-amz-target"] == (
        "DynamoDB_20120810.DescribeTable"
    )
    assert "x-amz-security-token" not in {name.lower() for name in sent}
    _assert_signed_by_upstream(method, path, sent, received_body)


def test_calls_for_lamina_services_are_not_forwarded(
    recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]],
) -> None:
    url, received = recorder
    reached: list[str] = []

    async def lamina(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    setup = GatewaySetup(UpstreamTable({"AWS_ENDPOINT_URL": url}, lambda: UPSTREAM), "x")
    gateway = gateway_door(lamina, setup, served=("lambda",), verifier=None)
    request = AWSRequest(method="GET", url="http://gateway/2015-03-31/functions")
    headers = _signed_by_caller(request, "lambda")
    assert _call(gateway, "GET", "/2015-03-31/functions", headers).status_code == 204
    # Unsigned calls are Lamina's too (health checks, function URLs, the console).
    assert _call(gateway, "GET", "/_lamina/health", {}).status_code == 204
    # A function URL is the function's, whatever service its caller signed for.
    request = AWSRequest(method="GET", url="http://gateway/lambda-url/abc/")
    headers = _signed_by_caller(request, "execute-api")
    assert _call(gateway, "GET", "/lambda-url/abc/", headers).status_code == 204
    assert reached == ["/2015-03-31/functions", "/_lamina/health", "/lambda-url/abc/"]
    assert received == []


def test_a_post_goes_upstream_only_when_signed_or_presigned_for_another_service(
    recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]],
) -> None:
    url, received = recorder
    reached: list[str] = []

    async def lamina(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    setup = GatewaySetup(UpstreamTable({"AWS_ENDPOINT_URL": url}, lambda: UPSTREAM), "x")
    door = gateway_door(lamina, setup, served=("lambda",))
    invocations = "/2015-03-31/functions/f/invocations"
    request = AWSRequest(method="POST", url=f"http://gateway{invocations}", data=b"{}")
    assert (
        _call(door, "POST", invocations, _signed_by_caller(request, "lambda"), b"{}").status_code
        == 204
    )
    # Unsigned (as a health probe or a test harness may call): Lamina's.
    assert _call(door, "POST", invocations, {}, b"{}").status_code == 204
    # The same path signed for S3 (a bucket may be named 2015-03-31) goes upstream.
    request = AWSRequest(method="POST", url=f"http://gateway{invocations}", data=b"{}")
    assert (
        _call(door, "POST", invocations, _signed_by_caller(request, "s3"), b"{}").status_code == 200
    )
    # So does a call presigned in its query, with no Authorization header.
    presigned = (
        "/bucket/key?uploads&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLE%2F20261203%2Fus-east-1%2Fs3%2Faws4_request"
    )
    _call(door, "POST", presigned, {}, b"")
    assert reached == [invocations, invocations]
    (s3_method, s3_path, _, _), (_, presigned_path, _, _) = received
    assert (s3_method, s3_path) == ("POST", invocations)
    assert presigned_path.startswith("/bucket/key")


def test_an_unconfigured_service_gets_an_error_in_its_own_protocol() -> None:
    setup = GatewaySetup(UpstreamTable({}, lambda: None), "x")
    gateway = gateway_door(_not_lamina, setup, served=(), verifier=None)
    request = AWSRequest(method="GET", url="http://gateway/bucket?list-type=2")
    s3 = _call(gateway, "GET", "/bucket?list-type=2", _signed_by_caller(request, "s3"))
    request = AWSRequest(method="POST", url="http://gateway/", data=b"Action=ListTopics")
    request.headers["Content-Type"] = "application/x-www-form-urlencoded"
    sns_headers = _signed_by_caller(request, "sns")
    sns = _call(gateway, "POST", "/", sns_headers, b"Action=ListTopics")
    assert s3.status_code == 501
    assert s3.headers["content-type"] == "application/xml"
    assert b"<Code>NotImplemented</Code>" in s3.content
    assert b"set AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL)" in s3.content
    assert sns.status_code == 501
    assert sns.content.startswith(b"<ErrorResponse><Error><Type>Receiver</Type>")
    assert b"AWS_ENDPOINT_URL_SNS" in sns.content


def test_a_virtual_host_bucket_is_found_before_lamina_host_names() -> None:
    upstreams = table({}, own_urls=["http://127.0.0.1:9000", "http://100.64.0.0:9000"])
    assert upstreams.virtual_host_bucket("my.bucket.localhost:9000") == "my.bucket"
    assert upstreams.virtual_host_bucket("photos.100.64.0.0:9000") == "photos"
    assert upstreams.virtual_host_bucket("127.0.0.1:9000") is None
    assert upstreams.virtual_host_bucket("localhost:9000") is None
    assert upstreams.virtual_host_bucket("photos.example.com") is None


def test_a_virtual_host_call_reaches_the_upstream_path_style(
    recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]],
) -> None:
    url, received = recorder
    upstreams = UpstreamTable(
        {"AWS_ENDPOINT_URL_S3": url}, lambda: UPSTREAM, own_urls=["http://localhost:9000"]
    )
    gateway = gateway_door(_not_lamina, GatewaySetup(upstreams, "x"), (), verifier=None)
    request = AWSRequest(method="GET", url="http://photos.localhost:9000/cat.jpg")
    headers = {**_signed_by_caller(request, "s3"), "Host": "photos.localhost:9000"}
    assert _call(gateway, "GET", "/cat.jpg", headers).status_code == 200
    [(method, path, sent, _)] = received
    assert (method, path) == ("GET", "/photos/cat.jpg")
    _assert_signed_by_upstream(method, path, sent, b"")


def test_no_cookie_of_one_call_is_sent_with_the_next(
    recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]],
) -> None:
    url, received = recorder
    gateway = _gateway(url)

    async def two_calls() -> None:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            for key in ("first", "second"):
                request = AWSRequest(method="GET", url=f"http://gateway/bucket/{key}")
                await client.get(f"/bucket/{key}", headers=_signed_by_caller(request, "s3"))
                client.cookies.clear()  # the caller keeps none either

    asyncio.run(two_calls())
    assert [path for _, path, _, _ in received] == ["/bucket/first", "/bucket/second"]
    assert all("cookie" not in {name.lower() for name in sent} for _, _, sent, _ in received)


def test_an_unsigned_trailer_upload_passes_through_as_sent(
    recorder: tuple[str, list[tuple[str, str, dict[str, str], bytes]]],
) -> None:
    url, received = recorder
    # aws-chunked framing with a checksum trailer, as SDKs send over HTTPS.
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    request = AWSRequest(method="PUT", url="http://gateway/bucket/trailer", data=body)
    # What botocore's flexible checksums set for a trailer; the signer then signs the body
    # as STREAMING-UNSIGNED-PAYLOAD-TRAILER.
    request.context["checksum"] = {"request_algorithm": {"in": "trailer"}}
    request.headers["Content-Encoding"] = "aws-chunked"
    request.headers["X-Amz-Decoded-Content-Length"] = "5"
    request.headers["X-Amz-Trailer"] = "x-amz-checksum-crc32"
    S3SigV4Auth(CALLER, "s3", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    assert _call(_gateway(url), "PUT", "/bucket/trailer", headers, body).status_code == 200
    [(method, path, sent, received_body)] = received
    assert received_body == body
    lowered = {name.lower(): value for name, value in sent.items()}
    assert lowered["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert lowered["content-encoding"] == "aws-chunked"
    assert lowered["x-amz-decoded-content-length"] == "5"
    _assert_signed_by_upstream(method, path, sent, received_body)
