"""Runtime identifiers mapped to the interpreters and bootstraps that run them on this host."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lamina.constants import RUNTIME_INVALID_ENTRYPOINT
from lamina.errors import InvalidRuntime
from lamina.sandbox.runtime_files import NODE_BOOTSTRAP, PYTHON_BOOTSTRAP

PROVIDED = ("provided", "provided.al2", "provided.al2023")
# V8 rounds a semi-space up to a power of two; Lambda's 128 MB default gets 6, hence 8.
_NODE_MAX_SEMI_SPACE_MB = 8


@dataclass(frozen=True)
class RuntimeCommand:
    """How to start one runtime: the argv, and what `INIT_START` reports."""

    argv: tuple[str, ...]
    interpreter: str
    execution_env: str | None


_REPORT_SELF = {
    "python": "import sys; print(sys.version.split()[0], sys.executable)",
    "node": "console.log(process.version.slice(1), process.execPath)",
}


def _probe(candidate: str, family: str, expected: str) -> str | None:
    """Run the candidate once and return the real executable behind it.

    A pyenv shim or a broken link must not pass for the real thing, and a shim found on PATH
    is replaced by the interpreter it runs, which keeps a shell script off every cold start.
    """
    flag = "-c" if family == "python" else "-e"
    try:
        result = subprocess.run(
            [candidate, flag, _REPORT_SELF[family]],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    version, _, executable = result.stdout.strip().partition(" ")
    if result.returncode != 0 or not version.startswith(expected) or not executable:
        return None
    return executable


class RuntimeRegistry:
    """Finds interpreters on the host (overridable per runtime) and caches what it found."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._found: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def interpreter(self, runtime: str) -> str | None:
        with self._lock:
            if runtime not in self._found:
                self._found[runtime] = self._locate(runtime)
            return self._found[runtime]

    def _locate(self, runtime: str) -> str | None:
        override = self._overrides.get(runtime)
        if override:
            # A wrong setting is a missing interpreter, told as such, not a failed start.
            return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
        if runtime.startswith("python"):
            version = runtime.removeprefix("python")
            candidates = [shutil.which(f"python{version}") or ""]
            candidates += sorted(
                glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}"))
            )
            candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
            family, expected = "python", f"{version}."
        elif runtime.startswith("nodejs"):
            major = runtime.removeprefix("nodejs").removesuffix(".x")
            candidates = [shutil.which(f"node{major}") or "", shutil.which("node") or ""]
            candidates += sorted(
                glob.glob(os.path.expanduser(f"~/.nvm/versions/node/v{major}.*/bin/node"))
            )
            family, expected = "node", f"{major}."
        else:
            return None
        for candidate in dict.fromkeys(filter(None, candidates)):
            found = _probe(candidate, family, expected)
            if found:
                return found
        return None

    def command(
        self, runtime: str | None, task_root: Path, opt_dir: Path | None, memory_mb: int = 128
    ) -> RuntimeCommand:
        if runtime is None:
            raise InvalidRuntime("The function has no runtime configured.")
        if runtime in PROVIDED:
            return _custom_bootstrap(task_root, opt_dir)
        interpreter = self.interpreter(runtime)
        if interpreter is None:
            raise InvalidRuntime(_missing_message(runtime, self._overrides.get(runtime)))
        if runtime.startswith("python"):
            return RuntimeCommand(
                (interpreter, "-u", str(PYTHON_BOOTSTRAP)), interpreter, f"AWS_Lambda_{runtime}"
            )
        if runtime.startswith("nodejs"):
            # V8's heap sized from the function's memory, as Lambda's Node runtime does:
            # a tenth for the young generation, the rest for the old one. The young
            # generation is capped at what Lambda gives a function of up to 160 MB: V8 grows
            # it towards the cap as a warm environment serves calls and rarely gives a large
            # one back once idle. A no-op at 1,769 MB held 66 MiB of anonymous memory after
            # 10,000 calls, 29 MiB with the cap; after 2,200 calls and 16 s idle, 30 MiB
            # (8 MiB in 1 run of 4), 8-9 MiB with the cap (3 runs of 4). Allocation-heavy
            # handlers ran no slower with it.
            new_space = memory_mb // 10
            heap = (
                f"--max-semi-space-size={min(new_space // 2, _NODE_MAX_SEMI_SPACE_MB)}",
                f"--max-old-space-size={memory_mb - new_space}",
            )
            return RuntimeCommand(
                (interpreter, "--expose-gc", *heap, str(NODE_BOOTSTRAP)),
                interpreter,
                f"AWS_Lambda_{runtime}",
            )
        raise InvalidRuntime(_missing_message(runtime))


def _custom_bootstrap(task_root: Path, opt_dir: Path | None) -> RuntimeCommand:
    """The `bootstrap` of a provided runtime: the package's first, else the layers' (/opt)."""
    for root, shown in ((task_root, "/var/task/bootstrap"), (opt_dir, "/opt/bootstrap")):
        if root is None or not (root / "bootstrap").is_file():
            continue
        bootstrap = str(root / "bootstrap")
        if not os.access(bootstrap, os.X_OK):
            # AWS's wording when the file is there but its mode lacks the executable bit.
            raise InvalidRuntime(
                f"fork/exec {shown}: permission denied", error_type=RUNTIME_INVALID_ENTRYPOINT
            )
        return RuntimeCommand((bootstrap,), bootstrap, None)
    raise InvalidRuntime(
        "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]",
        error_type=RUNTIME_INVALID_ENTRYPOINT,
    )


def _missing_message(runtime: str, override: str | None = None) -> str:
    setting = "LAMINA_RUNTIME_" + runtime.upper().replace(".", "_")
    if override:
        return (
            f"Runtime {runtime} is not available on this host: {setting} names {override}, "
            "which is not an executable file."
        )
    if runtime.startswith("python"):
        version = runtime.removeprefix("python")
        what = f"Python {version} (a `python{version}` executable on PATH or under pyenv)"
    elif runtime.startswith("nodejs"):
        major = runtime.removeprefix("nodejs").removesuffix(".x")
        what = f"Node.js {major} (`node` reporting v{major}.x on PATH)"
    else:
        what = f"an interpreter for {runtime}, which Lamina does not run yet"
    return (
        f"Runtime {runtime} is not available on this host: install {what}, or point "
        f"{setting} at an interpreter."
    )
