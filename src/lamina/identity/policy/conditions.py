"""Condition operators, compiled once per policy.

The rules are the ones IAM documents:
- operators in a block, and keys under an operator, must all hold (AND);
- several policy values for a key: any may match (OR); for a negated operator none may (NOR);
- a key absent from the request makes an operator false, a negated operator true, and an
  `...IfExists` operator true; `Null` tests presence itself;
- `ForAnyValue:` holds when some request value matches (false for an absent or empty key);
  `ForAllValues:` when every request value matches (true for an absent or empty key).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lamina.identity.policy.variables import has_variables, substitute, unmark
from lamina.identity.policy.wildcards import Matcher

# Whether one request value matches any of the policy's values.
ValueTest = Callable[[str], bool]
Context = Mapping[str, tuple[str, ...]]


class Qualifier(enum.Enum):
    """A set operator prefix for multivalued keys."""

    ANY = "ForAnyValue:"
    ALL = "ForAllValues:"


class BadConditionValue(ValueError):
    """A policy value the operator cannot read (an unparsable date, say)."""


@dataclass(frozen=True, slots=True)
class ConditionTest:
    """One (operator, key) pair of a Condition block."""

    operator: str
    base: str  # the operator without its set prefix and IfExists suffix
    key: str  # lower-cased: IAM matches condition keys case-insensitively
    qualifier: Qualifier | None
    if_exists: bool
    negated: bool
    test: ValueTest | None  # None for the Null operator
    null_expected: frozenset[bool] = frozenset()
    # Policy values holding `${...}` variables, resolved against each request.
    templates: tuple[str, ...] = ()

    def holds(self, context: Context) -> bool:
        """Whether the request context satisfies this condition."""
        values = context.get(self.key) or ()
        if self.test is None:
            return (not values) in self.null_expected
        test = self.test if not self.templates else self._resolved(context)
        if not values:
            if self.if_exists or self.qualifier is Qualifier.ALL:
                return True
            if self.qualifier is Qualifier.ANY:
                return False
            return self.negated
        if self.qualifier is Qualifier.ALL:
            return all(test(value) != self.negated for value in values)
        if self.qualifier is Qualifier.ANY:
            return any(test(value) != self.negated for value in values)
        return any(test(value) for value in values) != self.negated

    def _resolved(self, context: Context) -> ValueTest:
        """The test over the fixed values plus the templates filled from the context."""
        resolved = (substitute(template, context) for template in self.templates)
        filled = tuple(value for value in resolved if value is not None)
        extra = _cached_test(self.base, filled) if filled else _never
        fixed = self.test
        assert fixed is not None
        return lambda value: fixed(value) or extra(value)


def _never(value: str) -> bool:
    return False


def _string_equals(values: Sequence[str]) -> ValueTest:
    wanted = frozenset(values)
    return wanted.__contains__


def _string_equals_ignore_case(values: Sequence[str]) -> ValueTest:
    wanted = frozenset(value.casefold() for value in values)
    return lambda value: value.casefold() in wanted


def _string_like(values: Sequence[str]) -> ValueTest:
    return Matcher(values, arns=False, ignore_case=False).matches


def _arn_like(values: Sequence[str]) -> ValueTest:
    matcher = Matcher(values, arns=True, ignore_case=False)
    # A request value that is not an ARN never matches, even `*`.
    return lambda value: value.count(":") >= 5 and matcher.matches(value)


def _bool(values: Sequence[str]) -> ValueTest:
    wanted = frozenset(value.lower() for value in values)
    return lambda value: value.lower() in wanted


def _binary(values: Sequence[str]) -> ValueTest:
    return frozenset(values).__contains__


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _numeric(compare: Callable[[float, float], bool]) -> Callable[[Sequence[str]], ValueTest]:
    def build(values: Sequence[str]) -> ValueTest:
        # IAM accepts any string here; a value that is not a number simply never matches.
        bounds = [bound for bound in map(_number, values) if bound is not None]

        def test(value: str) -> bool:
            number = _number(value)
            return number is not None and any(compare(number, bound) for bound in bounds)

        return test

    return build


def parse_date(text: str) -> float | None:
    """Seconds since the epoch for an ISO 8601 date/time or an epoch number, else None."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _date(compare: Callable[[float, float], bool]) -> Callable[[Sequence[str]], ValueTest]:
    def build(values: Sequence[str]) -> ValueTest:
        bounds = []
        for value in values:
            bound = parse_date(value)
            if bound is None:
                raise BadConditionValue(value)
            bounds.append(bound)

        def test(value: str) -> bool:
            moment = parse_date(value)
            return moment is not None and any(compare(moment, bound) for bound in bounds)

        return test

    return build


def _ip_address(values: Sequence[str]) -> ValueTest:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as error:
            raise BadConditionValue(value) from error

    def test(value: str) -> bool:
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            return False
        return any(address in network for network in networks)

    return test


# operator name -> (value test builder, negated)
_OPERATORS: dict[str, tuple[Callable[[Sequence[str]], ValueTest], bool]] = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_string_equals_ignore_case, False),
    "StringNotEqualsIgnoreCase": (_string_equals_ignore_case, True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "NumericEquals": (_numeric(operator.eq), False),
    "NumericNotEquals": (_numeric(operator.eq), True),
    "NumericLessThan": (_numeric(operator.lt), False),
    "NumericLessThanEquals": (_numeric(operator.le), False),
    "NumericGreaterThan": (_numeric(operator.gt), False),
    "NumericGreaterThanEquals": (_numeric(operator.ge), False),
    "DateEquals": (_date(operator.eq), False),
    "DateNotEquals": (_date(operator.eq), True),
    "DateLessThan": (_date(operator.lt), False),
    "DateLessThanEquals": (_date(operator.le), False),
    "DateGreaterThan": (_date(operator.gt), False),
    "DateGreaterThanEquals": (_date(operator.ge), False),
    "Bool": (_bool, False),
    "BinaryEquals": (_binary, False),
    "IpAddress": (_ip_address, False),
    "NotIpAddress": (_ip_address, True),
    # IAM documents ArnEquals and ArnLike identically: both take wildcards per component.
    "ArnEquals": (_arn_like, False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True),
    "ArnNotLike": (_arn_like, True),
}
NULL = "Null"
IF_EXISTS = "IfExists"


def split_operator(name: str) -> tuple[Qualifier | None, str, bool] | None:
    """(qualifier, base operator, if_exists) for a known operator name, else None."""
    qualifier = None
    for candidate in Qualifier:
        if name.startswith(candidate.value):
            qualifier = candidate
            name = name[len(candidate.value) :]
            break
    if_exists = name.endswith(IF_EXISTS) and name != IF_EXISTS
    if if_exists:
        name = name[: -len(IF_EXISTS)]
    if name == NULL:
        return (qualifier, name, False) if not if_exists else None
    if name not in _OPERATORS:
        return None
    return qualifier, name, if_exists


# Operators whose values are patterns: substituted text keeps its literal marks.
_PATTERN_OPERATORS = frozenset(
    {"StringLike", "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"}
)
# Operators IAM substitutes policy variables in.
_VARIABLE_OPERATORS = _PATTERN_OPERATORS | {
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
}


@functools.lru_cache(maxsize=4096)
def _cached_test(base: str, values: tuple[str, ...]) -> ValueTest:
    if base not in _PATTERN_OPERATORS:
        values = tuple(unmark(value) for value in values)
    return _OPERATORS[base][0](values)


def compile_condition(
    name: str, key: str, values: Sequence[str], variables: bool = False
) -> ConditionTest | None:
    """The compiled test for one operator and key; None when the operator is unknown.

    With `variables` (2012-10-17 policies), `${...}` in string and ARN values is resolved per
    request. Raises BadConditionValue when a date or address cannot be read.
    """
    parts = split_operator(name)
    if parts is None:
        return None
    qualifier, base, if_exists = parts
    if base == NULL:
        expected = frozenset(value.lower() == "true" for value in values)
        return ConditionTest(name, base, key.lower(), None, False, False, None, expected)
    build, negated = _OPERATORS[base]
    templates: tuple[str, ...] = ()
    if variables and base in _VARIABLE_OPERATORS:
        templates = tuple(value for value in values if has_variables(value))
        values = [value for value in values if not has_variables(value)]
    return ConditionTest(
        name,
        base,
        key.lower(),
        qualifier,
        if_exists,
        negated,
        build(values),
        frozenset(),
        templates,
    )
