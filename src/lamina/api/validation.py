"""Request validation against the model's constraints, worded as AWS words it.

AWS rejects a value that breaks a shape constraint before the operation runs, with
`ValidationException` and `Value '<v>' at '<field>' failed to satisfy constraint: ...`.
A list or map whose members break a constraint is reported once, as the whole value at the
list's name, with every constraint on its members:
`Value '[X86_64]' at 'architectures' failed to satisfy constraint: Member must satisfy
constraint: [Member must satisfy enum value set: [x86_64, arm64], Member must not be null]`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from botocore.model import Shape, StructureShape

from lamina.constants import (
    AWS_CREATE_RUNTIMES,
    AWS_LAYER_FILTER_RUNTIMES,
    EPHEMERAL_MAX_MB,
    MEMORY_MAX_MB,
    TIMEOUT_MAX_S,
)
from lamina.errors import InvalidParameterValue, ValidationError

# The model allows Managed-Instances ranges; standard functions have tighter ones.
_STANDARD_MAXIMUMS = {
    "MemorySize": MEMORY_MAX_MB,
    "Timeout": TIMEOUT_MAX_S,
    "EphemeralStorageSize": EPHEMERAL_MAX_MB,
}

# Enums AWS prints in its own model's order, which is not botocore's (recorded on AWS).
_ENUM_ORDER: dict[str, tuple[str, ...]] = {
    "RecursiveLoop": ("Terminate", "Allow"),
    "InvokeMode": ("RESPONSE_STREAM", "BUFFERED"),
    "EventSourcePosition": ("LATEST", "AT_TIMESTAMP", "TRIM_HORIZON"),
}

_SCALARS = frozenset({"string", "integer", "long", "double", "float", "boolean", "blob"})

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
    """A value as AWS's (Java) validator prints it: `[a, b]`, `{k=v}`, `true`."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_render(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_render(item)}" for key, item in value.items()) + "}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, bytes):
        return "java.nio.HeapByteBuffer"
    return str(value)


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _enum_text(shape: Shape, where: str) -> str:
    if shape.name == "Runtime" and where == "compatibleRuntime":
        values: tuple[str, ...] | list[str] = AWS_LAYER_FILTER_RUNTIMES
    else:
        values = _ENUM_ORDER.get(shape.name) or shape.metadata["enum"]
    return f"Member must satisfy enum value set: [{', '.join(values)}]"


def _maximum(shape: Shape) -> Any:
    return _STANDARD_MAXIMUMS.get(shape.name, shape.metadata.get("max"))


def _violations(shape: Shape, value: Any, where: str = "") -> list[str]:
    """The constraints of a scalar (or of a list's or map's own length) that `value` breaks."""
    meta = shape.metadata
    kind = shape.type_name
    broken: list[str] = []
    if kind in {"string", "list", "map", "blob"}:
        length = len(value)
        if "min" in meta and length < meta["min"]:
            broken.append(f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and length > meta["max"]:
            broken.append(f"Member must have length less than or equal to {meta['max']}")
    if kind == "string":
        enum = meta.get("enum")
        if enum and value not in enum:
            broken.append(_enum_text(shape, where))
        pattern = meta.get("pattern")
        if pattern and not _compiled(pattern).fullmatch(value):
            broken.append(f"Member must satisfy regular expression pattern: {pattern}")
    elif kind in {"integer", "long", "double", "float"}:
        maximum = _maximum(shape)
        if "min" in meta and value < meta["min"]:
            broken.append(f"Member must have value greater than or equal to {meta['min']}")
        if maximum is not None and value > maximum:
            broken.append(f"Member must have value less than or equal to {maximum}")
    return broken


def _member_constraints(shape: Shape) -> str:
    """Every constraint on a list's or map's members, in the order AWS lists them."""
    meta = shape.metadata
    kind = shape.type_name
    constraints: list[str] = []
    if kind in {"string", "blob"}:
        if "max" in meta:
            constraints.append(f"Member must have length less than or equal to {meta['max']}")
        if "min" in meta:
            constraints.append(f"Member must have length greater than or equal to {meta['min']}")
    elif kind in {"integer", "long", "double", "float"}:
        maximum = _maximum(shape)
        if maximum is not None:
            constraints.append(f"Member must have value less than or equal to {maximum}")
        if "min" in meta:
            constraints.append(f"Member must have value greater than or equal to {meta['min']}")
    if "pattern" in meta:
        constraints.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    if "enum" in meta:
        constraints.append(_enum_text(shape, ""))
    constraints.append("Member must not be null")
    return "[" + ", ".join(constraints) + "]"


def _members_break(shape: Shape, values: Any) -> bool:
    return any(item is None or _violations(shape, item) for item in values)


class _Checker:
    """Walks one request, collecting AWS-worded violations."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, shape: Shape, value: Any, where: str, constraint: str) -> None:
        # Sensitive values (environment variables) are not echoed back.
        shown = "" if shape.metadata.get("sensitive") else f" '{_render(value)}'"
        self.errors.append(f"Value{shown} at '{where}' failed to satisfy constraint: {constraint}")

    def check(self, shape: Shape, value: Any, where: str) -> None:
        kind = shape.type_name
        if kind == "string" and shape.name == "Runtime" and where == "runtime":
            _check_function_runtime(shape, value)
            return
        for constraint in _violations(shape, value, where):
            self.fail(shape, value, where, constraint)
        if kind == "structure":
            assert isinstance(shape, StructureShape)
            for required in shape.required_members:
                if value.get(required) is None:
                    self.errors.append(
                        f"Value null at '{_join(where, required)}' failed to satisfy "
                        "constraint: Member must not be null"
                    )
            # In the model's member order, the order AWS reports violations in.
            for name, member in shape.members.items():
                item = value.get(name)
                if item is not None:
                    self.check(member, item, _join(where, name))
        elif kind == "list":
            self._check_list(shape, value, where)
        elif kind == "map":
            self._check_map(shape, value, where)

    def _check_list(self, shape: Shape, value: list[Any], where: str) -> None:
        member = shape.member
        if member.type_name not in _SCALARS:
            for index, item in enumerate(value, start=1):
                if item is not None:
                    self.check(member, item, f"{where}.{index}.member")
            return
        if not _members_break(member, value):
            return
        if where == "compatibleRuntimes":
            # AWS checks a layer's runtimes against the runtimes it accepts for functions.
            runtimes = ", ".join(AWS_CREATE_RUNTIMES)
            self.fail(shape, value, where, f"Member must satisfy enum value set: [{runtimes}]")
        elif where == "compatibleArchitectures":
            self.fail(
                shape,
                value,
                where,
                f"Member must satisfy constraint: [{_enum_text(member, where)}]",
            )
        else:
            constraint = f"Member must satisfy constraint: {_member_constraints(member)}"
            self.fail(shape, value, where, constraint)

    def _check_map(self, shape: Shape, value: dict[str, Any], where: str) -> None:
        key_shape, value_shape = shape.key, shape.value
        if _members_break(key_shape, value):
            constraint = f"Map keys must satisfy constraint: {_member_constraints(key_shape)}"
            self.fail(shape, value, where, constraint)
        if value_shape.type_name in _SCALARS:
            if _members_break(value_shape, value.values()):
                constraint = (
                    f"Map value must satisfy constraint: {_member_constraints(value_shape)}"
                )
                self.fail(shape, value, where, constraint)
            return
        for key, item in value.items():
            if item is not None:
                self.check(value_shape, item, f"{where}.{key}.member")


def _check_function_runtime(shape: Shape, runtime: str) -> None:
    """A function's runtime may also be an ARN, so AWS refuses an unknown one with
    InvalidParameterValueException rather than a validation error, listing the runtimes
    it accepts for new functions. (Known but retired runtimes are refused by the domain.)"""
    if runtime in shape.metadata.get("enum", ()):
        return
    raise InvalidParameterValue(
        f"Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy "
        f"enum value set: [{', '.join(AWS_CREATE_RUNTIMES)}] or be a valid ARN"
    )


def _join(where: str, name: str) -> str:
    return f"{where}.{_camel(name)}" if where else _camel(name)


def validate(shape: StructureShape | None, params: dict[str, Any]) -> None:
    if shape is None:
        return
    checker = _Checker()
    checker.check(shape, params, "")
    errors = checker.errors
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        raise ValidationError(f"{len(errors)} validation {noun} detected: " + "; ".join(errors))
