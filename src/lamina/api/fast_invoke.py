"""Invoke's fast path: a synchronous Invoke served straight from the parsed HTTP request.

The generic pipeline (`lamina.api.pipeline`) finds and decodes every operation from its
botocore model, through Starlette's request and response objects and ASGI's messages. For
the one call a warm function lives on, that machinery is most of the platform's own CPU, so
the HTTP protocol (`lamina.api.http_protocol`) offers each request to `InvokeFastPath.claim`
once its headers are parsed. A claimed request is answered here, with the same steps in the
same order and the same bytes on the wire: signature, validation, authorisation, the call,
the rest-json encoding, AWS's errors, the audit record.

Claimed is only what needs nothing else: `POST /2015-03-31/functions/<name>/invocations`,
`RequestResponse` (or no invocation type), no query but `Qualifier`, a declared body within
the synchronous limit, and none of the headers that change a request's meaning elsewhere
(another service's signature or target, proxy headers, `Expect`, chunked bodies, members
this path does not read). Everything else takes the generic path, unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from botocore.model import OperationModel
from starlette.responses import Response

from lamina.api.asgi import LAMBDA_SCOPE, URL_HOST_MARK
from lamina.api.invoke import SYNC_REQUEST_MAX_BYTES, invoke_response, sync_request
from lamina.api.validation import validate
from lamina.arns import Account, parse_function_ref
from lamina.audit.record import ApiCall
from lamina.audit.trail import AuditTrail
from lamina.errors import LaminaError, ServiceError
from lamina.identity.sigv4 import SigV4Verifier
from lamina.invoke.engine import Engine
from lamina.request_ids import new_request_id
from lamina.sandbox.after_answer import AfterAnswer

log = logging.getLogger("lamina.api")

OPERATION = "Invoke"
# The model's requestUri, as the rest-json router compiles it (one label, no slash in it).
_INVOKE_PATH = re.compile(rb"^/2015-03-31/functions/([^/]+)/invocations/?$")
# Request headers this path reads; any other `x-amz-*` one is a member it does not decode
# (X-Amz-Tenant-Id, X-Amz-Durable-Execution-Name...) and goes the generic way.
_MEMBER_HEADERS = {
    b"x-amz-invocation-type": "InvocationType",
    b"x-amz-log-type": "LogType",
    b"x-amz-client-context": "ClientContext",
}
_SIGNING_HEADERS = {b"x-amz-date", b"x-amz-security-token", b"x-amz-content-sha256"}
# Headers whose presence sends a request the generic way: the front door routes on the
# target, uvicorn's proxy-headers middleware rewrites the client from the forwarding ones,
# and the protocol answers `Expect` and reads chunked bodies itself.
_GENERIC_ONLY = {
    b"x-amz-target",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"forwarded",
    b"expect",
    b"transfer-encoding",
}
# Validated member combinations remembered at once (names come from clients: a bound).
_VALIDATED_MAX = 4096


@dataclass(slots=True)
class FastCall:
    """What a claimed request said, from its request line and headers."""

    function_name: str
    query: str
    raw_path: str
    members: dict[str, str]
    trace_header: str | None
    user_agent: str | None
    headers: Sequence[tuple[bytes, bytes]]


class InvokeFastPath:
    def __init__(
        self,
        operation: OperationModel,
        engine: Engine,
        account: Account,
        error_response: Callable[[LaminaError, str], Response],
        verifier: SigV4Verifier | None,
        audit: AuditTrail | None,
        gateway: bool,
    ) -> None:
        """`error_response` is the Lambda front's own; `gateway` says whether calls signed
        for other services are forwarded (they are then never claimed)."""
        self._operation = operation
        self._engine = engine
        self._account = account
        self._error_response = error_response
        self._verifier = verifier
        self._audit = audit if audit is not None and audit.records(OPERATION) else None
        self._gateway = gateway
        self._validated: set[tuple[str | None, ...]] = set()

    def claim(
        self, method: bytes, url: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> FastCall | None:
        """The call, when this path serves the request; None sends it the generic way."""
        if method != b"POST":
            return None
        # A fragment is the client's own (httptools drops it for the generic path).
        raw_path, _, query = url.partition(b"#")[0].partition(b"?")
        found = _INVOKE_PATH.match(raw_path)
        if found is None:
            return None
        members: dict[str, str] = {}
        trace = agent = authorization = None
        length = -1
        signing_seen: set[bytes] = set()
        for name, value in headers:
            member = _MEMBER_HEADERS.get(name)
            if member is not None:
                members[member] = value.decode("latin-1")
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"authorization":
                if authorization is not None:
                    return None  # two signatures: the generic path refuses them
                authorization = value
            elif name in _SIGNING_HEADERS:
                if name in signing_seen:
                    return None
                signing_seen.add(name)
            elif name == b"x-amzn-trace-id":
                trace = value.decode("latin-1")
            elif name == b"user-agent":
                agent = value.decode("latin-1")
            elif name == b"host":
                if URL_HOST_MARK in value:
                    return None  # a function URL's host
            elif name in _GENERIC_ONLY or name.startswith(b"x-amz-"):
                return None
        if not 0 <= length <= SYNC_REQUEST_MAX_BYTES:
            return None
        if members.get("InvocationType", "RequestResponse") != "RequestResponse":
            return None
        if self._gateway and authorization is not None and LAMBDA_SCOPE not in authorization:
            return None  # signed for another service: the gateway's, or refused
        text_query = query.decode("latin-1")
        if text_query:
            parsed = parse_qs(text_query, keep_blank_values=True)
            if parsed.keys() != {"Qualifier"}:
                return None
            members["Qualifier"] = parsed["Qualifier"][0]
        return FastCall(
            function_name=unquote(found.group(1).decode("latin-1")),
            query=text_query,
            raw_path=raw_path.decode("latin-1"),
            members=members,
            trace_header=trace,
            user_agent=agent,
            headers=headers,
        )

    async def respond(
        self, call: FastCall, body: bytes, client_host: str | None, after: AfterAnswer
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """(status, headers, body) of the response to a claimed request, as the generic
        path answers it; the protocol adds its own headers (date, connection), and runs
        `after` once it has written the answer."""
        request_id = new_request_id()
        record = ApiCall("lambda") if self._audit is not None else None
        try:
            status, headers, payload = await self._serve(
                call, body, client_host, request_id, record, after
            )
            headers.append((b"x-amzn-requestid", request_id.encode()))
        except LaminaError as error:
            status, headers, payload = self._refusal(error, request_id, record)
        except Exception:
            log.exception("request %s failed", request_id)
            failure = ServiceError(f"An internal error occurred. Request id: {request_id}")
            status, headers, payload = self._refusal(failure, request_id, record)
        if self._audit is not None and record is not None:
            self._audit.record_call(record, client_host, call.user_agent, request_id, status)
        return status, headers, payload

    async def _serve(
        self,
        call: FastCall,
        body: bytes,
        client_host: str | None,
        request_id: str,
        record: ApiCall | None,
        after: AfterAnswer,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        params: dict[str, Any] = {"FunctionName": call.function_name}
        if record is not None:
            record.operation, record.params = OPERATION, dict(params)
        signer = None
        if self._verifier is not None:
            # As the generic path reads them: by lower-case name, the last of a repeated one.
            signed = {
                name.decode("latin-1"): value.decode("latin-1") for name, value in call.headers
            }
            signer = self._verifier.authenticate(
                "POST", signed.get("host", ""), call.raw_path, call.query, signed, body
            )
            if record is not None:
                record.verified, record.caller = True, signer.caller.access_key_id
        members = call.members
        params.update(members)
        params["Payload"] = body
        if record is not None:
            record.params = params
        self._validate(params, members)
        authorizer = self._verifier.authorizer if self._verifier is not None else None
        if signer is not None and authorizer is not None:
            authorizer.authorize("lambda", OPERATION, params, signer, client_host)
        ref = parse_function_ref(call.function_name, self._account, OPERATION)
        tail = members.get("LogType") == "Tail"
        request = sync_request(
            ref,
            members.get("Qualifier"),
            body,
            members.get("ClientContext"),
            call.trace_header,
            request_id,
            OPERATION,
            # A log tail holds the END and REPORT lines: the answer waits for them.
            after_answer=None if tail else after,
        )
        result = await self._engine.invoke(request)
        answer = invoke_response(result, tail)
        headers = [(b"x-amz-executed-version", answer["ExecutedVersion"].encode("latin-1"))]
        if "FunctionError" in answer:
            headers.append((b"x-amz-function-error", answer["FunctionError"].encode("latin-1")))
        if "LogResult" in answer:
            headers.append((b"x-amz-log-result", answer["LogResult"].encode("latin-1")))
        payload: bytes = answer["Payload"]
        headers.append((b"content-length", str(len(payload)).encode()))
        return 200, headers, payload

    def _validate(self, params: dict[str, Any], members: dict[str, str]) -> None:
        """The model's checks, run once per combination of the members they read (the
        payload and the client context have no constraints in the model)."""
        key = (
            params["FunctionName"],
            members.get("Qualifier"),
            members.get("InvocationType"),
            members.get("LogType"),
        )
        if key in self._validated:
            return
        validate(self._operation.input_shape, params)
        if len(self._validated) >= _VALIDATED_MAX:
            self._validated.clear()
        self._validated.add(key)

    def _refusal(
        self, error: LaminaError, request_id: str, record: ApiCall | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if record is not None:
            record.error = error.code
        response = self._error_response(error, request_id)
        return response.status_code, list(response.raw_headers), bytes(response.body)
