"""Blueprints: starter functions for Python and Node, each with the trigger it is made for.

Each blueprint is a directory under `library/`: the function's files plus `blueprint.json`,
which says what the function is (runtime, handler, suggested timeout and memory), which
trigger to add (as the API members that add it, so the console can offer it), and which
event template (`lamina.blueprints.events`) shows what that trigger sends. `lamina init
--blueprint` writes one into a directory; the console creates a function from one.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from lamina.arns import Account
from lamina.blueprints.events import template
from lamina.errors import ResourceNotFound

MANIFEST = "blueprint.json"
# A fixed time for every archive entry: the same blueprint always zips to the same bytes
# (and so to the same CodeSha256).
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


class UnknownBlueprint(ResourceNotFound):
    """No blueprint has that name."""


class BlueprintConflict(FileExistsError):
    """Writing a blueprint would replace files that are already there."""


@dataclass(frozen=True)
class Trigger:
    """What to add so that the function gets its events: `kind` is url, sqs, schedule,
    kinesis or dynamodb; `settings` are the members of the API call that adds it
    (CreateFunctionUrlConfig, CreateEventSourceMapping, or PutRule's ScheduleExpression)."""

    kind: str
    description: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Blueprint:
    """A starter function: its files and how to configure and trigger it."""

    name: str
    description: str
    runtime: str
    handler: str
    timeout: int
    memory_size: int
    files: dict[str, str]
    trigger: Trigger | None = None
    # A key of `lamina.blueprints.events.TEMPLATES`: what the trigger sends; without one,
    # `sample` is the event to test with.
    event_template: str | None = None
    sample: dict[str, Any] | None = None

    @property
    def language(self) -> str:
        return "node" if self.runtime.startswith("nodejs") else "python"

    def sample_event(self, account: Account, function_name: str = "my-function") -> Any:
        """An event to test the function with: what its trigger would send."""
        if self.event_template is not None:
            return template(self.event_template, account, function_name)
        return dict(self.sample or {})

    def zip_bytes(self) -> bytes:
        """The deployment package: the files at the archive's root, readable by anyone."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, text in sorted(self.files.items()):
                info = zipfile.ZipInfo(path, _ZIP_TIME)
                info.create_system = 3
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, text)
        return buffer.getvalue()

    def write_to(self, directory: Path) -> list[Path]:
        """Write the files into `directory` (made if missing); refuses, before writing
        anything, if one of them exists already."""
        targets = {directory / path: text for path, text in sorted(self.files.items())}
        existing = [path for path in targets if path.exists()]
        if existing:
            names = ", ".join(str(path) for path in existing)
            raise BlueprintConflict(f"not overwriting existing files: {names}")
        for path, text in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return list(targets)


def catalog() -> list[Blueprint]:
    """Every blueprint, by name."""
    return list(_load_all().values())


def get(name: str) -> Blueprint:
    blueprint = _load_all().get(name)
    if blueprint is None:
        known = ", ".join(_load_all())
        raise UnknownBlueprint(f"No blueprint named {name}. Blueprints: {known}")
    return blueprint


@cache
def _load_all() -> dict[str, Blueprint]:
    # Read once per process: the files ship with the package and never change under it.
    library = resources.files(__package__).joinpath("library")
    found: dict[str, Blueprint] = {}
    for entry in sorted(library.iterdir(), key=lambda item: item.name):
        if entry.is_dir() and entry.joinpath(MANIFEST).is_file():
            found[entry.name] = _load(entry.name, entry)
    return found


def _load(name: str, directory: Any) -> Blueprint:
    manifest = json.loads(directory.joinpath(MANIFEST).read_text(encoding="utf-8"))
    files = {
        item.name: item.read_text(encoding="utf-8")
        for item in directory.iterdir()
        if item.is_file() and item.name != MANIFEST
    }
    trigger = manifest.get("trigger")
    return Blueprint(
        name=name,
        description=manifest["description"],
        runtime=manifest["runtime"],
        handler=manifest["handler"],
        timeout=manifest["timeout"],
        memory_size=manifest["memory_size"],
        files=files,
        trigger=Trigger(**trigger) if trigger else None,
        event_template=manifest.get("event_template"),
        sample=manifest.get("sample_event"),
    )
