"""The KMS front (json 1.1, `X-Amz-Target: TrentService.*`) over `KmsService`."""

from __future__ import annotations

from typing import Any

import botocore.session

from lamina.api.context import Handler
from lamina.api.json_service import JsonService
from lamina.audit.trail import AuditTrail
from lamina.control.kms import KmsService
from lamina.identity.sigv4 import SigV4Verifier
from lamina.model.kms import SYMMETRIC_DEFAULT, KmsKey

TARGET_PREFIX = "TrentService"


def key_metadata(key: KmsKey) -> dict[str, Any]:
    """CreateKey's and DescribeKey's `KeyMetadata`."""
    return {
        "AWSAccountId": key.account,
        "KeyId": key.key_id,
        "Arn": key.arn,
        "CreationDate": key.created,
        "Enabled": key.enabled,
        "Description": key.description,
        "KeyUsage": key.key_usage,
        "KeyState": key.state,
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": key.key_spec,
        "KeySpec": key.key_spec,
        "EncryptionAlgorithms": [SYMMETRIC_DEFAULT],
        "MultiRegion": False,
    }


def operations(kms: KmsService) -> dict[str, Handler]:
    def create_key(params: dict[str, Any]) -> dict[str, Any]:
        key = kms.create_key(
            description=params.get("Description", ""),
            policy=params.get("Policy"),
            key_usage=params.get("KeyUsage"),
            key_spec=params.get("KeySpec") or params.get("CustomerMasterKeySpec"),
            tags=[(tag["TagKey"], tag["TagValue"]) for tag in params.get("Tags", ())],
        )
        return {"KeyMetadata": key_metadata(key)}

    def describe_key(params: dict[str, Any]) -> dict[str, Any]:
        return {"KeyMetadata": key_metadata(kms.find(params["KeyId"]))}

    def list_keys(params: dict[str, Any]) -> dict[str, Any]:
        keys, marker = kms.page(params.get("Marker"), params.get("Limit", 100))
        page: dict[str, Any] = {
            "Keys": [{"KeyId": key.key_id, "KeyArn": key.arn} for key in keys],
            "Truncated": marker is not None,
        }
        if marker is not None:
            page["NextMarker"] = marker
        return page

    def enable_key(params: dict[str, Any]) -> None:
        kms.set_enabled(params["KeyId"], True)

    def disable_key(params: dict[str, Any]) -> None:
        kms.set_enabled(params["KeyId"], False)

    def get_key_policy(params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("PolicyName")
        policy = kms.policy(params["KeyId"], name)
        return {"Policy": policy, "PolicyName": name or "default"}

    def put_key_policy(params: dict[str, Any]) -> None:
        kms.put_policy(params["KeyId"], params.get("PolicyName"), params["Policy"])

    def list_key_policies(params: dict[str, Any]) -> dict[str, Any]:
        kms.find(params["KeyId"])
        return {"PolicyNames": ["default"], "Truncated": False}

    def encrypt(params: dict[str, Any]) -> dict[str, Any]:
        blob, key = kms.encrypt(
            params["KeyId"], params["Plaintext"], params.get("EncryptionContext")
        )
        return {"CiphertextBlob": blob, "KeyId": key.arn, "EncryptionAlgorithm": SYMMETRIC_DEFAULT}

    def decrypt(params: dict[str, Any]) -> dict[str, Any]:
        plaintext, key = kms.decrypt(
            params["CiphertextBlob"], params.get("EncryptionContext"), params.get("KeyId")
        )
        return {"Plaintext": plaintext, "KeyId": key.arn, "EncryptionAlgorithm": SYMMETRIC_DEFAULT}

    def generate_data_key(params: dict[str, Any]) -> dict[str, Any]:
        plaintext, blob, key = kms.generate_data_key(
            params["KeyId"],
            key_spec=params.get("KeySpec"),
            number_of_bytes=params.get("NumberOfBytes"),
            context=params.get("EncryptionContext"),
        )
        return {"CiphertextBlob": blob, "Plaintext": plaintext, "KeyId": key.arn}

    def generate_data_key_without_plaintext(params: dict[str, Any]) -> dict[str, Any]:
        result = generate_data_key(params)
        del result["Plaintext"]
        return result

    return {
        "CreateKey": create_key,
        "DescribeKey": describe_key,
        "ListKeys": list_keys,
        "EnableKey": enable_key,
        "DisableKey": disable_key,
        "GetKeyPolicy": get_key_policy,
        "PutKeyPolicy": put_key_policy,
        "ListKeyPolicies": list_key_policies,
        "Encrypt": encrypt,
        "Decrypt": decrypt,
        "GenerateDataKey": generate_data_key,
        "GenerateDataKeyWithoutPlaintext": generate_data_key_without_plaintext,
    }


def build_kms_service(
    kms: KmsService, verifier: SigV4Verifier | None, audit: AuditTrail | None = None
) -> JsonService:
    model = botocore.session.get_session().get_service_model("kms")
    return JsonService(model, operations(kms), verifier, audit)
