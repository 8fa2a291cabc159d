"""Make a template's objects immortal, so the runtimes it forks stop copying its pages.

A forked runtime shares its template's memory until it writes to it, and CPython writes to
every object it touches: using an object changes its reference count in place, and the page
holding that count is copied. An idle runtime held about 1.6 MiB of such copies, mostly
counts of the modules, functions and strings the template had loaded. CPython 3.12 made
some objects immortal (PEP 683): their count is never changed, so their pages stay shared.
This gives the template's own objects that count too.

Only objects whose end has no effect are made immortal: containers, strings and numbers,
code, functions, modules and classes. Files, sockets, generators and instances of classes
(which may have `__del__` or weak references with callbacks) end as before. An immortal
object is never freed, nor is what it holds until it lets go: a runtime closes what it
inherits explicitly, and what the template has loaded lives as long as it anyway.

Runs on the function's interpreter (stdlib only). Anywhere the layout is not the one PEP 683
describes for 3.12 and 3.13 (other versions, other implementations, 32-bit builds, debug
builds that trace references, free-threaded builds) it does nothing.
"""

import ctypes
import gc
import sys
import types

# PEP 683's immortal count on 64-bit builds of 3.12 and 3.13: the low 32 bits all set.
# Increments there saturate and decrements are skipped.
_IMMORTAL_REFCNT = 0xFFFFFFFF

# Objects that can live for ever without anyone noticing: nothing runs when they end.
_ENDLESS_TYPES = frozenset(
    (
        bool,
        bytes,
        classmethod,
        complex,
        dict,
        float,
        frozenset,
        int,
        list,
        property,
        set,
        staticmethod,
        str,
        tuple,
        type(None),
        types.BuiltinFunctionType,
        types.CellType,
        types.ClassMethodDescriptorType,
        types.CodeType,
        types.FunctionType,
        types.GetSetDescriptorType,
        types.MappingProxyType,
        types.MemberDescriptorType,
        types.MethodDescriptorType,
        types.ModuleType,
        types.SimpleNamespace,
        types.WrapperDescriptorType,
    )
)


def supported() -> bool:
    """Whether this interpreter keeps counts where PEP 683 says, for 3.12 and 3.13."""
    return (
        sys.implementation.name == "cpython"
        and sys.version_info[:2] in ((3, 12), (3, 13))
        and sys.maxsize > 2**32
        and not hasattr(sys, "getobjects")  # a Py_TRACE_REFS build: other header fields
        and "t" not in getattr(sys, "abiflags", "")  # a free-threaded build: other fields
    )


def make_immortal() -> int:
    """Make every object reachable from the collector's lists immortal where its type is one
    of `_ENDLESS_TYPES` or a class; return how many were. Call it with nothing frozen
    (`gc.freeze` hides objects from the lists this walks) and on one thread."""
    if not supported():
        return 0
    made = 0
    seen = set()
    pending = gc.get_objects()
    while pending:
        item = pending.pop()
        address = id(item)
        if address in seen:
            continue
        seen.add(address)
        # Everything is walked, so that the strings and numbers an instance holds (which
        # the collector does not list) are found; only what may live for ever is changed.
        pending.extend(gc.get_referents(item))
        if type(item) in _ENDLESS_TYPES or isinstance(item, type):
            ctypes.c_ssize_t.from_address(address).value = _IMMORTAL_REFCNT
            made += 1
    return made
