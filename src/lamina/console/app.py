"""The console's routes under /console: one table, each page behind the session and CSRF
checks of `lamina.console.web.page`."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles

from lamina.arns import Account
from lamina.blueprints import events as event_templates
from lamina.console.api_calls import AsgiApp, AwsCalls
from lamina.console.authorization import ConsoleAuthorizer
from lamina.console.deps import ConsoleDeps
from lamina.console.pages import (
    async_events,
    code,
    configuration,
    functions,
    monitor,
    signin,
    test,
    triggers,
    tuning,
    versions,
)
from lamina.console.sessions import SessionStore
from lamina.console.web import PREFIX, STATIC, Console, PageHandler, page
from lamina.control.access import Authority
from lamina.control.context import Domain
from lamina.control.test_events import SavedEventService
from lamina.identity.sigv4 import SigV4Verifier
from lamina.invoke.asynchronous.dispatcher import AsyncDispatcher
from lamina.observability.billing import Prices
from lamina.observability.function_figures import FunctionFigures
from lamina.observability.telemetry import Telemetry
from lamina.pollers.supervisor import PollerSupervisor
from lamina.settings import Settings

FUNCTION = "/functions/{name:str}"


@dataclass
class ConsoleApp:
    """The console's ASGI app, and how to bind it to the front door it calls through."""

    console: Console
    router: Router

    def bind(self, app: AsgiApp) -> None:
        self.console.calls.bind(app)


def console_for(
    settings: Settings,
    domain: Domain,
    dispatcher: AsyncDispatcher,
    telemetry: Telemetry,
    verifier: SigV4Verifier | None = None,
    authority: Authority | None = None,
    pollers: PollerSupervisor | None = None,
) -> ConsoleApp:
    """The console over a server's services (what `lamina.api.app` mounts)."""
    deps = ConsoleDeps(
        account=domain.account,
        queue=domain.stores.queue,
        redrive=dispatcher.redrive,
        saved_events=SavedEventService(domain),
        figures=FunctionFigures(telemetry.store),
        event_templates=dict(event_templates.TEMPLATES),
        event_template=event_templates.template,
        prices=Prices.from_settings(settings),
        telemetry=telemetry,
        poller_statuses=pollers.statuses if pollers is not None else dict,
    )
    return build_console(deps, verifier, authority)


def build_console(
    deps: ConsoleDeps,
    verifier: SigV4Verifier | None = None,
    authority: Authority | None = None,
) -> ConsoleApp:
    """`verifier` and `authority`: enforced mode's (None in development mode)."""
    account: Account = deps.account
    console = Console(
        calls=AwsCalls(account.region),
        deps=deps,
        sessions=SessionStore(),
        authorizer=ConsoleAuthorizer(account, verifier, authority),
        enforced=verifier is not None,
        account_id=account.account_id,
        region=account.region,
    )

    def at(path: str, handler: PageHandler, methods: list[str], public: bool = False) -> Route:
        return Route(PREFIX + path, page(console, handler, public=public), methods=methods)

    get, post = ["GET"], ["POST"]
    routes: list[BaseRoute] = [
        Mount(PREFIX + "/static", app=StaticFiles(directory=STATIC, check_dir=False)),
        at("", functions.list_functions, get),
        at("/", functions.list_functions, get),
        at("/signin", signin.show, get, public=True),
        at("/signin", signin.sign_in, post, public=True),
        at("/signout", signin.sign_out, post, public=True),
        at("/functions", functions.create, post),
        at(FUNCTION, code.show, get),
        at(FUNCTION + "/code", code.show, get),
        at(FUNCTION + "/code", code.deploy, post),
        at(FUNCTION + "/test", test.show, get),
        at(FUNCTION + "/test/invoke", test.invoke, post),
        at(FUNCTION + "/test/events", test.save, post),
        at(FUNCTION + "/test/events/{event:str}/delete", test.delete, post),
        at(FUNCTION + "/configuration", configuration.show, get),
        at(FUNCTION + "/configuration", configuration.update_general, post),
        at(FUNCTION + "/configuration/concurrency", configuration.update_concurrency, post),
        at(FUNCTION + "/configuration/async", configuration.update_async, post),
        at(FUNCTION + "/versions", versions.show, get),
        at(FUNCTION + "/versions", versions.publish, post),
        at(FUNCTION + "/aliases", versions.save_alias, post),
        at(FUNCTION + "/triggers", triggers.show, get),
        at(FUNCTION + "/triggers/url", triggers.create_url, post),
        at(FUNCTION + "/triggers/mappings/{uuid:str}", triggers.toggle_mapping, post),
        at(FUNCTION + "/monitor", monitor.show, get),
        at(FUNCTION + "/monitor/data", monitor.data, get),
        at(FUNCTION + "/monitor/logs", monitor.log_tail, get),
        at(FUNCTION + "/async", async_events.show, get),
        at(FUNCTION + "/async/redrive", async_events.redrive, post),
        at(FUNCTION + "/tuning", tuning.show, get),
        at(FUNCTION + "/tuning", tuning.run, post),
    ]
    return ConsoleApp(console, Router(routes=routes))
