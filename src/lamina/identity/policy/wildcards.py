"""IAM's wildcards (`*` and `?`) compiled once into regular expressions.

Actions match case-insensitively (`lambda:invoke*` allows `lambda:InvokeFunction`); resources
and ARN conditions match case-sensitively. In an ARN pattern a wildcard in one of the first
five colon-separated components stays inside it, as IAM checks each component separately;
the sixth component (the resource id, which may itself hold colons) is matched as a whole.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from lamina.identity.policy.variables import (
    LITERAL_QUESTION,
    LITERAL_STAR,
    has_variables,
    substitute,
)

_ARN_PREFIX_COMPONENTS = 5
# Characters a policy variable put in literally: escaped, never wildcards.
_LITERALS = {LITERAL_STAR: re.escape("*"), LITERAL_QUESTION: re.escape("?")}


def _glob(pattern: str, star: str) -> str:
    return "".join(
        star if char == "*" else "." if char == "?" else _LITERALS.get(char) or re.escape(char)
        for char in pattern
    )


def glob_regex(pattern: str) -> str:
    """The regex source of a plain glob (`*` any run, `?` one character)."""
    return _glob(pattern, ".*")


def arn_regex(pattern: str) -> str:
    """The regex source of an ARN glob, component by component; a plain glob otherwise."""
    parts = pattern.split(":", _ARN_PREFIX_COMPONENTS)
    if len(parts) <= _ARN_PREFIX_COMPONENTS:
        return glob_regex(pattern)
    head = ":".join(_glob(part, "[^:]*") for part in parts[:_ARN_PREFIX_COMPONENTS])
    return head + ":" + glob_regex(parts[_ARN_PREFIX_COMPONENTS])


class Matcher:
    """A set of patterns compiled into one regex; `*` alone short-circuits to everything."""

    __slots__ = ("_everything", "_regex", "patterns")

    def __init__(self, patterns: Iterable[str], *, arns: bool, ignore_case: bool) -> None:
        self.patterns = tuple(patterns)
        self._everything = "*" in self.patterns
        to_regex = arn_regex if arns else glob_regex
        source = "|".join(f"(?:{to_regex(pattern)})" for pattern in self.patterns)
        flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
        self._regex = re.compile(source or "(?!)", flags)

    def matches(self, value: str) -> bool:
        """Whether any pattern matches the whole of `value`."""
        return self._everything or self._regex.fullmatch(value) is not None

    def matches_in(self, value: str, keys: Mapping[str, tuple[str, ...]]) -> bool:
        """`matches`; the context is not needed without policy variables."""
        return self._everything or self._regex.fullmatch(value) is not None

    def __repr__(self) -> str:
        return f"Matcher({list(self.patterns)!r})"


@functools.lru_cache(maxsize=4096)
def _substituted(pattern: str, arns: bool, ignore_case: bool) -> Matcher:
    return Matcher((pattern,), arns=arns, ignore_case=ignore_case)


class TemplateMatcher:
    """Patterns some of which hold policy variables, resolved against each request."""

    __slots__ = ("_arns", "_fixed", "_ignore_case", "_templates", "patterns")

    def __init__(self, patterns: Iterable[str], *, arns: bool, ignore_case: bool) -> None:
        self.patterns = tuple(patterns)
        self._templates = tuple(p for p in self.patterns if has_variables(p))
        fixed = [p for p in self.patterns if not has_variables(p)]
        self._fixed = Matcher(fixed, arns=arns, ignore_case=ignore_case)
        self._arns = arns
        self._ignore_case = ignore_case

    def matches_in(self, value: str, keys: Mapping[str, tuple[str, ...]]) -> bool:
        """Whether any pattern, its variables filled from `keys`, matches `value`."""
        if self._fixed.matches(value):
            return True
        for template in self._templates:
            pattern = substitute(template, keys)
            if pattern is not None and _substituted(pattern, self._arns, self._ignore_case).matches(
                value
            ):
                return True
        return False


def resource_matcher(patterns: Iterable[str], *, variables: bool) -> Matcher | TemplateMatcher:
    """A case-sensitive ARN matcher; with `variables`, `${...}` references are resolved."""
    patterns = tuple(patterns)
    if variables and any(has_variables(pattern) for pattern in patterns):
        return TemplateMatcher(patterns, arns=True, ignore_case=False)
    return Matcher(patterns, arns=True, ignore_case=False)
