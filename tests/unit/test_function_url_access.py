"""Which resource policies open an AuthType NONE URL to anyone."""

from __future__ import annotations

from typing import Any

from lamina.control.policies import Permission, render_statement
from lamina.function_urls.access import public_refusal

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"
URL_PERMISSION = Permission("url", "lambda:InvokeFunctionUrl", "*", function_url_auth_type="NONE")
INVOKE_PERMISSION = Permission(
    "invoke", "lambda:InvokeFunction", "*", invoked_via_function_url=True
)


def statements(*permissions: Permission) -> list[dict[str, Any]]:
    return [render_statement(permission, ARN) for permission in permissions]


def test_both_permissions_open_the_url() -> None:
    assert public_refusal(statements(URL_PERMISSION, INVOKE_PERMISSION)) is None


def test_an_unconditional_public_invoke_also_counts() -> None:
    plain_invoke = Permission("invoke", "lambda:InvokeFunction", "*")
    assert public_refusal(statements(URL_PERMISSION, plain_invoke)) is None


def test_each_missing_permission_is_named() -> None:
    assert public_refusal([]) == (
        "the resource policy does not allow lambda:InvokeFunctionUrl and "
        'lambda:InvokeFunction for Principal "*"'
    )
    assert public_refusal(statements(URL_PERMISSION)) == (
        'the resource policy does not allow lambda:InvokeFunction for Principal "*"'
    )


def test_grants_to_an_account_or_for_iam_urls_do_not_open_it() -> None:
    for url_permission in (
        Permission(
            "url", "lambda:InvokeFunctionUrl", "111122223333", function_url_auth_type="NONE"
        ),
        Permission("url", "lambda:InvokeFunctionUrl", "*", function_url_auth_type="AWS_IAM"),
    ):
        refusal = public_refusal(statements(url_permission, INVOKE_PERMISSION))
        assert refusal is not None and "lambda:InvokeFunctionUrl" in refusal


def test_a_deny_wins() -> None:
    deny = {**render_statement(URL_PERMISSION, ARN), "Sid": "deny", "Effect": "Deny"}
    assert public_refusal([*statements(URL_PERMISSION, INVOKE_PERMISSION), deny]) is not None
