"""The console in enforced mode: sign-in with an access key pair (checked as a signature
is), a session cookie, CSRF on every state-changing request, and the API's own
authorisation for the signed-in person's actions."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from tests.e2e.conftest import screenshot
from tests.support.iam import LAMBDA_TRUST, client, enforced_env
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer

KEY, SECRET = "AKIACONSOLEROOT", "console-root-secret"
ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    data = tmp_path_factory.mktemp("console-enforced") / "data"
    started = LaminaServer(data, env=enforced_env(KEY, SECRET)).start()
    try:
        with closing(client(started, "iam", KEY, SECRET)) as iam:
            iam.create_role(RoleName=ROLE.rsplit("/", 1)[-1], AssumeRolePolicyDocument=LAMBDA_TRUST)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def root_iam(enforced: LaminaServer) -> Iterator[Any]:
    iam = client(enforced, "iam", KEY, SECRET)
    yield iam
    iam.close()  # a client left to the garbage collector warns of its open socket


def sign_in(page: Any, server: LaminaServer, key: str, secret: str) -> None:
    page.goto(f"{server.endpoint}/console")
    page.wait_for_url(re.compile(r"/console/signin\?next="))
    page.get_by_label("Access key ID").fill(key)
    page.get_by_label("Secret access key").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_with_the_root_key(page: Any, enforced: LaminaServer) -> None:
    sign_in(page, enforced, KEY, "not-the-secret")
    error = page.locator("#signin-error")
    assert error.inner_text().startswith("SignatureDoesNotMatch: The request signature we")
    screenshot(page, "signin")

    page.get_by_label("Secret access key").fill(SECRET)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console$"))
    assert f"arn:aws:iam::{ACCOUNT}:root" in page.locator("header").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "lamina_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/console/signin$"))
    page.goto(f"{enforced.endpoint}/console/functions/anything/code")
    assert "/console/signin?next=" in page.url


def test_a_post_without_its_csrf_token_is_refused(page: Any, enforced: LaminaServer) -> None:
    sign_in(page, enforced, KEY, SECRET)
    page.wait_for_url(re.compile(r"/console$"))
    form = {"name": f"csrf-{uuid.uuid4().hex[:8]}", "role": f"arn:aws:iam::{ACCOUNT}:role/x"}
    refused = page.request.post(f"{enforced.endpoint}/console/functions", form=form)
    assert refused.status == 403
    assert refused.text() == "Forbidden: missing or invalid CSRF token"
    forged = page.request.post(
        f"{enforced.endpoint}/console/functions", form={**form, "csrf_token": "forged"}
    )
    assert forged.status == 403

    # The same request with the page's token is accepted (and answered by the API).
    token = page.locator("body").get_attribute("data-csrf")
    accepted = page.request.post(
        f"{enforced.endpoint}/console/functions",
        form={**form, "csrf_token": token, "blueprint": "python-hello"},
        max_redirects=0,
    )
    assert accepted.status in (303, 400), accepted.text()


def test_a_user_gets_the_apis_own_refusals(
    page: Any, enforced: LaminaServer, root_iam: Any
) -> None:
    iam = root_iam
    name = f"viewer-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    may_list = {"Effect": "Allow", "Action": ["lambda:ListFunctions"], "Resource": "*"}
    iam.put_user_policy(
        UserName=name,
        PolicyName="list-only",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [may_list]}),
    )
    sign_in(page, enforced, key["AccessKeyId"], key["SecretAccessKey"])
    page.wait_for_url(re.compile(r"/console$"))
    assert arn in page.locator("header").inner_text()
    # The console's own reads are asked of the same evaluator: no metrics for this user.
    assert page.get_by_text("Figures hidden:").inner_text() == (
        f"Figures hidden: User: {arn} is not authorized to perform: cloudwatch:GetMetricData "
        "on resource: * because no identity-based policy allows the cloudwatch:GetMetricData "
        "action"
    )

    function = f"denied-{uuid.uuid4().hex[:8]}"
    page.get_by_label("Function name").fill(function)
    page.get_by_label("Execution role").fill(f"arn:aws:iam::{ACCOUNT}:role/lamina-test")
    page.get_by_role("button", name="Create function").click()
    error = page.locator("#create-error").inner_text()
    assert error.startswith(f"AccessDeniedException: User: {arn} is not authorized to perform:")
    assert "iam:PassRole" in error or "lambda:CreateFunction" in error


def test_sign_in_with_sts_session_credentials(
    page: Any, enforced: LaminaServer, root_iam: Any
) -> None:
    iam = root_iam
    name = f"temp-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    with closing(client(enforced, "sts", key["AccessKeyId"], key["SecretAccessKey"])) as sts:
        session = sts.get_session_token(DurationSeconds=900)["Credentials"]
    page.goto(f"{enforced.endpoint}/console")
    page.get_by_label("Access key ID").fill(session["AccessKeyId"])
    page.get_by_label("Secret access key").fill(session["SecretAccessKey"])
    page.get_by_label("Session token").fill(session["SessionToken"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console$"))
    assert arn in page.locator("header").inner_text()
    # The user has no policy: the API's own refusal fills the page, not a list.
    assert page.locator(".notice.error").inner_text() == (
        f"AccessDeniedException: User: {arn} is not authorized to perform: "
        "lambda:ListFunctions on resource: * because no identity-based policy allows the "
        "lambda:ListFunctions action"
    )


def test_a_deactivated_key_ends_its_session(
    page: Any, enforced: LaminaServer, root_iam: Any
) -> None:
    iam = root_iam
    name = f"leaver-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    sign_in(page, enforced, key["AccessKeyId"], key["SecretAccessKey"])
    page.wait_for_url(re.compile(r"/console$"))
    iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    page.reload()
    assert page.get_by_role("heading", name="Sign in").is_visible()
    assert page.locator("#signin-error").inner_text() == (
        "UnrecognizedClientException: The security token included in the request is invalid."
    )
