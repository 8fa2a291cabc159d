"""Python environments forked from the pre-initialised template behave like fresh ones."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, call, invoke
from tests.support.server import LaminaServer

SOURCE = """
import os, random, sys

def describe(event, context):
    with open("/proc/self/cmdline", "rb") as cmdline:
        command = [arg.decode() for arg in cmdline.read().split(b"\\0") if arg]
    return {"process": [os.readlink("/proc/self/ns/pid"), os.getpid()],
            "command": command, "random": random.random(),
            "stage": os.environ.get("STAGE"), "cwd": os.getcwd(),
            "task_root": os.environ["LAMBDA_TASK_ROOT"], "argv0": sys.argv[0],
            "platform_modules": sorted(name for name in sys.modules if name.startswith("lamina"))}

def leave(event, context):
    sys.exit(event["status"])

def loads(event, context):
    import ctypes, time
    found = {}
    for name in event["libraries"]:
        try:
            ctypes.CDLL(name)
            found[name] = True
        except OSError:
            found[name] = False
    try:
        import extra_module
        extra = extra_module.WHERE
    except ImportError:
        extra = None
    with open("/proc/self/cmdline", "rb") as cmdline:
        forked = b"zygote.py" in cmdline.read()
    return {"libraries": found, "extra": extra, "timezone": time.timezone, "forked": forked,
            "no_bytecode": sys.dont_write_bytecode}

def finds(event, context):
    import gc
    gc.unfreeze()
    # Dicts holding only strings are not the collector's to list: look one step further.
    found = [
        key
        for thing in gc.get_objects()
        for held in [thing, *gc.get_referents(thing)]
        if type(held) is dict
        for key, value in list(held.items())
        if value == event["secret"]
    ]
    with open("/proc/self/cmdline") as cmdline:
        forked = "zygote.py" in cmdline.read()
    return {"found": found, "forked": forked}

def threads_and_forks(event, context):
    import logging, threading
    # Witness that the template held threading's hook (CPython 3.12): the hook empties this
    # set of the template's main thread's lock; held, the entry stays (harmless: it is read
    # at interpreter shutdown, and a runtime ends by os._exit).
    template_entries = len(threading._shutdown_locks)
    def threads_log(label):
        # A lock left taken by a fork stops this thread: logging's module lock (getLogger),
        # a handler's (emit, through the runtime's own handler on the root logger).
        done = []
        def log():
            logging.getLogger(label).error("logged from a thread in the %s", label)
            done.append(True)
        thread = threading.Thread(target=log)
        thread.start()
        thread.join(10)
        return done == [True]
    runtime = threads_log("runtime")
    read, write = os.pipe()
    child = os.fork()  # the function's own, as multiprocessing makes them
    if child == 0:
        os.write(write, b"1" if threads_log("child") and threading.active_count() == 1 else b"0")
        os._exit(0)
    os.close(write)
    in_child = os.read(read, 1) == b"1"
    os.waitpid(child, 0)
    with open("/proc/self/cmdline", "rb") as cmdline:
        forked = b"zygote.py" in cmdline.read()
    main = threading.main_thread()
    return {"runtime": runtime, "child": in_child, "forked": forked, "held": template_entries == 1,
            "main": main is threading.current_thread(),
            "native_id": main.native_id == threading.get_native_id(),
            "threads": threading.active_count()}

def counts(event, context):
    import json
    mine = {"made": "here"}
    return {"template_module": sys.getrefcount(json), "own_dict": sys.getrefcount(mine),
            "environ": sys.getrefcount(os.environ)}
"""


@pytest.fixture(scope="module", params=["process", "namespace"])
def zygote_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LaminaServer]:
    """A server forking Python environments from templates, under each isolation backend."""
    env = {"LAMINA_ISOLATION": request.param, "LAMINA_ZYGOTE": "on"}
    server = LaminaServer(tmp_path_factory.mktemp("zygote") / "data", env=env).start()
    yield server
    server.stop()


def create(client: Any, name: str, handler: str, **extra: Any) -> None:
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler=f"app.{handler}",
        Code={"ZipFile": make_zip({"app.py": SOURCE})},
        **extra,
    )


def test_forked_environment_has_its_own_identity(zygote_server: LaminaServer) -> None:
    client = zygote_server.client()
    create(client, "z-one", "describe", Environment={"Variables": {"STAGE": "one"}})
    create(client, "z-two", "describe", Environment={"Variables": {"STAGE": "two"}})
    one, two = invoke(client, "z-one"), invoke(client, "z-two")
    # Forked from the template: a fork keeps the template's command line (`python -u
    # .../zygote.py FD`), which a runtime started fresh (`python -u .../bootstrap.py`) lacks.
    for forked in (one, two):
        assert any(arg.endswith("/zygote.py") for arg in forked["command"]), forked["command"]
    assert (one["stage"], two["stage"]) == ("one", "two")
    # Both stay warm, so their (PID namespace, pid) pairs cannot coincide unless shared.
    assert one["process"] != two["process"]
    # Nor does state copied from the template make them alike: each seeds its own random.
    assert one["random"] != two["random"]
    assert one["cwd"] == one["task_root"]
    assert one["argv0"].endswith("bootstrap.py")
    # The template preloads Lamina's sandbox code; function code must not find it imported.
    assert one["platform_modules"] == []
    client.close()


@pytest.mark.parametrize("status", [0, 4])
def test_exit_status_of_a_forked_runtime(zygote_server: LaminaServer, status: int) -> None:
    client = zygote_server.client()
    name = f"z-exit-{status}"
    create(client, name, "leave")
    response, result = call(client, name, {"status": status})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Runtime.ExitError"
    assert f"exit status {status}" in result["errorMessage"]
    client.close()


def test_threads_logging_and_forks_work_in_a_forked_runtime(zygote_server: LaminaServer) -> None:
    """The template holds the standard library's after-fork repairs for its children; each
    puts them back, so the function's threads, logging and own forks work as in a fresh one."""
    client = zygote_server.client()
    create(client, "z-threads", "threads_and_forks")
    for _ in range(2):  # a cold start, then a warm invocation in the same runtime
        response = client.invoke(FunctionName="z-threads", Payload=b"{}", LogType="Tail")
        result = json.loads(response["Payload"].read())
        assert result == {
            "runtime": True,
            "child": True,
            "forked": True,
            "held": True,
            "main": True,
            "native_id": True,
            "threads": 1,
        }, result
        tail = base64.b64decode(response["LogResult"]).decode()
        assert "logged from a thread in the runtime" in tail, tail
    client.close()


IMMORTAL = 0xFFFFFFFF
LIBZ = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")


def test_what_an_interpreter_reads_at_start_is_the_functions_own(
    zygote_server: LaminaServer,
) -> None:
    """A template starts long before the function, with variables of its own. What a
    process reads only as it starts is the function's all the same: libraries its layers
    and code bring, found by name through LD_LIBRARY_PATH (such a function starts a fresh
    interpreter, as does one setting PYTHONPATH), its time zone and whether it writes
    bytecode (both read again after the fork)."""
    if not LIBZ.exists():
        pytest.skip("needs zlib at a known path to ship as a layer's library")
    client = zygote_server.client()
    library = LIBZ.read_bytes()
    layer = client.publish_layer_version(
        LayerName="z-native", Content={"ZipFile": make_zip({"lib/liblaminalayer.so": library})}
    )["LayerVersionArn"]
    cases: dict[str, dict[str, Any]] = {
        "layer-library": {"Layers": [layer]},
        "code-library": {"files": {"liblaminacode.so": library}},
        "python-path": {"variables": {"PYTHONPATH": "extra"}},
        "time-zone": {"variables": {"TZ": "Asia/Tokyo"}},
        "no-bytecode": {"variables": {"PYTHONDONTWRITEBYTECODE": "1"}},
    }
    seen = {}
    for case, setup in cases.items():
        files = {"app.py": SOURCE, "extra/extra_module.py": "WHERE = 'extra'\n"}
        client.create_function(
            FunctionName=f"z-{case}",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.loads",
            Code={"ZipFile": make_zip({**files, **setup.get("files", {})})},
            Layers=setup.get("Layers", []),
            Environment={"Variables": setup.get("variables", {})},
        )
        event = {"libraries": ["liblaminalayer.so", "liblaminacode.so"]}
        seen[case] = invoke(client, f"z-{case}", event)
    assert seen["layer-library"]["libraries"]["liblaminalayer.so"], seen
    assert seen["code-library"]["libraries"]["liblaminacode.so"], seen
    assert not seen["time-zone"]["libraries"]["liblaminacode.so"], seen
    assert seen["python-path"]["extra"] == "extra", seen
    assert seen["time-zone"]["extra"] is None, seen
    assert seen["time-zone"]["timezone"] == -9 * 3600, seen
    assert seen["python-path"]["timezone"] == 0, seen
    assert seen["no-bytecode"]["no_bytecode"], seen
    assert not seen["time-zone"]["no_bytecode"], seen
    # Only what needs it starts afresh.
    forked = {case: report["forked"] for case, report in seen.items()}
    assert forked == {
        "layer-library": False,
        "code-library": False,
        "python-path": False,
        "time-zone": True,
        "no-bytecode": True,
    }
    client.close()


def test_environments_forked_once_the_template_settled_share_its_objects_for_good(
    zygote_server: LaminaServer,
) -> None:
    """The template makes its objects immortal once it has forked its first runtime: their
    counts are never written again, so their pages stay shared. The runtime's own objects,
    and the template's instances, are counted as ever."""
    client = zygote_server.client()
    # Each call is a new function's first, so a new environment; the template settles at
    # its first idle moment, and every environment forked after that sees it.
    deadline = time.monotonic() + 10
    for attempt in range(1000):
        create(client, f"z-counts-{attempt}", "counts")
        seen = invoke(client, f"z-counts-{attempt}")
        if seen["template_module"] >= IMMORTAL or time.monotonic() > deadline:
            break
    assert seen["template_module"] >= IMMORTAL, seen
    assert seen["own_dict"] == 2, seen
    assert seen["environ"] < 100, seen
    client.close()


@pytest.mark.parametrize("isolation", ["process", "namespace"])
def test_a_runtime_holds_nothing_of_the_function_forked_before_it(
    isolation: str, tmp_path: Path
) -> None:
    """The cold start that starts a template is the request it serves just before it
    settles: none of that function's variables (its credentials among them) may outlive
    the request in the runtimes forked afterwards."""
    env = {"LAMINA_ISOLATION": isolation, "LAMINA_ZYGOTE": "on"}
    server = LaminaServer(tmp_path / "data", env=env).start()
    try:
        client = server.client()
        secret = "first-function-secret-0f3a9c"
        create(client, "z-first", "describe", Environment={"Variables": {"TOKEN": secret}})
        assert invoke(client, "z-first")["stage"] is None
        # Settled by now (its first idle moment); every later runtime is forked after it.
        time.sleep(0.5)
        create(client, "z-later", "finds")
        seen = invoke(client, "z-later", {"secret": secret})
        assert seen == {"found": [], "forked": True}
        client.close()
    finally:
        server.stop()


def test_a_relative_data_directory_serves_python_functions(tmp_path: Path) -> None:
    """`make run` serves `./.lamina`: sandboxes must find code under a relative data dir."""
    server = LaminaServer(Path("relative-data"), cwd=tmp_path).start()
    try:
        client = server.client()
        create(client, "relative", "describe", Environment={"Variables": {"STAGE": "rel"}})
        response, result = call(client, "relative", {})
        assert "FunctionError" not in response, result
        assert result["stage"] == "rel"
        client.close()
    finally:
        server.stop()
