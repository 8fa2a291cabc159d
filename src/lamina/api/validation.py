"""Request validation against the model's constraints, worded as AWS words it.

AWS rejects a value that breaks a shape constraint before the operation runs, with
`ValidationException` and `Value '<v>' at '<field>' failed to satisfy constraint: ...`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from botocore.model import Shape, StructureShape

from lamina.constants import (
    EPHEMERAL_MAX_MB,
    MEMORY_MAX_MB,
    TIMEOUT_MAX_S,
)
from lamina.errors import ValidationError

# The model allows Managed-Instances ranges; standard functions have tighter ones.
_STANDARD_MAXIMUMS = {
    "MemorySize": MEMORY_MAX_MB,
    "Timeout": TIMEOUT_MAX_S,
    "EphemeralStorageSize": EPHEMERAL_MAX_MB,
}


# Java's Unicode classes, which the model's tag patterns use and Python's `re` lacks.
_JAVA_CLASSES = {
    r"\p{L}": r"\w",
    r"\p{N}": r"\w",
    r"\p{Z}": "\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000",
}


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    for java, python in _JAVA_CLASSES.items():
        pattern = pattern.replace(java, python)
    return re.compile(pattern, re.DOTALL)


def _render(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_render(item) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, bytes):
        return "java.nio.HeapByteBuffer"
    return str(value)


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _check(shape: Shape, value: Any, where: str, errors: list[str]) -> None:
    def fail(constraint: str) -> None:
        errors.append(
            f"Value '{_render(value)}' at '{where}' failed to satisfy constraint: {constraint}"
        )

    meta = shape.metadata
    kind = shape.type_name
    if kind in {"string", "list", "map", "blob"}:
        length = len(value)
        if "min" in meta and length < meta["min"]:
            fail(f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and length > meta["max"]:
            fail(f"Member must have length less than or equal to {meta['max']}")
    if kind == "string":
        enum = meta.get("enum")
        if enum and value not in enum:
            fail(f"Member must satisfy enum value set: [{', '.join(enum)}]")
        pattern = meta.get("pattern")
        if pattern and not _compiled(pattern).fullmatch(value):
            fail(f"Member must satisfy regular expression pattern: {pattern}")
    elif kind in {"integer", "long", "double", "float"}:
        maximum = _STANDARD_MAXIMUMS.get(shape.name, meta.get("max"))
        if "min" in meta and value < meta["min"]:
            fail(f"Member must have value greater than or equal to {meta['min']}")
        if maximum is not None and value > maximum:
            fail(f"Member must have value less than or equal to {maximum}")
    elif kind == "structure":
        assert isinstance(shape, StructureShape)
        for required in shape.required_members:
            if value.get(required) is None:
                errors.append(
                    f"Value null at '{_join(where, required)}' failed to satisfy constraint: "
                    "Member must not be null"
                )
        for name, item in value.items():
            if item is not None and name in shape.members:
                _check(shape.members[name], item, _join(where, name), errors)
    elif kind == "list":
        for index, item in enumerate(value, start=1):
            if item is not None:
                _check(shape.member, item, f"{where}.{index}.member", errors)
    elif kind == "map":
        for key, item in value.items():
            _check(shape.key, key, f"{where}.key", errors)
            if item is not None:
                _check(shape.value, item, f"{where}.{key}.member", errors)


def _join(where: str, name: str) -> str:
    return f"{where}.{_camel(name)}" if where else _camel(name)


def validate(shape: StructureShape | None, params: dict[str, Any]) -> None:
    if shape is None:
        return
    errors: list[str] = []
    _check(shape, params, "", errors)
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        raise ValidationError(f"{len(errors)} validation {noun} detected: " + "; ".join(errors))
