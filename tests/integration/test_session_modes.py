"""Sessions issued in development mode, where any signature is accepted and anyone may
assume any role, are not honoured once the same data directory is served in enforced mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.iam import LAMBDA_TRUST, client
from tests.support.server import LaminaServer

KEY, SECRET = "AKIASESSIONMODES", "session-modes-secret"
TRUST_ANYONE = LAMBDA_TRUST.replace('{"Service": "lambda.amazonaws.com"}', '{"AWS": "*"}')


def test_development_sessions_are_refused_in_enforced_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    development = LaminaServer(data).start()
    try:
        iam = client(development, "iam", "anything", "anything")
        role = iam.create_role(RoleName="open", AssumeRolePolicyDocument=TRUST_ANYONE)["Role"]
        sts = client(development, "sts", "anything", "anything")
        issued = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="dev")["Credentials"]
    finally:
        development.stop()
    env = {"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
    enforced = LaminaServer(data, env=env).start()
    try:
        leftover = client(
            enforced,
            "sts",
            issued["AccessKeyId"],
            issued["SecretAccessKey"],
            issued["SessionToken"],
        )
        with pytest.raises(ClientError) as caught:
            leftover.get_caller_identity()
        error = caught.value.response["Error"]
        assert (error["Code"], error["Message"]) == (
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
        # A session issued in enforced mode is honoured.
        fresh = client(enforced, "sts", KEY, SECRET).assume_role(
            RoleArn=role["Arn"], RoleSessionName="enforced"
        )["Credentials"]
        caller = client(
            enforced, "sts", fresh["AccessKeyId"], fresh["SecretAccessKey"], fresh["SessionToken"]
        ).get_caller_identity()
        assert caller["Arn"].endswith(":assumed-role/open/enforced")
    finally:
        enforced.stop()
