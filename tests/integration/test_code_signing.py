"""Code-signing configs over HTTP: CRUD, listing, attaching to functions, enforcement."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import error_of
from tests.support.server import LaminaServer

PROFILE = "arn:aws:signer:us-east-1:000000000000:/signing-profiles/lamina/abcdef1234"
OTHER_PROFILE = "arn:aws:signer:us-east-1:000000000000:/signing-profiles/other/0123456789"
UNKNOWN_ARN = "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdefg"


@pytest.fixture
def create_config(lambda_client: Any) -> Callable[..., dict[str, Any]]:
    def create(policy: str | None = None, **overrides: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"AllowedPublishers": {"SigningProfileVersionArns": [PROFILE]}}
        if policy:
            params["CodeSigningPolicies"] = {"UntrustedArtifactOnDeployment": policy}
        params.update(overrides)
        config: dict[str, Any] = lambda_client.create_code_signing_config(**params)[
            "CodeSigningConfig"
        ]
        return config

    return create


def test_create_code_signing_config(lambda_client: Any) -> None:
    response = lambda_client.create_code_signing_config(
        Description="release builds",
        AllowedPublishers={"SigningProfileVersionArns": [PROFILE]},
        Tags={"team": "core"},
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 201
    config = response["CodeSigningConfig"]
    assert re.fullmatch(r"csc-[a-z0-9]{17}", config["CodeSigningConfigId"])
    assert config["CodeSigningConfigArn"] == (
        f"arn:aws:lambda:us-east-1:000000000000:code-signing-config:{config['CodeSigningConfigId']}"
    )
    assert config["Description"] == "release builds"
    assert config["AllowedPublishers"] == {"SigningProfileVersionArns": [PROFILE]}
    assert config["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Warn"}
    assert config["LastModified"].endswith("+0000")


def test_create_code_signing_config_validates_input(server: LaminaServer) -> None:
    client = server.client("lambda", parameter_validation=False)
    with pytest.raises(ClientError) as excinfo:
        client.create_code_signing_config(
            AllowedPublishers={"SigningProfileVersionArns": [PROFILE]},
            CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Block"},
        )
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert "untrustedArtifactOnDeployment" in message
    with pytest.raises(ClientError) as excinfo:
        client.create_code_signing_config(AllowedPublishers={"SigningProfileVersionArns": []})
    assert error_of(excinfo)[0] == "ValidationException"


def test_get_code_signing_config(
    lambda_client: Any, create_config: Callable[..., dict[str, Any]]
) -> None:
    created = create_config("Enforce")
    found = lambda_client.get_code_signing_config(
        CodeSigningConfigArn=created["CodeSigningConfigArn"]
    )["CodeSigningConfig"]
    assert found == created


def test_unknown_code_signing_config_is_not_found(lambda_client: Any) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: lambda_client.get_code_signing_config(CodeSigningConfigArn=UNKNOWN_ARN),
        lambda: lambda_client.update_code_signing_config(
            CodeSigningConfigArn=UNKNOWN_ARN, Description="x"
        ),
        lambda: lambda_client.delete_code_signing_config(CodeSigningConfigArn=UNKNOWN_ARN),
        lambda: lambda_client.list_functions_by_code_signing_config(
            CodeSigningConfigArn=UNKNOWN_ARN
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as excinfo:
            call()
        code, message, status = error_of(excinfo)
        assert (code, status) == ("ResourceNotFoundException", 404)
        assert UNKNOWN_ARN in message


def test_malformed_code_signing_config_arn_is_rejected(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_code_signing_config(CodeSigningConfigArn="csc-short")
    assert error_of(excinfo)[::2] == ("ValidationException", 400)


def test_update_code_signing_config_changes_only_given_fields(
    lambda_client: Any, create_config: Callable[..., dict[str, Any]]
) -> None:
    created = create_config(Description="before")
    arn = created["CodeSigningConfigArn"]
    updated = lambda_client.update_code_signing_config(
        CodeSigningConfigArn=arn,
        CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Enforce"},
    )["CodeSigningConfig"]
    assert updated["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Enforce"}
    assert updated["Description"] == "before"
    assert updated["AllowedPublishers"] == {"SigningProfileVersionArns": [PROFILE]}
    updated = lambda_client.update_code_signing_config(
        CodeSigningConfigArn=arn,
        Description="after",
        AllowedPublishers={"SigningProfileVersionArns": [PROFILE, OTHER_PROFILE]},
    )["CodeSigningConfig"]
    assert updated["Description"] == "after"
    assert updated["AllowedPublishers"]["SigningProfileVersionArns"] == [PROFILE, OTHER_PROFILE]
    assert updated["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Enforce"}
    found = lambda_client.get_code_signing_config(CodeSigningConfigArn=arn)["CodeSigningConfig"]
    assert found == updated


def test_list_code_signing_configs_pages(
    lambda_client: Any, create_config: Callable[..., dict[str, Any]]
) -> None:
    mine = {create_config()["CodeSigningConfigArn"] for _ in range(3)}
    seen: list[str] = []
    params: dict[str, Any] = {"MaxItems": 2}
    while True:
        page = lambda_client.list_code_signing_configs(**params)
        assert len(page["CodeSigningConfigs"]) <= 2
        seen.extend(config["CodeSigningConfigArn"] for config in page["CodeSigningConfigs"])
        if not page.get("NextMarker"):
            break
        params["Marker"] = page["NextMarker"]
    assert mine <= set(seen)
    assert len(seen) == len(set(seen))


def test_list_code_signing_configs_rejects_bad_marker(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_code_signing_configs(Marker="%%%")
    assert error_of(excinfo)[0] == "InvalidParameterValueException"


def test_delete_code_signing_config(
    lambda_client: Any, create_config: Callable[..., dict[str, Any]]
) -> None:
    arn = create_config()["CodeSigningConfigArn"]
    response = lambda_client.delete_code_signing_config(CodeSigningConfigArn=arn)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_code_signing_config(CodeSigningConfigArn=arn)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


# ------------------------------------------------------------------ functions


def test_attach_list_and_detach(
    lambda_client: Any,
    create_config: Callable[..., dict[str, Any]],
    create_function: Callable[..., Any],
) -> None:
    arn = create_config()["CodeSigningConfigArn"]
    first = create_function()["FunctionName"]
    second = create_function(CodeSigningConfigArn=arn)["FunctionName"]

    empty = lambda_client.get_function_code_signing_config(FunctionName=first)
    assert empty["CodeSigningConfigArn"] == ""
    assert empty["FunctionName"] == first

    put = lambda_client.put_function_code_signing_config(
        FunctionName=first, CodeSigningConfigArn=arn
    )
    assert put["CodeSigningConfigArn"] == arn
    assert put["FunctionName"] == first
    got = lambda_client.get_function_code_signing_config(FunctionName=first)
    assert got["CodeSigningConfigArn"] == arn

    expected = sorted(
        f"arn:aws:lambda:us-east-1:000000000000:function:{name}" for name in (first, second)
    )
    listed = lambda_client.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)
    assert sorted(listed["FunctionArns"]) == expected
    page = lambda_client.list_functions_by_code_signing_config(CodeSigningConfigArn=arn, MaxItems=1)
    rest = lambda_client.list_functions_by_code_signing_config(
        CodeSigningConfigArn=arn, Marker=page["NextMarker"]
    )
    assert sorted(page["FunctionArns"] + rest["FunctionArns"]) == expected

    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_code_signing_config(CodeSigningConfigArn=arn)
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceConflictException", 409)
    assert "DeleteFunctionCodeSigningConfig" in message

    for name in (first, second):
        response = lambda_client.delete_function_code_signing_config(FunctionName=name)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert (
        lambda_client.get_function_code_signing_config(FunctionName=first)["CodeSigningConfigArn"]
        == ""
    )
    listed = lambda_client.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)
    assert listed["FunctionArns"] == []
    lambda_client.delete_code_signing_config(CodeSigningConfigArn=arn)


def test_put_function_code_signing_config_errors(
    lambda_client: Any,
    create_config: Callable[..., dict[str, Any]],
    create_function: Callable[..., Any],
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_code_signing_config(
            FunctionName=name, CodeSigningConfigArn=UNKNOWN_ARN
        )
    code, message, status = error_of(excinfo)
    assert (code, status) == ("CodeSigningConfigNotFoundException", 404)
    assert UNKNOWN_ARN in message

    arn = create_config()["CodeSigningConfigArn"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_code_signing_config(
            FunctionName="no-such-function", CodeSigningConfigArn=arn
        )
    assert error_of(excinfo)[::2] == ("ResourceNotFoundException", 404)


def test_function_code_signing_config_of_unknown_function(lambda_client: Any) -> None:
    for call in (
        lambda_client.get_function_code_signing_config,
        lambda_client.delete_function_code_signing_config,
    ):
        with pytest.raises(ClientError) as excinfo:
            call(FunctionName="no-such-function")
        code, message, status = error_of(excinfo)
        assert (code, status) == ("ResourceNotFoundException", 404)
        assert "no-such-function" in message


# ---------------------------------------------------------------- enforcement


def test_enforce_refuses_code_updates_and_warn_allows_them(
    lambda_client: Any,
    create_config: Callable[..., dict[str, Any]],
    create_function: Callable[..., Any],
) -> None:
    config = create_config("Warn")
    arn = config["CodeSigningConfigArn"]
    name = create_function()["FunctionName"]
    lambda_client.put_function_code_signing_config(FunctionName=name, CodeSigningConfigArn=arn)
    new_code = make_zip({"app.py": "def handler(e, c):\n    return 2\n"})
    updated = lambda_client.update_function_code(FunctionName=name, ZipFile=new_code)
    assert updated["CodeSize"] == len(new_code)

    lambda_client.update_code_signing_config(
        CodeSigningConfigArn=arn, CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Enforce"}
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_code(FunctionName=name, ZipFile=make_zip())
    code, message, status = error_of(excinfo)
    assert (code, status) == ("CodeVerificationFailedException", 400)
    assert arn in message
    unchanged = lambda_client.get_function_configuration(FunctionName=name)
    assert unchanged["CodeSha256"] == updated["CodeSha256"]


def test_enforce_refuses_new_functions(
    create_config: Callable[..., dict[str, Any]], create_function: Callable[..., Any]
) -> None:
    arn = create_config("Enforce")["CodeSigningConfigArn"]
    with pytest.raises(ClientError) as excinfo:
        create_function(CodeSigningConfigArn=arn)
    assert error_of(excinfo)[0] == "CodeVerificationFailedException"
