"""KMS on Lamina's port (boto3 and the AWS CLI), `KMSKeyArn` on functions, and environment
variables that a copy of the database does not reveal."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.aws_cli import run_aws
from tests.support.lambda_api import error_of, invoke
from tests.support.server import LaminaServer

ACCOUNT = "000000000000"
ENV_HANDLER = "import os\ndef handler(event, context):\n    return os.environ.get(event['name'])\n"


@pytest.fixture(scope="module")
def kms(server: LaminaServer) -> Iterator[Any]:
    client = server.client("kms")
    yield client
    client.close()


def test_create_describe_and_list_keys(kms: Any) -> None:
    created = kms.create_key(Description="for secrets", Tags=[{"TagKey": "t", "TagValue": "v"}])
    meta = created["KeyMetadata"]
    key_id = meta["KeyId"]
    assert meta["Arn"] == f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key_id}"
    assert meta["AWSAccountId"] == ACCOUNT
    assert meta["Enabled"] is True and meta["KeyState"] == "Enabled"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT" and meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert meta["Description"] == "for secrets"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"] == meta
    assert kms.describe_key(KeyId=meta["Arn"])["KeyMetadata"] == meta
    listed: list[str] = []
    marker: dict[str, str] = {}
    while True:
        page = kms.list_keys(Limit=1, **marker)
        listed += [key["KeyId"] for key in page["Keys"]]
        assert all(key["KeyArn"].endswith(key["KeyId"]) for key in page["Keys"])
        if not page["Truncated"]:
            break
        marker = {"Marker": page["NextMarker"]}
    assert key_id in listed


def test_encrypt_and_decrypt_without_naming_the_key(kms: Any) -> None:
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    context = {"purpose": "test", "tenant": "a"}
    sealed = kms.encrypt(KeyId=arn, Plaintext=b"swordfish", EncryptionContext=context)
    assert sealed["KeyId"] == arn and sealed["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert b"swordfish" not in sealed["CiphertextBlob"]
    opened = kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext=context)
    assert opened["Plaintext"] == b"swordfish" and opened["KeyId"] == arn


def test_decrypt_refuses_a_wrong_context_or_altered_blob_as_aws_does(kms: Any) -> None:
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    blob = kms.encrypt(KeyId=arn, Plaintext=b"x", EncryptionContext={"a": "1"})["CiphertextBlob"]
    for attempt in (
        {"CiphertextBlob": blob, "EncryptionContext": {"a": "2"}},
        {"CiphertextBlob": blob},
        {"CiphertextBlob": blob[:-1] + bytes([blob[-1] ^ 1]), "EncryptionContext": {"a": "1"}},
        {"CiphertextBlob": b"not a blob at all"},
    ):
        with pytest.raises(ClientError) as excinfo:
            kms.decrypt(**attempt)
        assert error_of(excinfo) == ("InvalidCiphertextException", "", 400)


def test_decrypt_with_another_key_named_is_incorrect_key(kms: Any) -> None:
    first = kms.create_key()["KeyMetadata"]["KeyId"]
    second = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=first, Plaintext=b"x")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, KeyId=first)["Plaintext"] == b"x"
    with pytest.raises(ClientError) as excinfo:
        kms.decrypt(CiphertextBlob=blob, KeyId=second)
    assert error_of(excinfo) == (
        "IncorrectKeyException",
        "The key ID in the request does not identify a CMK that can perform this operation.",
        400,
    )


def test_generate_data_key_returns_a_key_and_its_blob(kms: Any) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    made = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert len(made["Plaintext"]) == 32
    assert kms.decrypt(CiphertextBlob=made["CiphertextBlob"])["Plaintext"] == made["Plaintext"]
    short = kms.generate_data_key(KeyId=key_id, NumberOfBytes=16, EncryptionContext={"k": "v"})
    assert len(short["Plaintext"]) == 16
    blind = kms.generate_data_key_without_plaintext(KeyId=key_id, KeySpec="AES_128")
    assert "Plaintext" not in blind
    assert len(kms.decrypt(CiphertextBlob=blind["CiphertextBlob"])["Plaintext"]) == 16
    with pytest.raises(ClientError) as excinfo:
        kms.generate_data_key(KeyId=key_id)
    assert error_of(excinfo) == (
        "ValidationException",
        "Please specify either number of bytes or key spec.",
        400,
    )


def test_key_policies_default_stored_and_validated(kms: Any) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    default = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    assert default["Id"] == "key-default-1"
    (statement,) = default["Statement"]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert statement["Action"] == "kms:*"
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}
            ],
        }
    )
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=policy)
    assert kms.get_key_policy(KeyId=key_id)["Policy"] == policy
    assert kms.list_key_policies(KeyId=key_id)["PolicyNames"] == ["default"]
    # IAM's grammar and texts for resource policies (KMS's own wording is not known).
    with pytest.raises(ClientError) as excinfo:
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy="{not json")
    assert error_of(excinfo) == (
        "MalformedPolicyDocumentException",
        "This policy contains invalid Json",
        400,
    )
    no_principal = {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}
    with pytest.raises(ClientError) as excinfo:
        kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [no_principal]}))
    assert error_of(excinfo)[0] == "MalformedPolicyDocumentException"
    assert kms.get_key_policy(KeyId=key_id)["Policy"] == policy
    with pytest.raises(ClientError) as excinfo:
        kms.get_key_policy(KeyId=key_id, PolicyName="other")
    assert error_of(excinfo) == ("NotFoundException", "No such policy exists", 400)


def test_a_disabled_key_neither_encrypts_nor_decrypts(kms: Any) -> None:
    meta = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms.disable_key(KeyId=meta["KeyId"])
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    refused = ("DisabledException", f"{meta['Arn']} is disabled.", 400)
    with pytest.raises(ClientError) as excinfo:
        kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"x")
    assert error_of(excinfo) == refused
    with pytest.raises(ClientError) as excinfo:
        kms.decrypt(CiphertextBlob=blob)
    assert error_of(excinfo) == refused
    kms.enable_key(KeyId=meta["KeyId"])
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_unknown_keys_are_not_found_in_aws_words(kms: Any) -> None:
    missing = "11111111-2222-3333-4444-555555555555"
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{missing}"
    cases = {
        missing: f"Key '{arn}' does not exist",
        arn: f"Key '{arn}' does not exist",
        "not-a-key": "Invalid keyId not-a-key",
        "alias/nothing": f"Alias arn:aws:kms:us-east-1:{ACCOUNT}:alias/nothing is not found.",
    }
    for key_id, message in cases.items():
        with pytest.raises(ClientError) as excinfo:
            kms.describe_key(KeyId=key_id)
        assert error_of(excinfo) == ("NotFoundException", message, 400)
    with pytest.raises(ClientError) as excinfo:
        kms.encrypt(KeyId=missing, Plaintext=b"x")
    assert error_of(excinfo) == ("NotFoundException", f"Key '{arn}' does not exist", 400)


def test_the_aws_cli_encrypts_and_decrypts(server: LaminaServer, tmp_path: Path) -> None:
    created = run_aws(server.endpoint, tmp_path, "kms", "create-key", "--description", "cli")
    assert created.returncode == 0, created.stderr
    key_id = json.loads(created.stdout)["KeyMetadata"]["KeyId"]
    secret_file = tmp_path / "secret.txt"
    secret_file.write_bytes(b"cli secret")
    encrypted = run_aws(
        server.endpoint,
        tmp_path,
        "kms",
        "encrypt",
        "--key-id",
        key_id,
        "--plaintext",
        f"fileb://{secret_file}",
    )
    assert encrypted.returncode == 0, encrypted.stderr
    blob_file = tmp_path / "blob"
    blob_file.write_bytes(base64.b64decode(json.loads(encrypted.stdout)["CiphertextBlob"]))
    decrypted = run_aws(
        server.endpoint, tmp_path, "kms", "decrypt", "--ciphertext-blob", f"fileb://{blob_file}"
    )
    assert decrypted.returncode == 0, decrypted.stderr
    assert base64.b64decode(json.loads(decrypted.stdout)["Plaintext"]) == b"cli secret"
    missing = run_aws(server.endpoint, tmp_path, "kms", "describe-key", "--key-id", "nope")
    assert missing.returncode != 0
    assert "(NotFoundException) when calling the DescribeKey operation: Invalid keyId nope" in (
        missing.stderr
    )


# ------------------------------------------------------------------ functions


def test_create_function_refuses_an_unknown_kms_key(
    create_function: Callable[..., dict[str, Any]],
) -> None:
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
    with pytest.raises(ClientError) as excinfo:
        create_function(KMSKeyArn=arn, Environment={"Variables": {"AB": "c"}})
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Lambda was unable to configure access to your environment variables because the KMS "
        "key is invalid for CreateGrant. Please check your KMS key settings. KMS Exception: "
        f"NotFoundException KMS Message: Key '{arn}' does not exist",
        400,
    )


def test_update_configuration_refuses_an_unknown_kms_key(
    create_function: Callable[..., dict[str, Any]], lambda_client: Any
) -> None:
    name = create_function()["FunctionName"]
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_configuration(FunctionName=name, KMSKeyArn=arn)
    assert error_of(excinfo)[0] == "InvalidParameterValueException"


def test_environment_under_a_kms_key_reaches_the_function_and_not_the_disk(
    server: LaminaServer,
    kms: Any,
    lambda_client: Any,
    create_function: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    under_key, under_master = secrets.token_hex(16), secrets.token_hex(16)
    made = create_function(
        Code={"ZipFile": make_zip({"app.py": ENV_HANDLER})},
        KMSKeyArn=key_arn,
        Environment={"Variables": {"UNDER_KEY": under_key}},
        Publish=True,
    )
    assert made["KMSKeyArn"] == key_arn
    other = create_function(
        Code={"ZipFile": make_zip({"app.py": ENV_HANDLER})},
        Environment={"Variables": {"UNDER_MASTER": under_master}},
    )
    name = made["FunctionName"]
    config = lambda_client.get_function_configuration(FunctionName=name)
    assert config["KMSKeyArn"] == key_arn
    assert config["Environment"]["Variables"] == {"UNDER_KEY": under_key}
    assert invoke(lambda_client, name, {"name": "UNDER_KEY"}) == under_key
    assert invoke(lambda_client, name, {"name": "UNDER_KEY"}, Qualifier="1") == under_key
    assert invoke(lambda_client, other["FunctionName"], {"name": "UNDER_MASTER"}) == under_master

    # The database file (and its write-ahead log) copied off the machine, key file left behind.
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in server.data_dir.glob("*.db*"):
        shutil.copy(path, copy / path.name)
    assert (copy / "lamina.db").exists()
    for path in copy.iterdir():
        content = path.read_bytes()
        assert under_key.encode() not in content, path.name
        assert under_master.encode() not in content, path.name
