"""Partial batch responses (`ReportBatchItemFailures`): which records a function said failed.

Lambda's rules, for SQS and streams alike: an empty or null response, or an empty or null
`batchItemFailures`, is a complete success; a response that is not JSON, an item without an
`itemIdentifier` (a wrong key), an empty or null identifier, or one that names no record of
the batch fails the whole batch.
"""

from __future__ import annotations

from collections.abc import Collection

import orjson

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"


class WholeBatchFailed(Exception):
    """The response cannot be read as a list of failed items: the whole batch failed."""


def failed_items(payload: bytes, known: Collection[str]) -> list[str]:
    """The identifiers the response reports as failed, in its order; [] for full success.

    Raises WholeBatchFailed when the rules above say the whole batch failed.
    """
    if not payload.strip():
        return []
    try:
        response = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise WholeBatchFailed("the function's response is not valid JSON") from None
    if not isinstance(response, dict):
        return []
    failures = response.get("batchItemFailures")
    if failures is None:
        return []
    if not isinstance(failures, list):
        raise WholeBatchFailed("batchItemFailures is not a list")
    identifiers = []
    for item in failures:
        if not isinstance(item, dict) or "itemIdentifier" not in item:
            raise WholeBatchFailed("a batchItemFailures item has no itemIdentifier")
        identifier = item["itemIdentifier"]
        if not isinstance(identifier, str) or not identifier:
            raise WholeBatchFailed("an itemIdentifier is empty or null")
        if identifier not in known:
            raise WholeBatchFailed(f"itemIdentifier {identifier} is not in the batch")
        identifiers.append(identifier)
    return identifiers
