"""What every console page shares: its session (made or required), the CSRF check of
state-changing requests, and rendering a template with the page's common context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from lamina.console.api_calls import ApiError, AwsCalls, KeyPair
from lamina.console.authorization import ConsoleAuthorizer
from lamina.console.deps import ConsoleDeps
from lamina.console.sessions import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    DEVELOPMENT_KEYS,
    SESSION_TTL_S,
    Session,
    SessionStore,
)

PREFIX = "/console"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor"
# The built files `make install` copies in (see frontend/package.json).
VENDOR_FILES = ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css")
_STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# The refusals that mean the session's key pair no longer signs, in each protocol's words.
CREDENTIALS_REFUSED = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "ExpiredToken",
}


@dataclass
class Console:
    """The console's shared parts: built once by `lamina.console.app.build_console`."""

    calls: AwsCalls
    deps: ConsoleDeps
    sessions: SessionStore
    authorizer: ConsoleAuthorizer
    enforced: bool
    account_id: str
    region: str
    templates: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.ChainableUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["urlpart"] = lambda value: quote(str(value), safe="")


@dataclass
class Visit:
    """One request to a console page: the request, its session and how to call the APIs."""

    console: Console
    request: Request
    session: Session
    form: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> KeyPair:
        return self.session.keys or DEVELOPMENT_KEYS

    @property
    def client_ip(self) -> str | None:
        return self.request.client.host if self.request.client else None

    async def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        # A member given as None is left out, as an SDK call leaves out what is not given.
        present = {key: value for key, value in params.items() if value is not None}
        return await self.console.calls.call(service, operation, present, self.keys, self.client_ip)

    def check(self, action: str, function: str | None = None) -> None:
        keys = self.session.keys if self.console.enforced else None
        self.console.authorizer.check(keys, action, function, self.client_ip)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        flash, self.session.flash = self.session.flash, []
        page = self.console.templates.get_template(template).render(
            prefix=PREFIX,
            csrf_token=self.session.csrf_token,
            csrf_field=CSRF_FIELD,
            enforced=self.console.enforced,
            principal=self.session.principal,
            account_id=self.console.account_id,
            region=self.console.region,
            vendor_ready=vendor_ready(),
            flash=flash,
            path=self.request.url.path,
            **context,
        )
        return HTMLResponse(page, status_code=status)

    def redirect(self, path: str, message: str | None = None) -> RedirectResponse:
        if message:
            self.session.flash.append(message)
        return RedirectResponse(PREFIX + path, status_code=303)


PageHandler = Callable[[Visit], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def vendor_ready() -> bool:
    return all((VENDOR / name).is_file() for name in VENDOR_FILES)


def page(console: Console, handler: PageHandler, *, public: bool = False) -> Endpoint:
    """`handler` behind the session and CSRF checks; `public` pages (sign-in) need no
    signed-in session."""

    async def endpoint(request: Request) -> Response:
        found = console.sessions.get(request.cookies.get(COOKIE))
        state_changing = request.method in _STATE_CHANGING
        if found is None and state_changing:
            return PlainTextResponse("Forbidden: no console session", status_code=403)
        fresh = found is None
        session = found or console.sessions.create()
        form: dict[str, str] = {}
        if state_changing:
            form = await _form(request)
            token = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
            if not session.csrf_matches(token):
                return PlainTextResponse("Forbidden: missing or invalid CSRF token", 403)
        if console.enforced and not session.signed_in and not public:
            if request.headers.get("hx-request"):
                response: Response = PlainTextResponse("Sign in first", status_code=401)
                response.headers["HX-Redirect"] = f"{PREFIX}/signin"
            else:
                target = quote(
                    request.url.path + (f"?{request.url.query}" if request.url.query else "")
                )
                response = RedirectResponse(f"{PREFIX}/signin?next={target}", status_code=303)
        else:
            visit = Visit(console, request, session, form)
            try:
                response = await handler(visit)
            except ApiError as error:
                if console.enforced and error.code in CREDENTIALS_REFUSED:
                    # The key pair no longer signs (deactivated, deleted, expired): the
                    # session ends, and the person signs in again.
                    console.sessions.delete(session.session_id)
                    session, fresh = console.sessions.create(), True
                    response = Visit(console, request, session).render(
                        "signin.html", status=401, next=PREFIX, error=error, access_key_id=""
                    )
                else:
                    response = visit.render(
                        "error.html",
                        status=error.status if error.status >= 400 else 500,
                        error=error,
                    )
        if fresh:
            set_session_cookie(response, session)
        response.headers.setdefault("Cache-Control", "no-store")
        # No other site may frame the console (clickjacking a signed-in session's buttons).
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return endpoint


def set_session_cookie(response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.session_id,
        max_age=int(SESSION_TTL_S),
        path=PREFIX,
        httponly=True,
        samesite="strict",
    )


async def _form(request: Request) -> dict[str, str]:
    """A form's text fields (uploads are read by the handlers that take them)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return {}
    form = await request.form(max_part_size=64 << 20)
    return {key: value for key, value in form.items() if isinstance(value, str)}
