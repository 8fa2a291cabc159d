"""`lamina init`: start a function from a blueprint (`--blueprint NAME DIR`, or `--list`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lamina import blueprints
from lamina.arns import Account
from lamina.blueprints import Blueprint, BlueprintConflict, UnknownBlueprint
from lamina.dev.command import default_name
from lamina.settings import Settings

README = "README.md"
EVENT = "event.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", help="where to write the function's files")
    parser.add_argument("--blueprint", metavar="NAME", help="the blueprint to start from")
    parser.add_argument("--list", action="store_true", help="list the blueprints and exit")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.list:
        for blueprint in blueprints.catalog():
            print(f"{blueprint.name:<26} {blueprint.runtime:<11} {blueprint.description}")
        return 0
    if not args.blueprint or not args.directory:
        print("lamina: init needs --blueprint NAME and a DIR (or --list)", file=sys.stderr)
        return 2
    try:
        blueprint = blueprints.get(args.blueprint)
    except UnknownBlueprint as error:
        print(f"lamina: {error.message} (see `lamina init --list`)", file=sys.stderr)
        return 2
    directory = Path(args.directory)
    if directory.exists() and not directory.is_dir():
        print(f"lamina: {directory} exists and is not a directory", file=sys.stderr)
        return 1
    readme, event = directory / README, directory / EVENT
    taken = [str(path) for path in (readme, event) if path.exists()]
    if taken:
        print(f"lamina: not overwriting existing files: {', '.join(taken)}", file=sys.stderr)
        return 1
    try:
        written = blueprint.write_to(directory)
    except BlueprintConflict as error:
        print(f"lamina: {error}", file=sys.stderr)
        return 1
    account = Account(settings.account_id, settings.region)
    sample = blueprint.sample_event(account, default_name(directory))
    event.write_text(json.dumps(sample, indent=2) + "\n", encoding="utf-8")
    readme.write_text(readme_text(blueprint, directory, settings.endpoint), encoding="utf-8")
    for path in [*written, event, readme]:
        print(f"wrote {path}")
    print(f"\nNext: lamina dev {directory}   (see {readme})")
    return 0


def readme_text(blueprint: Blueprint, directory: Path, endpoint: str) -> str:
    """How to deploy and try the function, with this blueprint's settings filled in."""
    name = default_name(directory)
    code = " ".join(sorted(blueprint.files))
    lines = [
        f"# {name}",
        "",
        f"Made from Lamina's `{blueprint.name}` blueprint: {blueprint.description}",
        "",
        "## Deploy with Lamina's dev loop",
        "",
        "Deploys the function, then redeploys it whenever a file here changes (it starts a",
        "local Lamina server if none is running):",
        "",
        "```sh",
        f"lamina dev . --name {name} --runtime {blueprint.runtime} --handler {blueprint.handler} "
        f"--memory {blueprint.memory_size} --timeout {blueprint.timeout}"
        + (" --url" if blueprint.trigger and blueprint.trigger.kind == "url" else ""),
        "```",
        "",
        "## Or deploy with the AWS CLI",
        "",
        "```sh",
        f"zip function.zip {code}",
        f"aws --endpoint-url {endpoint} lambda create-function --function-name {name} \\",
        f"    --runtime {blueprint.runtime} --handler {blueprint.handler} "
        f"--memory-size {blueprint.memory_size} --timeout {blueprint.timeout} \\",
        "    --role arn:aws:iam::123456789012:role/lambda-role --zip-file fileb://function.zip",
        "```",
        "",
    ]
    if blueprint.trigger is not None:
        lines += [
            f"## Trigger: {blueprint.trigger.kind}",
            "",
            blueprint.trigger.description,
            "",
            "Suggested settings:",
            "",
            "```json",
            json.dumps(blueprint.trigger.settings, indent=2),
            "```",
            "",
        ]
    lines += [
        "## Try it",
        "",
        "`event.json` is what the trigger sends (made by Lamina's own event builders):",
        "",
        "```sh",
        f"aws --endpoint-url {endpoint} lambda invoke --function-name {name} \\",
        "    --cli-binary-format raw-in-base64-out --payload file://event.json out.json",
        "```",
        "",
    ]
    return "\n".join(lines)
