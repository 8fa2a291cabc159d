"""Sign-in and sign-out (enforced mode).

The key pair is checked by calling STS GetCallerIdentity with it through the API: verified
exactly as an SDK's signature is (root key, IAM users' active keys, STS sessions), and the
caller's ARN comes back. A successful sign-in gets a new session id (no fixation).
"""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from lamina.console.api_calls import ApiError, KeyPair
from lamina.console.sessions import COOKIE
from lamina.console.web import PREFIX, Visit, set_session_cookie


async def show(visit: Visit) -> Response:
    if not visit.console.enforced:
        return visit.redirect("", "Development mode: no sign-in needed.")
    return visit.render(
        "signin.html",
        next=_next(visit.request.query_params.get("next")),
        error=None,
        access_key_id="",
    )


async def sign_in(visit: Visit) -> Response:
    form = visit.form
    keys = KeyPair(
        form.get("access_key_id", "").strip(),
        form.get("secret_access_key", "").strip(),
        form.get("session_token", "").strip() or None,
    )
    try:
        identity = await visit.console.calls.call(
            "sts", "GetCallerIdentity", {}, keys, visit.client_ip
        )
    except ApiError as error:
        return visit.render(
            "signin.html",
            status=403,
            next=_next(form.get("next")),
            error=error,
            access_key_id=keys.access_key_id,
        )
    sessions = visit.console.sessions
    sessions.delete(visit.session.session_id)
    session = sessions.create(keys, str(identity.get("Arn", "")))
    response = RedirectResponse(_next(form.get("next")), status_code=303)
    set_session_cookie(response, session)
    return response


async def sign_out(visit: Visit) -> Response:
    visit.console.sessions.delete(visit.session.session_id)
    response = RedirectResponse(f"{PREFIX}/signin", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def _next(target: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if target and target.startswith(PREFIX) and not target.startswith("//"):
        return target
    return PREFIX
