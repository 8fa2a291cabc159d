"""Opaque pagination markers, as Lambda's list operations hand out."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, TypeVar

import orjson

from lamina.constants import LIST_PAGE_MAX
from lamina.errors import InvalidParameterValue

T = TypeVar("T")


def encode_marker(position: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode()


def decode_marker(marker: str | None) -> Any:
    if not marker:
        return None
    try:
        return orjson.loads(base64.urlsafe_b64decode(marker.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidParameterValue(f"Invalid Marker: {marker}") from None


def page_size(max_items: int | None, ceiling: int = LIST_PAGE_MAX) -> int:
    if max_items is None:
        return ceiling
    return max(1, min(max_items, ceiling))


def take_page(
    items: Iterable[T], limit: int, position: Callable[[T], Any]
) -> tuple[list[T], str | None]:
    """At most `limit` items, and the marker that resumes after the last one if more remain."""
    page = list(islice(items, limit + 1))
    if len(page) <= limit:
        return page, None
    page = page[:limit]
    return page, encode_marker(position(page[-1]))
