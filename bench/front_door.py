"""What the service gateway costs a warm Invoke at the front door.

Routes a Lambda-signed `POST /2015-03-31/functions/<name>/invocations`, as boto3 sends it,
through `FrontDoor` in process, with the gateway configured and without, to an endpoint that
answers at once; the difference is what forwarding support adds to every Invoke. Then the
same for a call the gateway forwards, up to the point of forwarding (S3 `GetObject`),
to show what the decision costs the calls that need it.

Run with `.venv/bin/python -m bench.front_door`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.requests import Request
from starlette.responses import Response

from lamina.api.app import LAMINA_SIGNING_NAMES
from lamina.api.asgi import FrontDoor, Fronts
from lamina.api.gateway import GatewaySetup, ServiceGateway
from lamina.aws.upstreams import UpstreamTable

ROUNDS = 50_000
_ANSWER = Response(b"{}", media_type="application/json")


def _headers(service: str) -> list[tuple[bytes, bytes]]:
    credential = f"AKIAEXAMPLE/20261203/us-east-1/{service}/aws4_request"
    return [
        (b"host", b"localhost:9000"),
        (b"accept-encoding", b"identity"),
        (b"user-agent", b"Boto3/1.40.0 md/Botocore#1.40.0 ua/2.1 os/linux lang/python#3.11.7"),
        (b"x-amz-date", b"20261203T120000Z"),
        (
            b"x-amz-content-sha256",
            hashlib.sha256(b"{}").hexdigest().encode(),
        ),
        (
            b"authorization",
            f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;x-amz-date, "
            "Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".encode(),
        ),
        (b"content-length", b"2"),
    ]


def _scope(method: str, path: str, service: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": _headers(service),
    }


async def _lambda_api(request: Request) -> Response:
    return _ANSWER


async def _internal(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not routed here")


class _Counting(ServiceGateway):
    """The gateway, stopping where it would forward (no upstream is involved)."""

    async def forward(self, scope: Any, receive: Any, send: Any, destination: Any) -> None:
        return None


def _door(gateway: bool) -> FrontDoor:
    setup = GatewaySetup(UpstreamTable({}, lambda: None), "http://gateway")
    fronts = Fronts(lambda_api=_lambda_api, internal=_internal)
    return FrontDoor(fronts, _Counting(setup, LAMINA_SIGNING_NAMES, None) if gateway else None)


async def _per_call_us(door: FrontDoor, scope: dict[str, Any], rounds: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        return None

    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(rounds):
            await door(scope, receive, send)
        best = min(best, time.process_time() - start)
    return best / rounds * 1e6


async def measure(rounds: int = ROUNDS) -> dict[str, float]:
    invoke = _scope("POST", "/2015-03-31/functions/bench/invocations", "lambda")
    s3 = _scope("GET", "/bucket/key", "s3")
    plain, gated = _door(False), _door(True)
    # Alternate, so that drift in the machine's speed falls on both alike.
    without = min([await _per_call_us(plain, invoke, rounds) for _ in range(3)])
    with_gateway = min([await _per_call_us(gated, invoke, rounds) for _ in range(3)])
    without = min(without, await _per_call_us(plain, invoke, rounds))
    return {
        "invoke, no gateway us": without,
        "invoke, gateway configured us": with_gateway,
        "added per invoke us": with_gateway - without,
        "forwarding decision (S3 call) us": await _per_call_us(gated, s3, rounds),
    }


def main() -> None:
    for name, value in asyncio.run(measure()).items():
        print(f"{name:>34}: {value:7.3f}")


if __name__ == "__main__":
    main()
