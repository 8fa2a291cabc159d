"""The Python runtime's `_X_AMZN_TRACE_ID`: seen everywhere, and no memory kept per value."""

from __future__ import annotations

import pytest

from tests.support.runtime_probe import run_probe

# Run on the interpreter under test, in the runtime's directory.
PROBE = """
import ctypes, os, subprocess
import bootstrap

NAME = bootstrap.TRACE_VARIABLE
getenv = ctypes.CDLL(None).getenv
getenv.restype = ctypes.c_char_p
variable = bootstrap.TraceVariable()

def entries():
    # The C environment's entries for the variable, raw (a stray one may lack its "=").
    environ = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    found, index = [], 0
    while environ[index] is not None:
        if environ[index].startswith(NAME.encode()):
            found.append(environ[index])
        index += 1
    return found

# Importing the runtime (as a template does) leaves nothing behind.
assert entries() == [], entries()

def views():
    child = subprocess.run(
        ["/bin/sh", "-c", 'printf %s "${_X_AMZN_TRACE_ID-unset}"'],
        capture_output=True, text=True, check=True,
    ).stdout
    in_c = getenv(NAME.encode())
    return os.environ.get(NAME), in_c.decode() if in_c is not None else None, child

# Each value, short, longer than the first buffers, short again, is what everyone reads.
for value in ("Root=1-a;Sampled=1", "Root=1-b;" + "Lineage=a87bd80c:0;" * 30, "Root=1-c"):
    variable.set(value)
    assert views() == (value, value, value), (views(), value)
# The handler may set or delete it; the next invocation's value replaces either.
os.environ[NAME] = "set by the handler"
variable.set("Root=1-d")
assert views() == ("Root=1-d",) * 3, views()
variable.clear()
assert views() == (None, None, "unset"), views()
assert entries() == [], entries()
del os.environ["PATH"]  # the mapping and the C environment still agree on the rest
variable.set("Root=1-e")
assert views() == ("Root=1-e",) * 3, views()
assert entries() == [b"_X_AMZN_TRACE_ID=Root=1-e"], entries()
# A NUL is refused as os.environ always refused it.
try:
    variable.set("Root=1-f\\0")
except ValueError:
    pass
else:
    raise AssertionError("a NUL was taken")
# Without putenv (no ctypes), os.environ alone, as before.
putenv, bootstrap._PUTENV = bootstrap._PUTENV, None
variable.set("Root=1-g")
assert views() == ("Root=1-g",) * 3, views()
bootstrap._PUTENV = putenv

def resident_kib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4

# setenv(3) keeps every value it was given: about 112 bytes a call, 22 MiB here.
before = resident_kib()
for index in range(200_000):
    variable.set("Root=1-6b15a798-%024x;Sampled=0" % index)
grown = resident_kib() - before
assert grown < 1024, grown
assert len(variable._held) == variable.HELD
print("ok")
"""


@pytest.mark.parametrize("runtime", ["python3.9", "python3.12", "python3.13"])
def test_each_value_is_seen_by_python_c_and_children_and_none_is_kept(runtime: str) -> None:
    status, output, errors = run_probe(runtime, PROBE, timeout=120)
    assert (status, output) == (0, "ok"), errors
