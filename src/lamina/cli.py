"""The `lamina` command."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from lamina.commands import audit as audit_cli
from lamina.commands import cluster as cluster_command
from lamina.commands import cost as cost_command
from lamina.commands import events_redrive
from lamina.commands import init as init_command
from lamina.commands import mappings as mappings_command
from lamina.commands import schedules as schedules_cli
from lamina.commands import top as top_command
from lamina.commands import tune as tune_command
from lamina.dev import command as dev_command
from lamina.observability import tail as logs_cli
from lamina.sandbox.api import SandboxBackend
from lamina.sandbox.select import IsolationUnavailable
from lamina.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # Lazy: other subcommands should not pay for the server's import.

    from lamina.control.networks import NetworksFileError
    from lamina.server import StoreUnavailable, build_server, settle_heap

    settings = replace(
        settings,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        data_dir=Path(args.data_dir) if args.data_dir else settings.data_dir,
        insecure=args.insecure or settings.insecure,
        store_url=args.store or settings.store_url,
        redis_url=args.redis or settings.redis_url,
        worker=settings.worker and not args.no_worker,
        advertise_url=args.advertise or settings.advertise_url,
    )
    try:
        settings.check()
    except ValueError as error:
        print(f"lamina: {error}", file=sys.stderr)
        return 2
    try:
        app = build_server(settings)
    except IsolationUnavailable as error:
        print(f"lamina: {error} (see `lamina doctor`)", file=sys.stderr)
        return 2
    except (StoreUnavailable, NetworksFileError) as error:
        print(f"lamina: {error}", file=sys.stderr)
        return 2
    from lamina.api.http_protocol import CoalescingHttpToolsProtocol

    config = uvicorn.Config(
        app,
        # A partial, not a class: uvicorn builds each connection's protocol from it.
        http=functools.partial(CoalescingHttpToolsProtocol, fast_invoke=app.fast_invoke),  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=True,
    )
    server = uvicorn.Server(config)
    settle_heap()
    print(f"Lamina is serving the Lambda API at {settings.endpoint}", flush=True)
    gateway = app.gateway.setup if app.gateway is not None else None
    if gateway is not None:
        own = gateway.url == settings.endpoint
        functions_see = "" if own else f"; functions reach it at {gateway.url}"
        print(f"Service gateway (AWS_ENDPOINT_URL): {settings.endpoint}{functions_see}", flush=True)
    print(f"Mode: {serving_mode(settings)}", flush=True)
    loopback = settings.host in {"127.0.0.1", "::1", "localhost"}
    if gateway is not None and not settings.authentication_enabled and not loopback:
        print(
            f"Warning: development mode on {settings.host}: anyone who reaches this port "
            "acts on the service gateway's upstreams with this server's AWS credentials",
            file=sys.stderr,
            flush=True,
        )
    if gateway is not None and gateway.listen is not None:
        # The gateway's address only environments reach: served by the same server.
        server.run(sockets=[config.bind_socket(), _bound(gateway.listen)])
    else:
        server.run()
    return 0


def _bound(address: tuple[str, int]) -> socket.socket:
    """A socket bound to `address`, for uvicorn to listen on beside its own."""
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def serving_mode(settings: Settings) -> str:
    """Whether calls are checked: stated at start-up, as an operator must know it."""
    if settings.authentication_enabled:
        return "enforced: signatures checked against IAM, policies enforced"
    return "development: any signature accepted"


def _doctor(settings: Settings) -> int:
    """Print which isolation features this host gives functions, and why others are missing."""
    from lamina.sandbox.network import network_options
    from lamina.sandbox.process import ProcessBackend
    from lamina.sandbox.select import namespace_backend

    # With network options, the namespace backend really makes its table and namespaces:
    # the line says whether that works here, not only whether the tools exist.
    # None: report the kernel's cgroup flag as it is; a diagnosis changes nothing.
    fast_moves = None if settings.cgroup_fast_moves else False
    namespace, why = namespace_backend([settings.data_dir], network_options(settings), fast_moves)
    if namespace is not None and settings.isolation != "process":
        chosen: SandboxBackend = namespace
        print("Isolation: namespace backend (Linux namespaces, cgroups, a uid per environment)")
    else:
        chosen = ProcessBackend()
        reason = "chosen by LAMINA_ISOLATION=process" if namespace is not None else why
        print(f"Isolation: process backend ({reason})")
        if namespace is None:
            print(f"  namespace backend unavailable: {why}")
    try:
        for feature, active, detail in chosen.describe():
            mark = "yes" if active else "no "
            print(f"  [{mark}] {feature}" + (f" - {detail}" if detail else ""))
    finally:
        if namespace is not None:
            namespace.close()
    isolation_ok = settings.isolation != "namespace" or namespace is not None
    if not isolation_ok:
        print("LAMINA_ISOLATION=namespace, so `lamina serve` would refuse to start.")
    urls_ok = _doctor_function_urls(settings)
    return 0 if isolation_ok and urls_ok else 1


def _doctor_function_urls(settings: Settings) -> bool:
    """Print which form of `FunctionUrl` `lamina serve` hands out here, and how to switch."""
    from lamina.function_urls import url_form

    if settings.function_url_form not in url_form.FORMS:
        print(
            f"Function URLs: LAMINA_FUNCTION_URL_FORM={settings.function_url_form} is not "
            "auto, host or path, so `lamina serve` would refuse to start."
        )
        return False
    form = url_form.choose_form(settings)
    print(f"Function URLs: the {form.form} form, e.g. {form.url('<url-id>')}")
    print(f"  why: {form.reason}")
    host = urlsplit(form.endpoint).hostname or ""
    if settings.function_url_form != url_form.AUTO and url_form.on_this_machine(host):
        print(f"  resolver: {url_form.probe_localhost(settings.region, host).detail}")
    other = form.written(form.other, "<url-id>")
    header = " (with that Host header)" if form.other == url_form.HOST else ""
    print(f"  also served: the {form.other} form, {other}{header}")
    heading, *ways = url_form.switch_hint(form)
    print(f"  {heading}")
    for way in ways:
        print(f"    {way}")
    return True


def _events(args: argparse.Namespace, settings: Settings) -> int:
    """Show a function's asynchronous events: queued, in flight, retrying and failed."""
    from lamina.store.protocols import EVENT_STATES, AsyncQueue

    store_url = args.store or (None if args.data_dir else settings.store_url)
    queue: AsyncQueue
    if store_url:
        # A cluster's queue: every node's events, read from PostgreSQL.
        from lamina.store.postgres.database import PgDatabase
        from lamina.store.postgres.queue import PgAsyncQueue

        try:
            queue = PgAsyncQueue(PgDatabase(store_url, max_connections=2))
        except Exception as error:  # psycopg's, which nothing outside store/ may name
            print(f"lamina: cannot read the store: {error}", file=sys.stderr)
            return 1
    else:
        from lamina.store.sqlite import open_stores

        data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
        if not (data_dir / "lamina.db").exists():
            print(f"lamina: no Lamina data in {data_dir} (see --data-dir)", file=sys.stderr)
            return 1
        queue = open_stores(data_dir).queue
    # Accept an ARN too; events are kept per function name.
    function = args.function.split(":function:")[-1].split(":")[0] if args.function else None
    counts = queue.counts(function)
    events = queue.events(function, args.limit) if function else []
    now = time.time()
    if args.json:
        rows = [
            {
                "RequestId": event.event_id,
                "Qualifier": event.qualifier,
                "State": "retrying" if event.retrying else event.state,
                "FunctionErrors": event.attempts,
                "AgeSeconds": round(now - event.enqueued_at, 3),
                "NextAttemptInSeconds": round(max(0.0, event.next_attempt_at - now), 3),
                "LastError": event.last_error,
            }
            for event in events
        ]
        print(json.dumps({"Functions": counts, "Events": rows}, indent=2))
        return 0
    if not counts:
        print(f"No asynchronous events for {function}." if function else "No asynchronous events.")
        return 0
    print(f"{'FUNCTION':<40} " + " ".join(f"{state.upper():>9}" for state in EVENT_STATES))
    for name, by_state in sorted(counts.items()):
        print(f"{name:<40} " + " ".join(f"{by_state[state]:>9}" for state in EVENT_STATES))
    if events:
        print(f"\n{'REQUEST ID':<36}  {'STATE':<9}  ERRORS  {'AGE':>8}  {'NEXT IN':>8}  LAST ERROR")
    for event in events:
        state = "retrying" if event.retrying else event.state
        due = max(0.0, event.next_attempt_at - now) if event.state == "queued" else 0.0
        print(
            f"{event.event_id:<36}  {state:<9}  {event.attempts:>6}  "
            f"{now - event.enqueued_at:>7.1f}s  {due:>7.1f}s  {event.last_error or '-'}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lamina", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the Lambda-compatible API server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 9000)")
    serve.add_argument("--data-dir", help="where metadata and code live (default ./.lamina)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback address without authentication",
    )
    serve.add_argument(
        "--store",
        metavar="URL",
        help="keep every store in this PostgreSQL database (postgresql://...), shared by "
        "every node started with it (default: SQLite under --data-dir; env LAMINA_STORE)",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="share concurrency limits between nodes through this Redis (redis://...; "
        "env LAMINA_REDIS); with --store, nodes find each other there and route invocations "
        "to the workers holding warm environments",
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="run no environments: serve the API and route every invocation to the cluster's "
        "workers (needs --store and --redis; env LAMINA_NO_WORKER=1)",
    )
    serve.add_argument(
        "--advertise",
        metavar="URL",
        help="where the cluster's other nodes reach this node (default: the address it "
        "listens on; env LAMINA_ADVERTISE_URL)",
    )
    commands.add_parser(
        "doctor",
        help="show which isolation features are active on this host, and why not, "
        "and which form of function URL is handed out",
    )
    events = commands.add_parser(
        "events", help="show queued, in-flight, retrying and failed asynchronous events"
    )
    events.add_argument("function", nargs="?", help="a function name (default: a summary of all)")
    events_redrive.configure(events)  # `lamina events redrive FUNCTION --id ID | --all`
    events_source = events.add_mutually_exclusive_group()
    events_source.add_argument(
        "--data-dir", help="where metadata and code live (default ./.lamina)"
    )
    events_source.add_argument(
        "--store",
        metavar="URL",
        help="read a cluster's events from its PostgreSQL store (default: LAMINA_STORE, "
        "unless --data-dir is given)",
    )
    events.add_argument("--limit", type=int, default=50, help="events to list (default 50)")
    events.add_argument("--json", action="store_true", help="print JSON")
    dev_command.configure(
        commands.add_parser("dev", help="deploy a function from a directory; redeploy on change")
    )
    audit_cli.configure(
        commands.add_parser("audit", help="show who called which API operation, when, and how")
    )
    schedules_cli.add_parsers(commands)
    logs_cli.configure(
        commands.add_parser("logs", help="print a function's logs; --follow streams them live")
    )
    top_command.configure(
        commands.add_parser("top", help="a live table of functions: rates, latency, errors")
    )
    cost_command.configure(
        commands.add_parser("cost", help="requests, GB-seconds and their AWS list price")
    )
    tune_command.configure(
        commands.add_parser("tune", help="run a function at several memory sizes; compare")
    )
    mappings_command.configure(
        commands.add_parser(
            "mappings", help="event source mappings: state, last result, lag and errors"
        )
    )
    init_command.configure(
        commands.add_parser("init", help="start a function's directory from a blueprint")
    )
    cluster_command.configure(
        commands.add_parser("cluster", help="a cluster's live nodes, their load, the queue's depth")
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
    except ValueError as error:  # a malformed LAMINA_* setting: say which, not a traceback
        print(f"lamina: {error}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "doctor":
        return _doctor(settings)
    if args.command == "events":  # `lamina events redrive FUNCTION ...` sends events back
        return (events_redrive.run if events_redrive.wanted(args) else _events)(args, settings)
    if args.command == "init":
        return init_command.run(args, settings)
    if args.command == "dev":
        return dev_command.run(args, settings)
    if args.command == "audit":
        return audit_cli.run(args, settings)
    if args.command == "logs":
        return logs_cli.run(args, settings)
    if args.command in schedules_cli.COMMANDS:
        return schedules_cli.run(args, settings)
    if args.command == "top":
        return top_command.run(args, settings)
    if args.command == "cost":
        return cost_command.run(args, settings)
    if args.command == "tune":
        return tune_command.run(args, settings)
    if args.command == "mappings":
        return mappings_command.run(args, settings)
    if args.command == "cluster":
        return cluster_command.run(args, settings)
    parser.error(f"unknown command {args.command}")
    return 2
