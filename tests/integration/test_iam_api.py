"""IAM on Lamina's port (development mode): roles, users, keys, inline and managed policies,
attachments, with AWS's error codes, statuses and messages, through boto3 and the AWS CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws_cli import run_aws
from tests.support.aws_errors import refused
from tests.support.server import LaminaServer

ACCOUNT = "000000000000"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
ALLOW_LOGS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}],
}
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
AWS_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaRole",
    "arn:aws:iam::aws:policy/AWSLambda_FullAccess",
    "arn:aws:iam::aws:policy/AWSLambda_ReadOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
}


@pytest.fixture(scope="module")
def iam(server: LaminaServer) -> Iterator[Any]:
    client = server.client("iam")
    yield client
    client.close()


@pytest.fixture
def role(iam: Any, unique_name: Callable[[str], str]) -> str:
    name = unique_name("role")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))
    return name


def test_role_lifecycle(iam: Any, unique_name: Callable[[str], str]) -> None:
    name = unique_name("role")
    created = iam.create_role(
        RoleName=name,
        Path="/service/",
        AssumeRolePolicyDocument=json.dumps(TRUST),
        Description="runs functions",
        MaxSessionDuration=7200,
        Tags=[{"Key": "team", "Value": "core"}],
    )["Role"]
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/service/{name}"
    assert created["RoleId"].startswith("AROA") and len(created["RoleId"]) == 21
    assert created["AssumeRolePolicyDocument"] == TRUST

    found = iam.get_role(RoleName=name)["Role"]
    assert (found["Path"], found["Description"], found["MaxSessionDuration"]) == (
        "/service/",
        "runs functions",
        7200,
    )
    assert found["Tags"] == [{"Key": "team", "Value": "core"}]
    listed = iam.list_roles(PathPrefix="/service/")["Roles"]
    assert name in [r["RoleName"] for r in listed]

    trusting_me = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trusting_me))
    assert iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"] == trusting_me

    iam.delete_role(RoleName=name)
    refused(
        lambda: iam.get_role(RoleName=name),
        "NoSuchEntity",
        404,
        f"The role with name {name} cannot be found.",
    )
    refused(lambda: iam.delete_role(RoleName=name), "NoSuchEntity", 404)


def test_role_refusals(server: LaminaServer, iam: Any, role: str) -> None:
    refused(
        lambda: iam.create_role(RoleName=role.upper(), AssumeRolePolicyDocument=json.dumps(TRUST)),
        "EntityAlreadyExists",
        409,
        f"Role with name {role.upper()} already exists.",
    )
    refused(
        lambda: iam.create_role(RoleName="x" * 65, AssumeRolePolicyDocument=json.dumps(TRUST)),
        "ValidationError",
        400,
        f"1 validation error detected: Value '{'x' * 65}' at 'roleName' failed to satisfy "
        "constraint: Member must have length less than or equal to 64",
    )
    refused(
        lambda: iam.create_role(RoleName="bad-trust", AssumeRolePolicyDocument="{not json"),
        "MalformedPolicyDocument",
        400,
    )
    unchecked = server.client("iam", parameter_validation=False)
    refused(
        lambda: unchecked.create_role(
            RoleName="short-sessions",
            AssumeRolePolicyDocument=json.dumps(TRUST),
            MaxSessionDuration=60,
        ),
        "ValidationError",
        400,
        "1 validation error detected: Value '60' at 'maxSessionDuration' failed to satisfy "
        "constraint: Member must have value greater than or equal to 3600",
    )
    unchecked.close()


def test_role_inline_policies(iam: Any, role: str) -> None:
    iam.put_role_policy(RoleName=role, PolicyName="logs", PolicyDocument=json.dumps(ALLOW_LOGS))
    got = iam.get_role_policy(RoleName=role, PolicyName="logs")
    assert (got["RoleName"], got["PolicyName"], got["PolicyDocument"]) == (role, "logs", ALLOW_LOGS)
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["logs"]

    refused(
        lambda: iam.get_role_policy(RoleName=role, PolicyName="nope"),
        "NoSuchEntity",
        404,
        "The role policy with name nope cannot be found.",
    )
    identity_with_principal = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}],
    }
    refused(
        lambda: iam.put_role_policy(
            RoleName=role, PolicyName="p", PolicyDocument=json.dumps(identity_with_principal)
        ),
        "MalformedPolicyDocument",
        400,
    )
    huge = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::b/{i:0>40}"}
            for i in range(200)
        ],
    }
    refused(
        lambda: iam.put_role_policy(
            RoleName=role, PolicyName="huge", PolicyDocument=json.dumps(huge)
        ),
        "LimitExceeded",
        409,
        f"Maximum policy size of 10240 bytes exceeded for role {role}",
    )
    refused(
        lambda: iam.delete_role(RoleName=role),
        "DeleteConflict",
        409,
        "Cannot delete entity, must delete policies first.",
    )
    iam.delete_role_policy(RoleName=role, PolicyName="logs")
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == []
    refused(
        lambda: iam.delete_role_policy(RoleName=role, PolicyName="logs"),
        "NoSuchEntity",
        404,
        "The role policy with name logs cannot be found.",
    )
    iam.delete_role(RoleName=role)


def test_attachments(iam: Any, role: str, unique_name: Callable[[str], str]) -> None:
    iam.attach_role_policy(RoleName=role, PolicyArn=BASIC_EXECUTION)
    iam.attach_role_policy(RoleName=role, PolicyArn=BASIC_EXECUTION)  # idempotent
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == [
        {"PolicyName": "AWSLambdaBasicExecutionRole", "PolicyArn": BASIC_EXECUTION}
    ]
    missing = f"arn:aws:iam::{ACCOUNT}:policy/{unique_name('nope')}"
    refused(
        lambda: iam.attach_role_policy(RoleName=role, PolicyArn=missing),
        "NoSuchEntity",
        404,
        f"Policy {missing} does not exist or is not attachable.",
    )
    refused(
        lambda: iam.detach_role_policy(RoleName=role, PolicyArn=missing),
        "NoSuchEntity",
        404,
        f"Policy {missing} was not found.",
    )
    refused(
        lambda: iam.attach_role_policy(RoleName=unique_name("ghost"), PolicyArn=BASIC_EXECUTION),
        "NoSuchEntity",
        404,
    )
    arns = [
        iam.create_policy(PolicyName=unique_name("p"), PolicyDocument=json.dumps(ALLOW_LOGS))[
            "Policy"
        ]["Arn"]
        for _ in range(10)
    ]
    for arn in arns[:9]:
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    refused(
        lambda: iam.attach_role_policy(RoleName=role, PolicyArn=arns[9]),
        "LimitExceeded",
        409,
        "Cannot exceed quota for PoliciesPerRole: 10",
    )
    assert iam.get_policy(PolicyArn=arns[0])["Policy"]["AttachmentCount"] == 1
    refused(
        lambda: iam.delete_policy(PolicyArn=arns[0]),
        "DeleteConflict",
        409,
        "Cannot delete a policy attached to entities.",
    )
    refused(
        lambda: iam.delete_role(RoleName=role),
        "DeleteConflict",
        409,
        "Cannot delete entity, must detach all policies first.",
    )
    for arn in [BASIC_EXECUTION, *arns[:9]]:
        iam.detach_role_policy(RoleName=role, PolicyArn=arn)
    for arn in arns:
        iam.delete_policy(PolicyArn=arn)
    iam.delete_role(RoleName=role)


def test_managed_policies(iam: Any, unique_name: Callable[[str], str]) -> None:
    name = unique_name("policy")
    created = iam.create_policy(
        PolicyName=name, Path="/team/", PolicyDocument=json.dumps(ALLOW_LOGS), Description="d"
    )["Policy"]
    arn = created["Arn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/team/{name}"
    assert created["PolicyId"].startswith("ANPA") and created["DefaultVersionId"] == "v1"
    assert iam.get_policy(PolicyArn=arn)["Policy"]["Description"] == "d"
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert (version["Document"], version["IsDefaultVersion"]) == (ALLOW_LOGS, True)
    refused(
        lambda: iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(ALLOW_LOGS)),
        "EntityAlreadyExists",
        409,
        f"A policy called {name} already exists. Duplicate names are not allowed.",
    )

    for number in range(2, 6):
        made = iam.create_policy_version(
            PolicyArn=arn, PolicyDocument=json.dumps(ALLOW_LOGS), SetAsDefault=number == 3
        )["PolicyVersion"]
        assert made["VersionId"] == f"v{number}"
    refused(
        lambda: iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(ALLOW_LOGS)),
        "LimitExceeded",
        409,
        "A managed policy can have up to 5 versions. Before you create a new version, you "
        "must delete an existing version.",
    )
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v3"
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    assert [v["VersionId"] for v in versions] == ["v5", "v4", "v3", "v2", "v1"]
    assert [v["VersionId"] for v in versions if v["IsDefaultVersion"]] == ["v3"]
    refused(
        lambda: iam.delete_policy_version(PolicyArn=arn, VersionId="v3"),
        "DeleteConflict",
        409,
        "Cannot delete the default version of a policy.",
    )
    refused(
        lambda: iam.delete_policy(PolicyArn=arn),
        "DeleteConflict",
        409,
        "This policy has more than one version. Before you delete a policy, you must delete "
        "the policy's versions. The default version is deleted with the policy.",
    )
    local = iam.list_policies(Scope="Local", PathPrefix="/team/")["Policies"]
    assert arn in [p["Arn"] for p in local]
    for version_id in ["v1", "v2", "v4", "v5"]:
        iam.delete_policy_version(PolicyArn=arn, VersionId=version_id)
    iam.delete_policy(PolicyArn=arn)
    refused(
        lambda: iam.get_policy(PolicyArn=arn), "NoSuchEntity", 404, f"Policy {arn} was not found."
    )
    refused(
        lambda: iam.get_policy(PolicyArn="arn:aws:iam::policy-without-account"),
        "InvalidInput",
        400,
        "ARN arn:aws:iam::policy-without-account is not valid.",
    )


def test_aws_managed_policies(iam: Any) -> None:
    listed = iam.list_policies(Scope="AWS")["Policies"]
    assert {p["Arn"] for p in listed} >= AWS_POLICIES
    basic = iam.get_policy(PolicyArn=BASIC_EXECUTION)["Policy"]
    assert (basic["Path"], basic["DefaultVersionId"]) == ("/service-role/", "v1")
    document = iam.get_policy_version(PolicyArn=BASIC_EXECUTION, VersionId="v1")["PolicyVersion"][
        "Document"
    ]
    actions = {a for s in document["Statement"] for a in s["Action"]}
    assert {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"} <= actions


def test_users_and_keys(iam: Any, unique_name: Callable[[str], str]) -> None:
    name = unique_name("user")
    user = iam.create_user(UserName=name, Path="/people/")["User"]
    assert user["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/people/{name}"
    assert user["UserId"].startswith("AIDA") and len(user["UserId"]) == 21
    assert iam.get_user(UserName=name)["User"]["UserId"] == user["UserId"]
    assert name in [u["UserName"] for u in iam.list_users(PathPrefix="/people/")["Users"]]
    refused(
        lambda: iam.create_user(UserName=name),
        "EntityAlreadyExists",
        409,
        f"User with name {name} already exists.",
    )

    keys = [iam.create_access_key(UserName=name)["AccessKey"] for _ in range(2)]
    for key in keys:
        assert key["AccessKeyId"].startswith("AKIA") and len(key["AccessKeyId"]) == 20
        assert len(key["SecretAccessKey"]) == 40 and key["Status"] == "Active"
    refused(
        lambda: iam.create_access_key(UserName=name),
        "LimitExceeded",
        409,
        "Cannot exceed quota for AccessKeysPerUser: 2",
    )
    listed = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in listed] == [k["AccessKeyId"] for k in keys]
    assert all("SecretAccessKey" not in k for k in listed)
    iam.update_access_key(UserName=name, AccessKeyId=keys[0]["AccessKeyId"], Status="Inactive")
    statuses = [k["Status"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]]
    assert statuses == ["Inactive", "Active"]
    refused(
        lambda: iam.delete_user(UserName=name),
        "DeleteConflict",
        409,
        "Cannot delete entity, must delete access keys first.",
    )
    ghost_key = "AKIA" + "Z" * 16
    refused(
        lambda: iam.delete_access_key(UserName=name, AccessKeyId=ghost_key),
        "NoSuchEntity",
        404,
        f"The Access Key with id {ghost_key} cannot be found.",
    )
    for key in keys:
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])

    iam.put_user_policy(UserName=name, PolicyName="logs", PolicyDocument=json.dumps(ALLOW_LOGS))
    assert iam.get_user_policy(UserName=name, PolicyName="logs")["PolicyDocument"] == ALLOW_LOGS
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["logs"]
    big = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::b/{i:0>40}"}
            for i in range(40)
        ],
    }
    refused(
        lambda: iam.put_user_policy(
            UserName=name, PolicyName="big", PolicyDocument=json.dumps(big)
        ),
        "LimitExceeded",
        409,
        f"Maximum policy size of 2048 bytes exceeded for user {name}",
    )
    refused(
        lambda: iam.get_user_policy(UserName=name, PolicyName="nope"),
        "NoSuchEntity",
        404,
        "The user policy with name nope cannot be found.",
    )
    iam.attach_user_policy(UserName=name, PolicyArn=BASIC_EXECUTION)
    attached = iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [BASIC_EXECUTION]
    refused(
        lambda: iam.delete_user(UserName=name),
        "DeleteConflict",
        409,
        "Cannot delete entity, must delete policies first.",
    )
    iam.delete_user_policy(UserName=name, PolicyName="logs")
    refused(
        lambda: iam.delete_user(UserName=name),
        "DeleteConflict",
        409,
        "Cannot delete entity, must detach all policies first.",
    )
    iam.detach_user_policy(UserName=name, PolicyArn=BASIC_EXECUTION)
    iam.delete_user(UserName=name)
    refused(
        lambda: iam.get_user(UserName=name),
        "NoSuchEntity",
        404,
        f"The user with name {name} cannot be found.",
    )
    refused(
        lambda: iam.list_access_keys(UserName=name),
        "NoSuchEntity",
        404,
        f"The user with name {name} cannot be found.",
    )


def test_pages(iam: Any, unique_name: Callable[[str], str]) -> None:
    path = f"/{unique_name('paged')}/"
    names = sorted(unique_name("r") for _ in range(5))
    for name in names:
        iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(TRUST))
    first = iam.list_roles(PathPrefix=path, MaxItems=2)
    assert first["IsTruncated"] and len(first["Roles"]) == 2
    seen = [r["RoleName"] for r in first["Roles"]]
    marker = first["Marker"]
    while marker:
        page = iam.list_roles(PathPrefix=path, MaxItems=2, Marker=marker)
        seen += [r["RoleName"] for r in page["Roles"]]
        marker = page.get("Marker")
    assert seen == names
    paginated = iam.get_paginator("list_roles").paginate(
        PathPrefix=path, PaginationConfig={"PageSize": 3}
    )
    assert [r["RoleName"] for page in paginated for r in page["Roles"]] == names


def test_aws_cli(server: LaminaServer, tmp_path: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("cli-role")

    def aws(*args: str) -> Any:
        result = run_aws(server.endpoint, tmp_path, "iam", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else None

    created = aws(
        "create-role", "--role-name", name, "--assume-role-policy-document", json.dumps(TRUST)
    )
    assert created["Role"]["AssumeRolePolicyDocument"] == TRUST
    aws("attach-role-policy", "--role-name", name, "--policy-arn", BASIC_EXECUTION)
    aws(
        "put-role-policy",
        "--role-name",
        name,
        "--policy-name",
        "logs",
        "--policy-document",
        json.dumps(ALLOW_LOGS),
    )
    attached = aws("list-attached-role-policies", "--role-name", name)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [BASIC_EXECUTION]
    assert (
        aws("get-role-policy", "--role-name", name, "--policy-name", "logs")["PolicyDocument"]
        == ALLOW_LOGS
    )
    missing = run_aws(server.endpoint, tmp_path, "iam", "get-role", "--role-name", name + "-x")
    assert missing.returncode != 0
    assert (
        f"An error occurred (NoSuchEntity) when calling the GetRole operation: "
        f"The role with name {name}-x cannot be found." in missing.stderr
    )
    aws("detach-role-policy", "--role-name", name, "--policy-arn", BASIC_EXECUTION)
    aws("delete-role-policy", "--role-name", name, "--policy-name", "logs")
    aws("delete-role", "--role-name", name)
