"""Asserting AWS's refusals as boto3 reports them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError


def refused(call: Callable[[], Any], code: str, status: int, message: str | None = None) -> str:
    """Calls `call`, expecting AWS's error `code` with HTTP `status` (and exactly `message`,
    if given); returns the message."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    error = response["Error"]
    assert (error["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (code, status), error
    if message is not None:
        assert error["Message"] == message
    return str(error["Message"])
