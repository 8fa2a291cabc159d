"""Which requests Invoke's fast path takes, and which it leaves to the generic pipeline.

The integration test (tests/integration/test_fast_invoke.py) shows both paths answer alike;
this one shows the fast path really serves the common calls, and stays away from what it
does not decode itself.
"""

from __future__ import annotations

import botocore.session
import pytest
from starlette.responses import Response

from lamina.api.fast_invoke import FastCall, InvokeFastPath
from lamina.api.http_protocol import http_response
from lamina.arns import Account
from lamina.errors import LaminaError

PATH = b"/2015-03-31/functions/my-function/invocations"
SIGNED = (
    b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/lambda/aws4_request, "
    b"SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64
)


def _refuse(error: LaminaError, request_id: str) -> Response:
    raise AssertionError("claim never answers")


def fast_path(gateway: bool = True) -> InvokeFastPath:
    model = botocore.session.get_session().get_service_model("lambda")
    return InvokeFastPath(
        model.operation_model("Invoke"),
        engine=None,  # type: ignore[arg-type]  # claim never invokes
        account=Account("000000000000", "us-east-1"),
        error_response=_refuse,
        verifier=None,
        audit=None,
        gateway=gateway,
    )


def claim(url: bytes = PATH, method: bytes = b"POST", **headers: bytes | str) -> FastCall | None:
    listed = [(b"host", b"127.0.0.1:9000"), (b"content-length", b"2")]
    for name, value in headers.items():
        listed.append(
            (
                name.replace("_", "-").lower().encode(),
                value if isinstance(value, bytes) else value.encode(),
            )
        )
    return fast_path().claim(method, url, listed)


def test_a_plain_invoke_and_its_members_are_taken() -> None:
    found = claim(
        PATH + b"?Qualifier=live",
        authorization=SIGNED,
        x_amz_date="20261203T120000Z",
        x_amz_log_type="Tail",
        x_amz_client_context="e30=",
        x_amz_invocation_type="RequestResponse",
        x_amzn_trace_id="Root=1-5759e988-bd862e3fe1be46a994272793",
        user_agent="Boto3/1.40",
    )
    assert found is not None
    assert found.function_name == "my-function"
    assert found.members == {
        "LogType": "Tail",
        "ClientContext": "e30=",
        "InvocationType": "RequestResponse",
        "Qualifier": "live",
    }
    assert (found.trace_header, found.user_agent) == (
        "Root=1-5759e988-bd862e3fe1be46a994272793",
        "Boto3/1.40",
    )


def test_a_percent_encoded_arn_is_decoded_as_the_router_decodes_it() -> None:
    found = claim(
        b"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/invocations"
    )
    assert found is not None
    assert found.function_name == "arn:aws:lambda:us-east-1:000000000000:function:f"


@pytest.mark.parametrize(
    ("url", "method", "headers"),
    [
        (PATH, b"GET", {}),
        (b"/2015-03-31/functions/f/response-streaming-invocations", b"POST", {}),
        (b"/2014-11-13/functions/f/invoke-async/", b"POST", {}),
        (PATH + b"?Qualifier=1&Other=2", b"POST", {}),
        (PATH + b"?X-Amz-Credential=AKID%2F20261203%2Fus-east-1%2Fs3%2Faws4_request", b"POST", {}),
        (PATH, b"POST", {"x_amz_invocation_type": "Event"}),
        (PATH, b"POST", {"x_amz_invocation_type": "DryRun"}),
        (PATH, b"POST", {"x_amz_tenant_id": "t-1"}),
        (PATH, b"POST", {"x_amz_target": "AWSEvents.PutEvents"}),
        (PATH, b"POST", {"x_forwarded_for": "10.0.0.1"}),
        (PATH, b"POST", {"expect": "100-continue"}),
        (PATH, b"POST", {"transfer_encoding": "chunked"}),
        (PATH, b"POST", {"authorization": SIGNED.replace(b"/lambda/", b"/s3/").decode()}),
        (PATH, b"POST", {"content_length": str(6 * 1024 * 1024 + 1)}),
    ],
)
def test_what_the_fast_path_does_not_decode_goes_the_generic_way(
    url: bytes, method: bytes, headers: dict[str, str]
) -> None:
    listed = [(b"host", b"127.0.0.1:9000")]
    if "content_length" not in headers:
        listed.append((b"content-length", b"2"))
    listed += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    assert fast_path().claim(method, url, listed) is None


def test_a_function_url_host_and_a_missing_length_go_the_generic_way() -> None:
    path = fast_path()
    url_host = [(b"host", b"abc.lambda-url.us-east-1.localhost"), (b"content-length", b"2")]
    assert path.claim(b"POST", PATH, url_host) is None
    assert path.claim(b"POST", PATH, [(b"host", b"x")]) is None


def test_two_signatures_go_the_generic_way_which_refuses_them() -> None:
    twice = [(b"content-length", b"2"), (b"authorization", SIGNED), (b"authorization", SIGNED)]
    assert fast_path().claim(b"POST", PATH, twice) is None
    dates = [(b"content-length", b"2"), (b"x-amz-date", b"1"), (b"x-amz-date", b"2")]
    assert fast_path().claim(b"POST", PATH, dates) is None


def test_without_a_gateway_another_services_signature_is_the_pipelines_to_refuse() -> None:
    s3 = [(b"content-length", b"2"), (b"authorization", SIGNED.replace(b"/lambda/", b"/s3/"))]
    assert fast_path(gateway=False).claim(b"POST", PATH, s3) is not None


def test_a_response_is_written_as_uvicorn_writes_one() -> None:
    written = http_response(200, [(b"date", b"today"), (b"content-length", b"2")], b"{}", False)
    assert written == b"HTTP/1.1 200 OK\r\ndate: today\r\ncontent-length: 2\r\n\r\n{}"
    closing = http_response(429, [], b"", True)
    assert closing == b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\n\r\n"


def test_a_fragment_is_left_out_as_the_generic_path_leaves_it_out() -> None:
    found = claim(PATH + b"?Qualifier=live#section")
    assert found is not None
    assert (found.members["Qualifier"], found.query) == ("live", "Qualifier=live")
