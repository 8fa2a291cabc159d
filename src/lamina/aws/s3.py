"""Reading code archives from S3 or any S3-compatible store through boto3.

boto3 honours the standard `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` settings, so the
same code reads from AWS itself or from a local S3-compatible server.
"""

from __future__ import annotations

from typing import Any

from lamina.constants import ZIPPED_CODE_MAX_BYTES
from lamina.errors import InvalidParameterValue, RequestEntityTooLarge


class Boto3S3Reader:
    def __init__(self, region: str) -> None:
        self._region = region
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3  # Lazy: most deployments never read code from S3.

            self._client = boto3.session.Session().client("s3", region_name=self._region)
        return self._client

    def read(self, bucket: str, key: str, version: str | None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"VersionId": version} if version else {}
        try:
            response = self._s3().get_object(Bucket=bucket, Key=key, **extra)
            if int(response.get("ContentLength", 0)) > ZIPPED_CODE_MAX_BYTES:
                raise RequestEntityTooLarge(
                    f"Zipped size must be smaller than {ZIPPED_CODE_MAX_BYTES} bytes"
                )
            return bytes(response["Body"].read())
        except ClientError as error:
            info = error.response.get("Error", {})
            raise InvalidParameterValue(
                f"Error occurred while GetObject. S3 Error Code: {info.get('Code')}. "
                f"S3 Error Message: {info.get('Message')}"
            ) from None
        except BotoCoreError as error:
            raise InvalidParameterValue(
                f"Error occurred while GetObject from bucket {bucket}: {error}"
            ) from None
