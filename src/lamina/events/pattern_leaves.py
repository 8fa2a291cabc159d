"""The leaves of an EventBridge event pattern: one array of match conditions, compiled once.

`compile_leaf` turns `["a", {"prefix": "b"}, {"numeric": [">", 0]}]` into a `Leaf`, which
answers for the value an event holds at that field. Conditions are ORed. The refusal reasons
are EventBridge's (its rule compiler's wording, as AWS returns it after "Reason: ").

Event values are typed as in JSON: a string condition never matches a number, nor a number
condition a string. Numbers compare by value (5 matches 5.0); numeric conditions cover
-5e9..5e9, as on AWS. `anything-but` matches every value of another type (a number, true or
null against a string list), as on AWS. An array in the event matches if one of its
elements does; objects are not leaves, so only `{"exists": false}` matches a field holding
one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lamina.events.pattern_operands import (
    IGNORE_CASE,
    MISSING,
    NUMBER_LIMIT,
    TOO_MANY,
    InvalidPattern,
    NumTest,
    StrTest,
    comparable,
    flatten,
    ip_address,
    is_array,
    is_number,
    network_test,
    numeric_test,
    refusing_test,
    wildcard,
)

_ONE_KEY = "Only one key allowed in match expression"


def _string(operand: Any, reason: str) -> str:
    if not isinstance(operand, str):
        raise InvalidPattern(reason)
    return operand


def _only_key(expression: Mapping[str, Any], reason: str = _ONE_KEY) -> None:
    if len(expression) > 1:
        raise InvalidPattern(reason)


class _Builder:
    """Collects one leaf's conditions into sets and tests, then freezes them into a Leaf."""

    def __init__(self) -> None:
        self.strings: set[str] = set()
        self.numbers: set[float] = set()
        self.addresses: set[tuple[int, int]] = set()
        self.null = self.true = self.false = False
        self.absent = self.present = False
        self.values = 0  # conditions other than exists
        self.any_string = self.any_number = self.any_other = False
        self.any_large = False  # numbers beyond the numeric range (numeric anything-but)
        self.prefixes: list[str] = []
        self.suffixes: list[str] = []
        self.folded: set[str] = set()
        self.folded_prefixes: list[str] = []
        self.folded_suffixes: list[str] = []
        self.str_tests: list[StrTest] = []
        self.num_tests: list[NumTest] = []

    # ---------------------------------------------------------------- plain values

    def value(self, item: Any) -> None:
        self.values += 1
        if isinstance(item, str):
            self.strings.add(item)
            address = ip_address(item)
            if address is not None:
                self.addresses.add(address)
        elif item is None:
            self.null = True
        elif item is True:
            self.true = True
        elif item is False:
            self.false = True
        elif is_number(item):
            self.numbers.add(item)
        else:
            raise InvalidPattern("Match value must be String, number, true, false, or null")

    # ---------------------------------------------------------------- {"operator": ...}

    def expression(self, expression: Mapping[str, Any]) -> None:
        if not expression:
            raise InvalidPattern("Match expression name not found")
        name, operand = next(iter(expression.items()))
        if name == "exists":
            if not isinstance(operand, bool):
                raise InvalidPattern("exists match pattern must be either true or false.")
            _only_key(expression)
            if operand:
                self.present = True
            else:
                self.absent = True
            return
        self.values += 1
        if name in ("prefix", "suffix"):
            self._affix(name, operand, expression)
        elif name == IGNORE_CASE:
            self.folded.add(_string(operand, f"{IGNORE_CASE} match pattern must be a string"))
            _only_key(expression)
        elif name == "wildcard":
            regex = wildcard(_string(operand, "wildcard match pattern must be a string"))
            _only_key(expression)
            self.str_tests.append(lambda value: regex.fullmatch(value) is not None)
        elif name == "cidr":
            # AWS's wording for a cidr that is not a string names prefix: kept as is.
            test = network_test(_string(operand, "prefix match pattern must be a string"))
            _only_key(expression)
            self.str_tests.append(test)
        elif name == "numeric":
            if not is_array(operand):
                raise InvalidPattern("Value of numeric must be an array.")
            self.num_tests.append(numeric_test(operand))
            _only_key(expression, TOO_MANY)
        elif name == "anything-but":
            self._anything_but(operand)
            _only_key(expression, TOO_MANY)
        else:
            raise InvalidPattern(f"Unrecognized match type {name}")

    def _affix(self, name: str, operand: Any, expression: Mapping[str, Any]) -> None:
        if isinstance(operand, Mapping):
            label = name.capitalize()
            if not operand:
                raise InvalidPattern(f"{label} expression name not found")
            inner = next(iter(operand))
            if inner != IGNORE_CASE:
                raise InvalidPattern(f"Unsupported {name} pattern: {inner}")
            text = _string(operand[inner], f"{IGNORE_CASE} match pattern must be a string")
            _only_key(operand)
            _only_key(expression)
            folded = self.folded_prefixes if name == "prefix" else self.folded_suffixes
            folded.append(text.lower())
            return
        text = _string(operand, f"{name} match pattern must be a string")
        _only_key(expression)
        (self.prefixes if name == "prefix" else self.suffixes).append(text)

    def _anything_but(self, operand: Any) -> None:
        kind = None
        if isinstance(operand, Mapping):
            if not operand:
                raise InvalidPattern("Anything-But expression name not found")
            kind = next(iter(operand))
            if kind not in (IGNORE_CASE, "prefix", "suffix", "wildcard"):
                raise InvalidPattern(f"Unsupported anything-but pattern: {kind}")
            inner = operand[kind]
            if not (isinstance(inner, str) or is_array(inner) or is_number(inner)):
                raise InvalidPattern(
                    "Value of anything-but must be an array or single string/number value."
                )
            self._anything_but_of(kind, inner if is_array(inner) else [inner])
            _only_key(operand, TOO_MANY)
            return
        if not (isinstance(operand, str) or is_array(operand) or is_number(operand)):
            raise InvalidPattern(
                "Value of anything-but must be an array or single string/number value."
            )
        values = operand if is_array(operand) else [operand]
        strings: set[str] = set()
        numbers: set[float] = set()
        for item in values:
            if isinstance(item, str):
                strings.add(item)
            elif is_number(item):
                comparable(item)
                numbers.add(item)
            else:
                raise InvalidPattern(
                    "Inside anything but list, start|null|boolean is not supported."
                )
        if bool(strings) == bool(numbers):
            raise InvalidPattern(
                "Inside anything but list, either all values are number or string, "
                "mixed type is not supported"
            )
        self.any_other = True
        if strings:
            self.any_number = True
            excluded = frozenset(strings)
            self.str_tests.append(lambda value: value not in excluded)
        else:
            self.any_string = self.any_large = True
            refused = frozenset(numbers)
            self.num_tests.append(lambda value: value not in refused)

    def _anything_but_of(self, kind: str, values: Sequence[Any]) -> None:
        texts: list[str] = []
        for item in values:
            if not isinstance(item, str):
                if kind == IGNORE_CASE:
                    raise InvalidPattern(
                        "Inside anything-but/equals-ignore-case list, "
                        "number|start|null|boolean is not supported."
                    )
                if kind == "wildcard":
                    raise InvalidPattern("wildcard match pattern must be a string")
                raise InvalidPattern("prefix/suffix match pattern must be a string")
            if kind in ("prefix", "suffix") and not item:
                raise InvalidPattern("Null prefix/suffix not allowed")
            texts.append(item)
        self.any_number = self.any_other = True
        self.str_tests.append(refusing_test(kind, texts))

    # ---------------------------------------------------------------- freezing

    def build(self) -> Leaf:
        tests = list(self.str_tests)
        if self.prefixes:
            starts = tuple(self.prefixes)
            tests.insert(0, lambda value: value.startswith(starts))
        if self.suffixes:
            ends = tuple(self.suffixes)
            tests.insert(0, lambda value: value.endswith(ends))
        if self.folded:
            folded = frozenset(text.lower() for text in self.folded)
            tests.append(lambda value: value.lower() in folded)
        if self.folded_prefixes:
            lower_starts = tuple(self.folded_prefixes)
            tests.append(lambda value: value.lower().startswith(lower_starts))
        if self.folded_suffixes:
            lower_ends = tuple(self.folded_suffixes)
            tests.append(lambda value: value.lower().endswith(lower_ends))
        if self.addresses:
            addresses = frozenset(self.addresses)
            tests.append(lambda value: ip_address(value) in addresses)
        return Leaf(self, tuple(tests))


class Leaf:
    """One field's conditions; `match` takes the event's value there (or MISSING)."""

    __slots__ = (
        "absent",
        "any_large",
        "any_number",
        "any_other",
        "any_string",
        "false",
        "null",
        "num_tests",
        "numbers",
        "only_absent",
        "str_tests",
        "strings",
        "true",
    )

    def __init__(self, builder: _Builder, str_tests: tuple[StrTest, ...]) -> None:
        present = builder.present
        self.strings = frozenset(builder.strings)
        self.numbers = frozenset(builder.numbers)
        self.null = builder.null or present or builder.any_other
        self.true = builder.true or present or builder.any_other
        self.false = builder.false or present or builder.any_other
        self.absent = builder.absent
        self.only_absent = builder.absent and not present and builder.values == 0
        self.any_string = present or builder.any_string
        self.any_number = present or builder.any_number
        self.any_large = builder.any_large
        self.str_tests = str_tests
        self.num_tests = tuple(builder.num_tests)

    def match(self, value: Any) -> bool:
        kind = type(value)
        if kind is str:  # the usual case, answered here
            if self.any_string or value in self.strings:
                return True
            for test in self.str_tests:  # noqa: SIM110 (no generator on the hot path)
                if test(value):
                    return True
            return False
        if value is MISSING:
            return self.absent
        if kind is list or kind is tuple:
            found = False
            for item in flatten(value):
                if type(item) is dict or isinstance(item, Mapping):
                    continue
                if self._one(item):
                    return True
                found = True
            return not found and self.absent
        return self._one(value)

    def _one(self, value: Any) -> bool:
        # The hot path: exact types first, as isinstance against an ABC costs more.
        kind = type(value)
        if kind is str:
            if self.any_string or value in self.strings:
                return True
            for test in self.str_tests:  # noqa: SIM110 (no generator on the hot path)
                if test(value):
                    return True
            return False
        if kind is int or kind is float:
            if self.any_number or value in self.numbers:
                return True
            if -NUMBER_LIMIT <= value <= NUMBER_LIMIT:
                for number_test in self.num_tests:  # noqa: SIM110
                    if number_test(value):
                        return True
                return False
            # Beyond AWS's numeric range a number is not numeric: numeric conditions miss it
            # and a numeric anything-but takes it, as a value of another type.
            return self.any_large
        if value is None:
            return self.null
        if kind is bool:
            return self.true if value else self.false
        if kind is dict or isinstance(value, Mapping):
            return self.absent  # an object is not a leaf: the field holds no value
        if isinstance(value, str | int | float):  # subclasses, as exotic callers may pass
            return self._one(str(value) if isinstance(value, str) else float(value))
        return False


def compile_leaf(conditions: Sequence[Any]) -> Leaf:
    """A field's array of match conditions, compiled; raises InvalidPattern."""
    builder = _Builder()
    for item in conditions:
        if isinstance(item, Mapping):
            builder.expression(item)
        else:
            builder.value(item)
    if not conditions:
        raise InvalidPattern("Empty arrays are not allowed")
    return builder.build()
