"""EventBridge event patterns: the one engine behind rules and event-source-mapping filters.

    pattern = compile_pattern('{"source": ["my.app"], "detail": {"n": [{"numeric": [">", 0]}]}}')
    pattern.matches(event)

A pattern is a JSON object. Its fields are ANDed; each leaf is an array of match conditions,
ORed (`pattern_leaves` compiles those); nested objects follow the event's nesting; `$or`
takes two or more objects of which one must match, at any level. `compile_pattern` checks
everything once and raises `InvalidPattern` with EventBridge's reason; `matches` then only
walks the event: no JSON parsing, no regular expression built.

Arrays of objects in the event: a nested pattern matches if one element matches all of it
(the conditions are not spread over several elements), while `{"exists": false}` under it
holds only if no element has the field, as on AWS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from lamina.events.pattern_leaves import Leaf, compile_leaf
from lamina.events.pattern_operands import MISSING, InvalidPattern, flatten, is_array

__all__ = ["EventPattern", "InvalidPattern", "compile_pattern"]

OR: Final = "$or"
MAX_DEPTH: Final = 100  # nested objects ($or branches count): Lamina's bound, not AWS's
MAX_CONDITIONS: Final = 10_000  # match conditions in all: Lamina's bound, not AWS's

# Field names EventBridge refuses inside `$or`: the operators, and words it keeps for later.
RESERVED: Final = frozenset(
    {
        "exactly",
        "equals-ignore-case",
        "prefix",
        "suffix",
        "anything-but",
        "exists",
        "wildcard",
        "numeric",
        "cidr",
        "html",
        "=",
        "<",
        "<=",
        ">",
        ">=",
        "regex",
        "not-wildcard",
        "not-equals-ignore-case",
        "date-after",
        "date-on-or-after",
        "date-before",
        "date-on-or-before",
        "in-date-range",
        "ip-address-in-range",
        "ip-address-not-in-range",
    }
)

_EMPTY: Final[Mapping[str, Any]] = {}
Path = tuple[str, ...]


class _Node:
    """One object of the pattern: leaves, nested objects and `$or` groups, all ANDed."""

    __slots__ = ("absent", "children", "empty", "groups", "leaves")

    def __init__(
        self,
        leaves: tuple[tuple[str, Leaf], ...],
        children: tuple[tuple[str, _Node], ...],
        groups: tuple[tuple[_Node, ...], ...],
    ) -> None:
        self.leaves = leaves
        self.children = children
        self.groups = groups
        # Paths below this object that must hold no value anywhere ({"exists": false}).
        self.absent: tuple[Path, ...] = tuple(
            [(key,) for key, leaf in leaves if leaf.only_absent]
            + [(key, *path) for key, child in children for path in child.absent]
        )
        self.empty = True
        self.empty = self.match(_EMPTY)  # the answer for a field that holds no object

    def match(self, obj: Mapping[str, Any]) -> bool:
        get = obj.get
        for key, leaf in self.leaves:
            if not leaf.match(get(key, MISSING)):
                return False
        for key, child in self.children:
            if not child.match_value(get(key, MISSING)):
                return False
        for group in self.groups:
            for branch in group:
                if branch.match(obj):
                    break
            else:
                return False
        return True

    def match_value(self, value: Any) -> bool:
        kind = type(value)
        if kind is dict:
            return self.match(value)
        if kind is list or kind is tuple:
            return self._match_array(value)
        if value is not MISSING and isinstance(value, Mapping):
            return self.match(value)
        return self.empty  # missing, or a plain value: no field of ours is there

    def _match_array(self, value: Sequence[Any]) -> bool:
        items = flatten(value)
        if self.absent:
            objects = [item for item in items if type(item) is dict or isinstance(item, Mapping)]
            if any(_holds(objects, path) for path in self.absent):
                return False
            items = objects
        found = False
        for item in items:
            if type(item) is dict or isinstance(item, Mapping):
                if self.match(item):
                    return True
                found = True
        return not found and self.empty


def _holds(objects: list[Mapping[str, Any]], path: Path) -> bool:
    """Whether any of `objects` has a value (not an object) at `path`."""
    level: list[Any] = objects
    for key in path:
        following: list[Any] = []
        for item in level:
            if isinstance(item, Mapping):
                value = item.get(key, MISSING)
                if is_array(value):
                    following.extend(flatten(value))
                elif value is not MISSING:
                    following.append(value)
        level = following
    return any(not isinstance(item, Mapping) for item in level)


class _Compiler:
    def __init__(self) -> None:
        self.conditions = 0

    def node(self, document: Mapping[Any, Any], depth: int, inside_or: bool) -> _Node:
        if depth > MAX_DEPTH:
            raise InvalidPattern(f"Pattern is nested more than {MAX_DEPTH} levels deep")
        leaves: list[tuple[str, Leaf]] = []
        children: list[tuple[str, _Node]] = []
        groups: list[tuple[_Node, ...]] = []
        for key, value in document.items():
            if not isinstance(key, str):
                raise InvalidPattern(f"Field name {key!r} is not a string")
            if key == OR:
                groups.append(self.group(value, depth))
                continue
            if inside_or and key in RESERVED:
                raise InvalidPattern(
                    f"{key} is Ruler reserved fieldName which cannot be used inside {OR}."
                )
            if isinstance(value, Mapping):
                children.append((key, self.node(value, depth + 1, inside_or)))
            elif is_array(value):
                self.conditions += len(value)
                if self.conditions > MAX_CONDITIONS:
                    raise InvalidPattern(f"Pattern has more than {MAX_CONDITIONS} match values")
                leaves.append((key, compile_leaf(value)))
            else:
                raise InvalidPattern(f'"{key}" must be an object or an array')
        if not document:
            raise InvalidPattern("Empty objects are not allowed")
        return _Node(tuple(leaves), tuple(children), tuple(groups))

    def group(self, value: Any, depth: int) -> tuple[_Node, ...]:
        if not is_array(value):
            raise InvalidPattern(f"It must be an Array followed with {OR}.")
        branches = []
        for item in value:
            if not isinstance(item, Mapping):
                raise InvalidPattern(f"Only JSON object is allowed in array of {OR} relationship.")
            branches.append(self.node(item, depth + 1, inside_or=True))
        if len(branches) < 2:
            raise InvalidPattern(f"There must have at least 2 Objects in {OR} relationship.")
        return tuple(branches)


class EventPattern:
    """A compiled pattern. `matches` is safe to call from any thread."""

    __slots__ = ("_root",)

    def __init__(self, root: _Node) -> None:
        self._root = root

    def matches(self, event: Mapping[str, Any]) -> bool:
        if type(event) is not dict and not isinstance(event, Mapping):
            return False
        return self._root.match(event)


def compile_pattern(pattern: str | Mapping[str, Any]) -> EventPattern:
    """Check and compile a pattern (JSON text or its parsed object); raises InvalidPattern."""
    document: Any = pattern
    if isinstance(pattern, str):
        try:
            document = orjson.loads(pattern)
        except orjson.JSONDecodeError as error:
            raise InvalidPattern(str(error)) from None
    if not isinstance(document, Mapping):
        raise InvalidPattern("Filter is not an object")
    return EventPattern(_Compiler().node(document, 1, inside_or=False))
