"""The console's calls to Lamina's own AWS APIs, answered in-process by the front door.

Each console action is serialised as the AWS SDK would (botocore's serialisers), signed
with the signed-in person's key pair, and handed to the same ASGI application that serves
SDK calls. So a console action is verified, authorised, validated and audited exactly as an
SDK call is, with no loopback socket and no second copy of any rule.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import HeadersDict, create_request_object, prepare_request_dict
from botocore.credentials import Credentials
from botocore.exceptions import ParamValidationError
from botocore.model import ServiceModel
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

AsgiApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]

# The host the in-process requests name (signed, so it only has to be the same both ways).
CONSOLE_HOST = "console.lamina.internal"
USER_AGENT = "lamina-console"
# Protocols the console speaks per service: CloudWatch offers CBOR, JSON and query; JSON
# reads best when debugging.
_PROTOCOLS = {"cloudwatch": "json"}


class ApiError(Exception):
    """An API call's refusal, as AWS shapes it: the code, the message and the status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class KeyPair:
    """Whose signature the console's calls carry."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class AwsCalls:
    """Makes AWS API calls through the front door, in-process."""

    def __init__(self, region: str) -> None:
        self._region = region
        self._session = botocore.session.get_session()
        self._models: dict[str, ServiceModel] = {}
        # Bound once the front door exists (it mounts the console, so it is built after it).
        self._app: AsgiApp | None = None

    def bind(self, app: AsgiApp) -> None:
        self._app = app

    def _model(self, service: str) -> ServiceModel:
        model = self._models.get(service)
        if model is None:
            model = self._session.get_service_model(service)
            self._models[service] = model
        return model

    async def call(
        self,
        service: str,
        operation: str,
        params: dict[str, Any],
        keys: KeyPair,
        client_ip: str | None = None,
    ) -> dict[str, Any]:
        """The operation's parsed output; raises ApiError with the API's own refusal."""
        assert self._app is not None, "bind() the front door first"
        model = self._model(service)
        op = model.operation_model(operation)
        protocol = _PROTOCOLS.get(service, model.protocol)
        serializer = create_serializer(protocol, include_validation=True)
        try:
            request_dict = serializer.serialize_to_request(params, op)
        except ParamValidationError as error:  # a form value of the wrong type
            raise ApiError("ValidationException", str(error), 400) from error
        prepare_request_dict(request_dict, endpoint_url=f"http://{CONSOLE_HOST}")
        request_dict["headers"]["User-Agent"] = USER_AGENT
        request = create_request_object(request_dict)
        credentials = Credentials(keys.access_key_id, keys.secret_access_key, keys.session_token)
        SigV4Auth(credentials, model.signing_name or service, self._region).add_auth(request)
        prepared = request.prepare()
        status, headers, body = await self._send(
            prepared.method, prepared.url, dict(prepared.headers.items()), prepared.body, client_ip
        )
        parser = create_parser(protocol)
        parsed: dict[str, Any] = parser.parse(
            {"status_code": status, "headers": HeadersDict(headers), "body": body},
            op.output_shape,
        )
        payload = op.output_shape.serialization.get("payload") if op.output_shape else None
        if payload and status < 300 and op.has_streaming_output:
            parsed[payload] = body  # Invoke's Payload: the bytes as sent, never decoded
        if status >= 300 or "Error" in parsed:
            shape = parsed.get("Error") or {}
            code = str(shape.get("Code") or _error_type(headers) or "ServiceException")
            message = str(shape.get("Message") or _message(body) or f"HTTP {status}")
            raise ApiError(code, message, status)
        parsed.pop("ResponseMetadata", None)
        return parsed

    async def download(self, url: str) -> bytes:
        """GET one of Lamina's own links (a function's code, from GetFunction) in-process."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        status, _, body = await self._send("GET", f"http://{CONSOLE_HOST}{target}", {}, b"", None)
        if status != 200:
            raise ApiError("ServiceException", body.decode(errors="replace")[:200], status)
        return body

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | str | None,
        client_ip: str | None,
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._app is not None
        data = body.encode() if isinstance(body, str) else (body or b"")
        path, _, query = url.split(CONSOLE_HOST, 1)[1].partition("?")
        # An HTTP client sends the Host the signature covers (from the URL); so do we.
        headers = {"host": CONSOLE_HOST, **{k.lower(): str(v) for k, v in headers.items()}}
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path or "/"),
            "raw_path": (path or "/").encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": (client_ip or "127.0.0.1", 0),
            "server": (CONSOLE_HOST, 80),
        }
        sent = False
        # A disconnect only once the response is complete, as a server reports it: a
        # response that listens for one (streaming, files) must not stop at the start.
        finished = anyio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await finished.wait()
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}

        answer: dict[str, Any] = {"status": 500, "headers": {}, "body": []}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = {
                    k.decode().lower(): v.decode() for k, v in message.get("headers", [])
                }
            elif message["type"] == "http.response.body":
                answer["body"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    finished.set()

        try:
            await self._app(scope, receive, send)
        finally:
            finished.set()
        return answer["status"], answer["headers"], b"".join(answer["body"])


def _error_type(headers: dict[str, str]) -> str | None:
    value = headers.get("x-amzn-errortype")
    return value.split(":", 1)[0] if value else None


def _message(body: bytes) -> str | None:
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return None
    if isinstance(document, dict):
        found = document.get("message") or document.get("Message")
        return str(found) if found else None
    return None
