"""A front door whose every own front is one ASGI app, with the service gateway before it:
what the gateway's tests drive, to see which calls reach Lamina and which go upstream."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from lamina.api.asgi import FrontDoor, Fronts
from lamina.api.gateway import GatewaySetup, ServiceGateway
from lamina.identity.sigv4 import SigV4Verifier


class _Answer:
    """An endpoint's "response" that lets `app` answer the request itself."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def gateway_door(
    app: ASGIApp,
    setup: GatewaySetup,
    served: Iterable[str],
    verifier: SigV4Verifier | None = None,
) -> FrontDoor:
    """The front door with `app` as each of Lamina's fronts and the gateway before them."""

    async def lambda_api(request: Request) -> _Answer:
        return _Answer(app)

    fronts = Fronts(lambda_api=lambda_api, internal=app, function_urls=app)  # type: ignore[arg-type]
    return FrontDoor(fronts, ServiceGateway(setup, served, verifier))
