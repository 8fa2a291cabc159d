"""Guessing a function's runtime and handler from the files in its directory.

The files are read, never imported or run. The names looked for are the usual ones: the AWS
console's `lambda_function.lambda_handler`, SAM's `app.handler` / `app.lambda_handler`, the
Serverless Framework's `handler.js`, Node's `index.handler`, and a `bootstrap` file for a
custom runtime.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PYTHON_RUNTIME = "python3.12"
NODE_RUNTIME = "nodejs20.x"
PROVIDED_RUNTIME = "provided.al2023"

# In order of preference when several are present.
PYTHON_FILES = ("lambda_function.py", "app.py", "handler.py", "main.py", "index.py")
NODE_FILES = (
    "index.mjs",
    "index.js",
    "index.cjs",
    "handler.mjs",
    "handler.js",
    "app.mjs",
    "app.js",
)
NODE_SUFFIXES = (".mjs", ".js", ".cjs")
HANDLER_NAMES = ("lambda_handler", "handler")

_PYTHON_DEF = re.compile(r"^(?:async\s+)?def\s+(\w+)\s*\(", re.MULTILINE)
_NODE_EXPORTS = (
    re.compile(r"\bexports\.(\w+)\s*="),  # exports.handler = / module.exports.handler =
    re.compile(r"^\s*export\s+(?:async\s+)?function\s*\*?\s*(\w+)", re.MULTILINE),
    re.compile(r"^\s*export\s+(?:const|let|var)\s+(\w+)", re.MULTILINE),
)
# `export { a, b as handler }` and `module.exports = { handler, other: fn }`.
_NODE_EXPORT_LISTS = (
    re.compile(r"\bexport\s*\{([^}]*)\}"),
    re.compile(r"\bmodule\.exports\s*=\s*\{([^}]*)\}"),
)


class CannotGuess(Exception):
    """The directory does not say how to run it; the message says what to pass instead."""


@dataclass(frozen=True)
class Entry:
    runtime: str
    handler: str


def family(runtime: str) -> str | None:
    for prefix, name in (("python", "python"), ("nodejs", "node"), ("provided", "provided")):
        if runtime.startswith(prefix):
            return name
    return None


def guess_entry(directory: Path, runtime: str | None, handler: str | None) -> Entry:
    """The runtime and handler to deploy `directory` with; given values are kept as they are."""
    if runtime and handler:
        return Entry(runtime, handler)
    if handler:
        return Entry(_runtime_for_handler(directory, handler), handler)
    wanted = family(runtime) if runtime else None
    if runtime and wanted is None:
        raise CannotGuess(f"cannot guess a handler for runtime {runtime}: pass --handler")
    candidates: dict[str, list[Entry]] = {}
    if wanted in (None, "provided") and (directory / "bootstrap").is_file():
        candidates["provided"] = [Entry(runtime or PROVIDED_RUNTIME, "bootstrap")]
    if wanted in (None, "python"):
        found = _handlers(directory, PYTHON_FILES, _python_functions, runtime or PYTHON_RUNTIME)
        if found:
            candidates["python"] = found
    if wanted in (None, "node"):
        found = _handlers(directory, NODE_FILES, _node_exports, runtime or NODE_RUNTIME)
        if found:
            candidates["node"] = found
    if "provided" in candidates:
        # A bootstrap is deliberate: it may well start Python or Node code itself.
        return candidates["provided"][0]
    if len(candidates) > 1:
        shown = ", ".join(entry.handler for entries in candidates.values() for entry in entries)
        raise CannotGuess(
            f"{directory} has both Python and Node.js handlers ({shown}): "
            "pass --runtime or --handler to choose"
        )
    for entries in candidates.values():
        return entries[0]
    raise CannotGuess(_nothing_found(directory, wanted))


def _handlers(
    directory: Path, files: tuple[str, ...], names_in: Callable[[str], set[str]], runtime: str
) -> list[Entry]:
    entries = []
    for filename in files:
        path = directory / filename
        if not path.is_file():
            continue
        defined = names_in(path.read_text(errors="replace"))
        for name in HANDLER_NAMES:
            if name in defined:
                entries.append(Entry(runtime, f"{path.stem}.{name}"))
                break
    return entries


def _python_functions(source: str) -> set[str]:
    # A regular expression rather than `ast`: a file with a syntax error still names its
    # handler, and the user learns about the error from the invoke, where it belongs.
    return set(_PYTHON_DEF.findall(source))


def _node_exports(source: str) -> set[str]:
    names = {name for pattern in _NODE_EXPORTS for name in pattern.findall(source)}
    for pattern in _NODE_EXPORT_LISTS:
        for listed in pattern.findall(source):
            for item in listed.split(","):
                # `a as handler` exports `handler`; `handler: fn` and `handler` export `handler`.
                name = item.split(" as ")[-1].split(":")[0].strip()
                if name:
                    names.add(name)
    return names


def _runtime_for_handler(directory: Path, handler: str) -> str:
    module = handler.rsplit(".", 1)[0]
    if (directory / f"{module}.py").is_file():
        return PYTHON_RUNTIME
    if any((directory / f"{module}{suffix}").is_file() for suffix in NODE_SUFFIXES):
        return NODE_RUNTIME
    if (directory / "bootstrap").is_file():
        return PROVIDED_RUNTIME
    raise CannotGuess(
        f"cannot tell the runtime of handler {handler}: there is no {module}.py, "
        f"{module}.js or {module}.mjs in {directory}, and no bootstrap; pass --runtime"
    )


def _nothing_found(directory: Path, wanted: str | None) -> str:
    python = f"{'/'.join(PYTHON_FILES)} defining {' or '.join(HANDLER_NAMES)}"
    node = f"{'/'.join(NODE_FILES)} exporting {' or '.join(HANDLER_NAMES)}"
    what = {
        "python": python,
        "node": node,
        "provided": "an executable bootstrap file",
        None: f"{python}; {node}; or a bootstrap file",
    }[wanted]
    return (
        f"cannot tell how to run {directory}: found no {what}. "
        "Pass --runtime and --handler (e.g. --runtime python3.12 --handler app.handler)"
    )
