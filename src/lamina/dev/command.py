"""The `lamina dev` command: arguments, defaults, and a clean exit on Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from lamina.dev.detect import CannotGuess, guess_entry
from lamina.settings import Settings

if TYPE_CHECKING:
    from lamina.dev.server import EmbeddedServer


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="the directory that holds the function's code")
    parser.add_argument("--name", help="the function's name (default: the directory's name)")
    parser.add_argument(
        "--runtime", help="python3.12, nodejs20.x, provided.al2023... (default: guessed)"
    )
    parser.add_argument("--handler", help="e.g. app.handler (default: guessed from the files)")
    parser.add_argument("--memory", type=int, help="memory size in MB")
    parser.add_argument("--timeout", type=int, help="timeout in seconds")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of the function (repeatable)",
    )
    parser.add_argument("--role", help="the execution role ARN (default: a placeholder)")
    parser.add_argument(
        "--url", action="store_true", help="also give the function a public URL (AuthType NONE)"
    )
    parser.add_argument(
        "--endpoint",
        help="the Lamina server (default http://127.0.0.1:9000); "
        "if none answers on this machine, one is started",
    )
    parser.add_argument(
        "--data-dir", help="the started server's data directory (default ./.lamina)"
    )


def default_name(directory: Path) -> str:
    """The directory's name made into a valid function name."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", directory.resolve().name).strip("-")
    return name[:64] or "function"


def parse_environment(pairs: list[str]) -> dict[str, str] | None:
    if not pairs:
        return None
    variables = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ValueError(f"--env takes KEY=VALUE, got {pair!r}")
        variables[key] = value
    return variables


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the loop the same clean way as Ctrl-C


def run(args: argparse.Namespace, settings: Settings) -> int:
    # Lazy: boto3 and watchfiles load only when this command runs, not for every `lamina`.
    from lamina.dev.client import lambda_client
    from lamina.dev.deploy import Deployer, DeployError, FunctionSpec
    from lamina.dev.loop import DevLoop
    from lamina.dev.server import EmbeddedServer, ServerError, is_lamina

    # The root logger is at INFO for `lamina serve`; here it would print every file change.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"lamina dev: {directory} is not a directory", file=sys.stderr)
        return 2
    try:
        entry = guess_entry(directory, args.runtime, args.handler)
        spec = FunctionSpec(
            name=args.name or default_name(directory),
            runtime=entry.runtime,
            handler=entry.handler,
            role=args.role or f"arn:aws:iam::{settings.account_id}:role/lamina-dev",
            memory=args.memory,
            timeout=args.timeout,
            environment=parse_environment(args.env),
        )
    except (CannotGuess, ValueError) as error:
        print(f"lamina dev: {error}", file=sys.stderr)
        return 2
    endpoint = (args.endpoint or settings.endpoint).rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        print(f"lamina dev: --endpoint must be an http(s) URL, got {endpoint!r}", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
    previous = signal.signal(signal.SIGTERM, _interrupt)
    server: EmbeddedServer | None = None
    try:
        if not is_lamina(endpoint):
            server = EmbeddedServer(endpoint, data_dir)
            print(
                f"Starting a Lamina server at {endpoint} (its log: {server.log_path})", flush=True
            )
            server.start()
        client = lambda_client(endpoint, settings)
        DevLoop(
            directory,
            Deployer(client, spec),
            endpoint,
            public_url=args.url,
            server=server,
            # A data directory inside the function's must be neither zipped nor watched.
            excluded=data_dir.resolve(),
        ).run()
    except (ServerError, DeployError) as error:
        print(f"lamina dev: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    finally:
        if server is not None:
            server.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0
