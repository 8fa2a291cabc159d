"""What the fronts need of the data plane: `InvokeService` on one node, or in a cluster
`lamina.cluster.router.RoutedEngine`, which sends each invocation to a worker node."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from lamina.arns import FunctionRef
from lamina.control.functions import Resolved

if TYPE_CHECKING:
    from lamina.invoke.service import InvokeRequest, InvokeResult, StreamStart


class Engine(Protocol):
    def resolve(self, ref: FunctionRef, qualifier: str | None) -> Resolved:
        """The function version or alias `ref` names, or raise ResourceNotFound."""
        ...

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        """Admit and run one invocation; raises what admission raises (throttled, not found)."""
        ...

    async def open_stream(
        self, request: InvokeRequest, chunks: asyncio.Queue[bytes | None]
    ) -> StreamStart:
        """Admit an invocation whose response is streamed, raising what admission raises
        before any byte is sent, and start it: `chunks` receives what it streams."""
        ...
