"""Relaying a RESPONSE_STREAM invocation to the client while the function writes it."""

from __future__ import annotations

import logging

from lamina.errors import LaminaError, TooManyRequests
from lamina.function_urls.responses import (
    BAD_GATEWAY,
    JSON_TYPE,
    THROTTLED,
    HttpResponse,
    MalformedResponse,
)
from lamina.function_urls.streaming import (
    STREAM_CONTENT_TYPE,
    LiveInvocation,
    PreludeSplitter,
    prelude_response,
)
from lamina.function_urls.transport import Exchange
from lamina.invoke.engine import Engine
from lamina.invoke.service import InvokeRequest
from lamina.invoke.streaming import error_of
from lamina.sandbox.environment import InvokeOutcome

log = logging.getLogger("lamina.function_urls")


def failure_of(outcome: InvokeOutcome) -> str:
    """`ErrorType: message` of a failed invocation, for log lines."""
    code, details = error_of(outcome)
    return f"{code}: {details}" if details else code


async def relay_stream(engine: Engine, request: InvokeRequest, exchange: Exchange) -> None:
    try:
        live = await LiveInvocation.open(engine, request)
    except TooManyRequests as error:
        await exchange.refuse(THROTTLED, error.message)
        return
    except LaminaError as error:
        await exchange.refuse(BAD_GATEWAY, error.message)
        return
    splitter = PreludeSplitter()
    dropped: list[str] = []
    started = False
    try:
        async for chunk in live.chunks():
            body = splitter.feed(chunk)
            if not splitter.decided:
                continue
            if not started:
                status, headers = prelude_response(splitter.prelude, dropped)
                await exchange.start(status, headers)
                started = True
            if body:
                await exchange.chunk(body)
    except MalformedResponse as why:
        # The function runs on in its own task; its remaining chunks are simply not read.
        live.abandon()
        await exchange.refuse(BAD_GATEWAY, f"the stream's prelude is invalid: {why}")
        return
    if dropped:
        exchange.dropped(dropped)
    outcome = (await live.result()).outcome
    if not started:
        if outcome.function_error:
            await exchange.refuse(BAD_GATEWAY, f"the function failed: {failure_of(outcome)}")
        else:
            await _send_unstarted(exchange, splitter, outcome.payload)
        return
    if outcome.function_error:
        # The status went out long ago: ending without the last chunk is how the client
        # learns that the body is incomplete.
        log.warning(
            "%s: the function failed mid-stream, so the response is cut short: %s",
            exchange.label,
            failure_of(outcome),
        )
        return
    await exchange.chunk(b"", last=True)


async def _send_unstarted(exchange: Exchange, splitter: PreludeSplitter, payload: bytes) -> None:
    """A stream too short to tell whether it began with a prelude, or a function that
    answered in one piece: that answer is the body as it is (there is no mapping in
    RESPONSE_STREAM mode), after a prelude if it starts with one."""
    body = splitter.finish()
    content_type = STREAM_CONTENT_TYPE
    if not body and splitter.prelude is None and payload:
        splitter = PreludeSplitter()
        body = splitter.feed(payload) + splitter.finish()
        content_type = JSON_TYPE
    dropped: list[str] = []
    try:
        status, headers = prelude_response(splitter.prelude, dropped, content_type)
    except MalformedResponse as why:
        await exchange.refuse(BAD_GATEWAY, f"the response's prelude is invalid: {why}")
        return
    await exchange.respond(HttpResponse(status, headers, body, dropped))
