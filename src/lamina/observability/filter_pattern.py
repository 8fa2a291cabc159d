"""CloudWatch Logs filter patterns: terms, phrases, `?` (any of) and `-` (none of), JSON
patterns such as `{ $.level = "ERROR" && $.latency > 500 }`, and `%regex%`.

Matching is case-sensitive, as in CloudWatch Logs. A compiled pattern also offers substring
tests the store evaluates first (a `MessageFilter`): for term patterns they are the whole test,
so a search over a million lines runs inside the database; for JSON patterns they are a cheap
necessary condition, and Python checks the messages that pass them.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from lamina.errors import InvalidParameter


@dataclass(frozen=True)
class FilterPattern:
    """A compiled pattern: the substring tests narrow in the store, `test` decides.

    When `exact` is true the substring tests are the whole test and messages that pass them
    need no Python at all.
    """

    test: Callable[[str], bool] = field(default=lambda message: True)
    all_of: tuple[str, ...] = ()
    none_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    exact: bool = True

    def matches(self, message: str) -> bool:
        return self.test(message)


def compile_pattern(text: str | None) -> FilterPattern:
    text = (text or "").strip()
    if not text:
        return FilterPattern()
    if text.startswith("{"):
        return _json_pattern(text)
    if len(text) > 1 and text.startswith("%") and text.endswith("%"):
        return _regex_pattern(text[1:-1])
    if text.startswith("["):
        raise InvalidParameter(
            "Invalid filter pattern: space-delimited patterns ([...]) are not supported by Lamina"
        )
    return _term_pattern(text)


def _invalid(why: str) -> InvalidParameter:
    return InvalidParameter(f"Invalid filter pattern: {why}")


# ---------------------------------------------------------------------------- terms


def _term_pattern(text: str) -> FilterPattern:
    try:
        words = shlex.split(text, posix=True)
    except ValueError as error:
        raise _invalid(str(error)) from None
    required, optional, excluded = [], [], []
    for word in words:
        if word.startswith("?") and len(word) > 1:
            optional.append(word[1:])
        elif word.startswith("-") and len(word) > 1:
            excluded.append(word[1:])
        else:
            required.append(word)

    def test(message: str) -> bool:
        return (
            all(term in message for term in required)
            and not any(term in message for term in excluded)
            and (not optional or any(term in message for term in optional))
        )

    return FilterPattern(
        test=test, all_of=tuple(required), none_of=tuple(excluded), any_of=tuple(optional)
    )


# ---------------------------------------------------------------------------- regex


def _regex_pattern(expression: str) -> FilterPattern:
    try:
        compiled = re.compile(expression)
    except re.error as error:
        raise _invalid(f"bad regular expression: {error}") from None
    return FilterPattern(test=lambda message: compiled.search(message) is not None, exact=False)


# ----------------------------------------------------------------------------- JSON

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>&&|\|\||!=|<=|>=|=|<|>|\(|\))
      | (?P<selector>\$(?:\.[A-Za-z0-9_@\-]+|\[\d+\])*)
      | (?P<word>[^\s()&|=!<>"]+)
    )""",
    re.VERBOSE,
)
_MISSING = object()


def _tokens(body: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    body = body.rstrip()
    while position < len(body):
        match = _TOKEN.match(body, position)
        if match is None or match.end() == position:
            raise _invalid(f"unexpected text at {body[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


# A parsed expression: its test, and literal strings every matching line must contain.
Parsed = tuple[Callable[[Any], bool], frozenset[str]]


class _Parser:
    """Recursive descent over `||`, `&&`, parentheses and comparisons."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self._tokens = tokens
        self._at = 0

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise _invalid("the pattern ends too early")
        self._at += 1
        return token

    def parse(self) -> Parsed:
        parsed = self._or()
        extra = self._peek()
        if extra is not None:
            raise _invalid(f"unexpected {extra[1]!r}")
        return parsed

    def _or(self) -> Parsed:
        parts = [self._and()]
        while self._peek() == ("op", "||"):
            self._take()
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        tests = [test for test, _ in parts]
        # Only what every alternative needs is needed.
        needed = frozenset.intersection(*(literals for _, literals in parts))
        return (lambda document: any(test(document) for test in tests)), needed

    def _and(self) -> Parsed:
        parts = [self._unary()]
        while self._peek() == ("op", "&&"):
            self._take()
            parts.append(self._unary())
        if len(parts) == 1:
            return parts[0]
        tests = [test for test, _ in parts]
        needed = frozenset().union(*(literals for _, literals in parts))
        return (lambda document: all(test(document) for test in tests)), needed

    def _unary(self) -> Parsed:
        if self._peek() == ("op", "("):
            self._take()
            parsed = self._or()
            if self._take() != ("op", ")"):
                raise _invalid("a parenthesis is not closed")
            return parsed
        return self._comparison()

    def _comparison(self) -> Parsed:
        kind, selector = self._take()
        if kind != "selector":
            raise _invalid(f"expected a selector such as $.field, found {selector!r}")
        path = _path(selector)
        kind, operator = self._take()
        if kind == "word" and operator.upper() in {"IS", "NOT"}:
            return self._keyword(path, operator.upper()), frozenset()
        if kind != "op" or operator not in {"=", "!=", "<", ">", "<=", ">="}:
            raise _invalid(f"expected a comparison after {selector}, found {operator!r}")
        kind, raw = self._take()
        value: Any
        if kind == "string":
            value, quoted = orjson.loads(raw), True
        elif kind == "word":
            number = _number(raw)
            value, quoted = (raw if number is None else number), False
        else:
            raise _invalid(f"expected a value after {operator}, found {raw!r}")
        literals: frozenset[str] = frozenset()
        if operator == "=" and isinstance(value, str):
            # JSON may escape other characters, so only plain words are safe to look for.
            literal = value.split("*")[0]
            if literal.isascii() and literal.isalnum():
                literals = frozenset({literal})
        return _compare(path, operator, value, quoted), literals

    def _keyword(self, path: list[str | int], first: str) -> Callable[[Any], bool]:
        _, second = self._take()
        word = second.upper()
        if first == "NOT" and word == "EXISTS":
            return lambda document: _lookup(document, path) is _MISSING
        if first == "IS" and word == "NULL":
            return lambda document: _lookup(document, path) is None
        if first == "IS" and word in {"TRUE", "FALSE"}:
            wanted = word == "TRUE"
            return lambda document: _lookup(document, path) is wanted
        raise _invalid(f"unknown test {first} {second}")


def _path(selector: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, index in re.findall(r"\.([A-Za-z0-9_@\-]+)|\[(\d+)\]", selector[1:]):
        parts.append(int(index) if index else name)
    return parts


def _number(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def _lookup(document: Any, path: list[str | int]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(document, list) or part >= len(document):
                return _MISSING
        elif not isinstance(document, dict) or part not in document:
            return _MISSING
        document = document[part]
    return document


def _compare(
    path: list[str | int], operator: str, value: Any, quoted: bool
) -> Callable[[Any], bool]:
    numeric = isinstance(value, float) and not quoted

    def test(document: Any) -> bool:
        found = _lookup(document, path)
        if found is _MISSING or found is None:
            return False
        if numeric:
            if isinstance(found, bool) or not isinstance(found, int | float):
                return False
            return bool(_NUMERIC[operator](found, value))
        if operator not in {"=", "!="} or isinstance(found, dict | list):
            return False
        text = found if isinstance(found, str) else orjson.dumps(found).decode()
        equal = fnmatch.fnmatchcase(text, value) if "*" in value else text == value
        return equal if operator == "=" else not equal

    return test


_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _json_pattern(text: str) -> FilterPattern:
    if not text.endswith("}"):
        raise _invalid("a JSON pattern must end with }")
    document_test, literals = _Parser(_tokens(text[1:-1])).parse()

    def test(message: str) -> bool:
        if not message.lstrip().startswith("{"):
            return False
        try:
            document = orjson.loads(message)
        except orjson.JSONDecodeError:
            return False
        return bool(document_test(document))

    return FilterPattern(test=test, all_of=("{", *sorted(literals)), exact=False)
