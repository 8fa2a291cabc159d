"""Which Python environments a template forks, and which start a fresh interpreter because
their process would read something differently at start-up."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP
from lamina.sandbox.zygote import TEMPLATE_LIBRARY_PATH, Templates, library_path, starts_alike


def spec(tmp_path: Path, **variables: str) -> SandboxSpec:
    task, opt = tmp_path / "task", tmp_path / "opt"
    task.mkdir(exist_ok=True)
    (task / "app.py").write_text("def handler(event, context):\n    return 1\n")
    given = library_path(str(task), str(opt))
    return SandboxSpec(
        command=("/usr/bin/python3.12", "-u", str(PYTHON_BOOTSTRAP)),
        environment={"LD_LIBRARY_PATH": given, "TZ": ":UTC", **variables},
        task_root=task,
        opt_dir=opt,
        memory_mb=128,
        ephemeral_mb=512,
        scratch_root=tmp_path / "scratch",
    )


def test_a_plain_function_is_forked(tmp_path: Path) -> None:
    plain = spec(
        tmp_path,
        PATH="/usr/bin",
        LANG="en_US.UTF-8",
        LC_ALL="C.utf8",
        TZ="Asia/Tokyo",
        # The two the interpreter's start-up reads that a forked runtime honours too.
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    assert starts_alike(plain)
    assert Templates.forks(plain)
    # Directories on the path that exist but hold no library change nothing, nor do
    # Python extension modules packaged with the code, loaded by their full path.
    (tmp_path / "opt" / "lib").mkdir(parents=True)
    (tmp_path / "opt" / "lib" / "README").write_text("no libraries here")
    for module in ("_cffi_backend.cpython-312-x86_64-linux-gnu.so", "_speedups.abi3.so"):
        (tmp_path / "task" / module).write_bytes(b"\x7fELF")
    # Nor do names that only hold ".so" somewhere.
    for other in ("app.sock", "data.sorted.json"):
        (tmp_path / "task" / other).write_text("not a library")
    assert Templates.forks(plain)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LC_ALL", "de_DE.ISO-8859-1"), ("LC_CTYPE", "C"), ("LANG", "POSIX")],
)
def test_a_locale_other_than_utf8_asks_for_a_fresh_interpreter(
    tmp_path: Path, variable: str, value: str
) -> None:
    assert not Templates.forks(spec(tmp_path, **{variable: value}))


@pytest.mark.parametrize(
    "variable",
    ["LD_PRELOAD", "LD_BIND_NOW", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "PYTHONPATH"],
)
def test_a_variable_read_at_start_asks_for_a_fresh_interpreter(
    tmp_path: Path, variable: str
) -> None:
    assert not Templates.forks(spec(tmp_path, **{variable: "1"}))


@pytest.mark.parametrize(
    "chosen",
    [
        "",
        "/opt/mine",
        f"/opt/mine:{TEMPLATE_LIBRARY_PATH}",
        TEMPLATE_LIBRARY_PATH,
        # Lambda's own default with a directory of the function's appended: paths inside
        # the sandbox, which the host may not have.
        f"{TEMPLATE_LIBRARY_PATH}:/var/runtime:/var/task:/var/task/lib:/opt/lib:/var/task/vendor",
    ],
)
def test_a_library_path_of_the_functions_own_asks_for_a_fresh_interpreter(
    tmp_path: Path, chosen: str
) -> None:
    assert not Templates.forks(spec(tmp_path, LD_LIBRARY_PATH=chosen))


@pytest.mark.parametrize("where", ["task/libthing.so", "task/lib/libthing.so.1", "opt/lib/x.so"])
def test_libraries_on_the_functions_path_ask_for_a_fresh_interpreter(
    tmp_path: Path, where: str
) -> None:
    built = spec(tmp_path)
    library = tmp_path / where
    library.parent.mkdir(parents=True, exist_ok=True)
    library.write_bytes(b"\x7fELF")
    assert not Templates.forks(built)


def test_only_the_python_bootstrap_is_forked(tmp_path: Path) -> None:
    node = dataclasses.replace(spec(tmp_path), command=("/usr/bin/node", "/runtime/index.mjs"))
    assert starts_alike(node)
    assert not Templates.forks(node)
