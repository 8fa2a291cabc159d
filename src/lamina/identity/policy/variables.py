"""Policy variables (`${aws:username}`, `${aws:PrincipalTag/team, 'none'}`) in 2012-10-17 policies.

A variable takes the request context's value for its key (single-valued keys only), or its
default; with neither, the pattern that holds it matches nothing. `${*}`, `${?}` and `${$}`
stand for the literal characters. Substituted text never acts as a wildcard: literal `*` and
`?` become private-use marks that the wildcard compiler escapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LITERAL_STAR = "\ue000"
LITERAL_QUESTION = "\ue001"
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_DEFAULT = re.compile(r"^\s*([^,\s]+)\s*,\s*'([^']*)'\s*$")
_ESCAPES = {"*": LITERAL_STAR, "?": LITERAL_QUESTION, "$": "$"}
_UNMARK = str.maketrans({LITERAL_STAR: "*", LITERAL_QUESTION: "?"})
_MARK = str.maketrans({"*": LITERAL_STAR, "?": LITERAL_QUESTION})


def has_variables(text: str) -> bool:
    """Whether `text` holds a `${...}` reference."""
    return _VARIABLE.search(text) is not None


def substitute(text: str, keys: Mapping[str, tuple[str, ...]]) -> str | None:
    """`text` with its variables replaced (wildcards in values marked literal), or None."""
    pieces: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(text):
        pieces.append(text[position : match.start()])
        position = match.end()
        inner = match.group(1).strip()
        if inner in _ESCAPES:
            pieces.append(_ESCAPES[inner])
            continue
        default_match = _DEFAULT.match(inner)
        name, default = (
            (default_match.group(1), default_match.group(2)) if default_match else (inner, None)
        )
        values = keys.get(name.lower())
        if values is not None and len(values) == 1:
            pieces.append(values[0].translate(_MARK))
        elif default is not None:
            pieces.append(default.translate(_MARK))
        else:
            return None
    pieces.append(text[position:])
    return "".join(pieces)


def unmark(text: str) -> str:
    """Substituted text for exact comparison: literal marks back to their characters."""
    return text.translate(_UNMARK)
