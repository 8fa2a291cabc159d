"""Make a template's objects immortal, so the runtimes it forks stop copying its pages.

A forked runtime shares its template's memory until it writes to it, and CPython writes to
every object it touches: using an object changes its reference count in place, and the page
holding that count is copied. An idle runtime held about 1.6 MiB of such copies, mostly
counts of the modules, functions and strings the template had loaded. CPython 3.12 made
some objects immortal (PEP 683): their count is never changed, so their pages stay shared.
This gives the template's own objects that count too.

What is made immortal is what the loaded modules hold, and only objects whose end has no
effect: containers, strings and numbers, code, functions, modules and classes, reached
through one another from the modules. Instances (which may have `__del__` or weak
references with callbacks), and their state, are neither changed nor walked through; nor is
anything no module reaches, such as the request the template was serving. An immortal
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
        and not hasattr(sys, "gettotalrefcount")  # a debug build: counts checked, traced
        and "t" not in getattr(sys, "abiflags", "")  # a free-threaded build: other fields
    )


def _endless(item: object) -> bool:
    return type(item) in _ENDLESS_TYPES or isinstance(item, type)


def make_immortal() -> int:
    """Make what the loaded modules hold immortal: each module and, through them, every
    object of `_ENDLESS_TYPES` or class reached through such objects alone. Return how
    many were. What a module reaches only through an instance (its state), and what no
    module reaches (a request being served, this walk's own bookkeeping), is left as it
    is: it would otherwise outlive its use in every runtime forked afterwards. Call it on
    one thread."""
    if not supported():
        return 0
    made = 0
    seen = set()
    pending = list(sys.modules.values())
    while pending:
        item = pending.pop()
        address = id(item)
        if address in seen or not _endless(item):
            continue
        seen.add(address)
        pending.extend(gc.get_referents(item))
        ctypes.c_ssize_t.from_address(address).value = _IMMORTAL_REFCNT
        made += 1
    return made
