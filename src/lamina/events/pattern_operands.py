"""The operands of EventBridge's match conditions, checked and turned into tests.

IP addresses and CIDR blocks, wildcards, numeric ranges, and the helpers the pattern
compiler shares. Refusals raise `InvalidPattern` with EventBridge's reason.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

import orjson


class InvalidPattern(ValueError):
    """A pattern EventBridge (or Lambda's FilterCriteria) refuses; `str()` is the reason."""


MISSING: Final[Any] = object()  # the value of a field the event does not have

NUMBER_LIMIT: Final = 5e9  # numeric conditions hold between -5e9 and 5e9, inclusive
TOO_MANY = "Too many elements in numeric expression"  # AWS says so for anything-but too
IGNORE_CASE = "equals-ignore-case"
_LIMIT = "Value must be between -5.0E9 and 5.0E9, inclusive"
_OPERATORS = ("=", "<", "<=", ">", ">=")

# What AWS takes for an IP address literal (in the pattern and in the event).
_IPV4 = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6 = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")
_INTEGER = re.compile(r"[+-]?[0-9]+")

StrTest = Callable[[str], bool]
NumTest = Callable[[float], bool]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_array(value: Any) -> bool:
    return isinstance(value, list | tuple)


def token_text(value: Any) -> str:
    """How AWS's messages show a JSON value: a string bare, a container by its opening."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "{"
    if is_array(value):
        return "["
    return orjson.dumps(value).decode()


def flatten(items: Sequence[Any]) -> Sequence[Any]:
    """The elements of an event array, nested arrays opened (without recursion)."""
    for item in items:
        if type(item) is list or type(item) is tuple:
            return list(_opened(items))
    return items


def _opened(items: Sequence[Any]) -> Iterator[Any]:
    stack = [iter(items)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list | tuple):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def ip_address(text: str) -> tuple[int, int] | None:
    """(version, address) if `text` is an IP address literal as AWS reads one."""
    if _IPV4.fullmatch(text):
        parts = [int(part) for part in text.split(".")]
        if any(part > 255 for part in parts):
            return None
        return 4, (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]
    if _IPV6.fullmatch(text):
        try:
            return 6, int(ipaddress.IPv6Address(text))
        except ValueError:
            return None
    return None


def _cidr(text: str) -> tuple[int, int, int]:
    parts = text.split("/")
    while parts and not parts[-1]:  # as Java's split, which drops trailing empty parts
        parts.pop()
    if len(parts) != 2:
        raise InvalidPattern("Malformed CIDR, one '/' required")
    if not _INTEGER.fullmatch(parts[1]):
        raise InvalidPattern("Malformed CIDR, mask bits must be an integer")
    bits = int(parts[1])
    if bits < 0:
        raise InvalidPattern("Malformed CIDR, mask bits must not be negative")
    if not (_IPV4.fullmatch(parts[0]) or _IPV6.fullmatch(parts[0])):
        raise InvalidPattern(f"Nonstandard IP address: {parts[0]}")
    address = ip_address(parts[0])
    if address is None:
        raise InvalidPattern(f"Invalid IP address: {parts[0]}")
    version, base = address
    width = 32 if version == 4 else 128
    if bits >= width:
        raise InvalidPattern(f"IPv{version} mask bits must be < {width}")
    # AWS's range runs from the address as written to its last host address.
    return version, base, base | ((1 << (width - bits)) - 1)


def wildcard(text: str) -> re.Pattern[str]:
    """A regular expression for a wildcard value: `*` is any run, `\\*` and `\\\\` literal."""
    pieces: list[str] = []
    position = 1  # AWS counts UTF-8 bytes of the quoted value
    index = 0
    while index < len(text):
        char = text[index]
        if char == "*":
            if text.startswith("*", index + 1):
                raise InvalidPattern(f"Consecutive wildcard characters at pos {position}")
            pieces.append(".*")
        elif char == "\\":
            following = text[index + 1 : index + 2]
            if following not in ("*", "\\"):
                raise InvalidPattern(f"Invalid escape character at pos {position}")
            pieces.append(re.escape(following))
            position += 1
            index += 1
        else:
            pieces.append(re.escape(char))
        position += len(char.encode())
        index += 1
    return re.compile("".join(pieces), re.DOTALL)


def comparable(value: Any) -> float:
    if abs(value) > NUMBER_LIMIT:
        raise InvalidPattern(_LIMIT)
    return float(value)


def _range(bottom: float, bottom_open: bool, top: float, top_open: bool) -> NumTest:
    if bottom >= top:
        raise InvalidPattern("Bottom must be less than top")
    low, high = comparable(bottom), comparable(top)

    def test(value: float) -> bool:
        above = value > low if bottom_open else value >= low
        return above and (value < high if top_open else value <= high)

    return test


def numeric_test(terms: Sequence[Any]) -> NumTest:
    if not terms or not isinstance(terms[0], str):
        raise InvalidPattern(
            f"Invalid member in numeric match: {token_text(terms[0]) if terms else ']'}"
        )
    operator = terms[0]
    if operator not in _OPERATORS:
        raise InvalidPattern(f"Unrecognized numeric range operator: {operator}")
    if len(terms) < 2 or not is_number(terms[1]):
        raise InvalidPattern(f"Value of {operator} must be numeric")
    value = terms[1]
    if operator == "=":
        if len(terms) > 2:
            raise InvalidPattern(TOO_MANY)
        return _range_equal(comparable(value))
    if operator in ("<", "<="):
        if len(terms) > 2:
            raise InvalidPattern(TOO_MANY)
        return _range(-NUMBER_LIMIT, False, value, operator == "<")
    if len(terms) == 2:
        return _range(value, operator == ">", NUMBER_LIMIT, False)
    upper = terms[2]
    if not isinstance(upper, str):
        raise InvalidPattern(f"Bad value in numeric range: {token_text(upper)}")
    if upper not in ("<", "<="):
        raise InvalidPattern(f"Bad numeric range operator: {upper}")
    if len(terms) < 4 or not is_number(terms[3]):
        raise InvalidPattern(f"Value of {upper} must be numeric")
    if len(terms) > 4:
        raise InvalidPattern("Too many terms in numeric range expression")
    return _range(value, operator == ">", terms[3], upper == "<")


def _range_equal(expected: float) -> NumTest:
    return lambda value: value == expected


def refusing_test(kind: str, texts: list[str]) -> StrTest:
    """The test of an `anything-but` of prefixes, suffixes, ignored-case values or wildcards."""
    if kind == "prefix":
        starts = tuple(texts)
        return lambda value: not value.startswith(starts)
    if kind == "suffix":
        ends = tuple(texts)
        return lambda value: not value.endswith(ends)
    if kind == IGNORE_CASE:
        folded = frozenset(text.lower() for text in texts)
        return lambda value: value.lower() not in folded
    regexes = tuple(wildcard(text) for text in texts)
    return lambda value: not any(regex.fullmatch(value) for regex in regexes)


def network_test(cidr: str) -> StrTest:
    """The test of `{"cidr": ...}`: an IP address string inside the block."""
    version, low, high = _cidr(cidr)

    def test(value: str) -> bool:
        address = ip_address(value)
        return address is not None and address[0] == version and low <= address[1] <= high

    return test
