"""Tags on functions, addressed by the function's unqualified ARN, and on event source
mappings, addressed by the mapping's ARN."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

from lamina.arns import access_denied, other_region
from lamina.control.context import Domain
from lamina.errors import CANNOT_BE_PROCESSED, InvalidParameterValue, ResourceNotFound
from lamina.model.functions import FunctionRecord
from lamina.model.mappings import MAPPING_NOT_FOUND, EventSourceMapping

MAX_TAGS = 50
RESERVED_PREFIX = "aws:"

_FUNCTION_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"function:(?P<name>[a-zA-Z0-9_-]+)(?::(?P<qualifier>.+))?"
)
_MAPPING_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"event-source-mapping:(?P<uuid>[0-9a-fA-F-]{36})"
)


class TagService:
    """TagResource, UntagResource and ListTags on function and event source mapping ARNs."""

    def __init__(self, domain: Domain) -> None:
        self._store = domain.stores.functions
        self._mappings = domain.stores.mappings
        self._account = domain.account

    def _require_mapping(self, arn: str, action: str) -> EventSourceMapping | None:
        """The mapping `arn` names; None when it names something else."""
        match = _MAPPING_ARN.fullmatch(arn)
        if match is None:
            return None
        if match["account"] != self._account.account_id:
            raise access_denied(self._account, action, arn)
        if match["region"] != self._account.region:
            raise ResourceNotFound(MAPPING_NOT_FOUND)
        mapping = self._mappings.get(match["uuid"])
        if mapping is None:
            raise ResourceNotFound(MAPPING_NOT_FOUND)
        return mapping

    def _require(self, arn: str, action: str) -> FunctionRecord:
        match = _FUNCTION_ARN.fullmatch(arn)
        if match is None:
            raise InvalidParameterValue(
                "Lamina supports tags on functions and event source mappings only, and "
                f"{arn} is neither."
            )
        if match["qualifier"]:
            raise InvalidParameterValue(
                "Tags on function aliases and versions are not supported. Please specify a "
                "function ARN."
            )
        if match["account"] != self._account.account_id:
            raise access_denied(self._account, action, arn)
        if match["region"] != self._account.region:
            raise other_region(match["region"], self._account)
        record = self._store.get(match["name"])
        if record is None:
            raise ResourceNotFound(f"Function not found: {arn}")
        return record

    def list_tags(self, arn: str) -> dict[str, str]:
        mapping = self._require_mapping(arn, "ListTags")
        if mapping is not None:
            return dict(mapping.tags)
        return dict(self._require(arn, "ListTags").tags)

    def tag(self, arn: str, tags: Mapping[str, str]) -> None:
        if not tags:
            raise InvalidParameterValue(CANNOT_BE_PROCESSED)
        check_reserved(tags)
        if _MAPPING_ARN.fullmatch(arn):
            with self._mappings.transaction():
                mapping = self._require_mapping(arn, "TagResource")
                assert mapping is not None
                merged = {**mapping.tags, **tags}
                check_tags(merged, arn)
                self._mappings.put(replace(mapping, tags=merged))
            return
        with self._store.transaction():
            record = self._require(arn, "TagResource")
            merged = {**record.tags, **tags}
            check_tags(merged, arn)
            self._store.put(replace(record, tags=merged))

    def untag(self, arn: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        check_reserved(keys)
        if _MAPPING_ARN.fullmatch(arn):
            with self._mappings.transaction():
                mapping = self._require_mapping(arn, "UntagResource")
                assert mapping is not None
                kept = {key: value for key, value in mapping.tags.items() if key not in keys}
                if kept != mapping.tags:
                    self._mappings.put(replace(mapping, tags=kept))
            return
        with self._store.transaction():
            record = self._require(arn, "UntagResource")
            remaining = {key: value for key, value in record.tags.items() if key not in keys}
            if remaining != record.tags:
                self._store.put(replace(record, tags=remaining))


def check_tags(tags: Mapping[str, str], resource: str) -> None:
    """The rules a resource's complete tag set must satisfy."""
    check_reserved(tags)
    if len(tags) > MAX_TAGS:
        raise InvalidParameterValue("Number of tags exceeds resource tag limit.")


def check_reserved(keys: Iterable[str]) -> None:
    reserved = sorted(key for key in keys if key.lower().startswith(RESERVED_PREFIX))
    if reserved:
        raise InvalidParameterValue(
            f"Tag keys starting with '{RESERVED_PREFIX}' are reserved for AWS use: "
            f"{', '.join(reserved)}"
        )
