"""AWS's MalformedPolicyDocument messages, word for word."""

from __future__ import annotations

import re

from lamina.identity.policy.document import MalformedPolicy

SYNTAX = "Syntax errors in policy."
# Text that is not JSON, on the trust (CreateRole) and resource-policy paths.
INVALID_JSON = "This policy contains invalid Json"
TRUST_ACTIONS = "AssumeRole policy may only specify STS AssumeRole actions."
OLD_VERSION = "Policy document must be version 2012-10-17 or greater."
LEGACY_PARSING = "The policy failed legacy parsing"
DUPLICATE_SID = "Statement IDs (SID) in a single policy must be unique."
SID_NOT_ALPHANUMERIC = (
    "Statement IDs (SID) must be alpha-numeric. "
    "Check that your input satisfies the regular expression [0-9A-Za-z]*"
)
NO_ACTIONS = "Policy statement must contain actions."
NO_RESOURCES = "Policy statement must contain resources."
PRINCIPAL_IN_IDENTITY = "Policy document should not specify a principal."
NO_VENDOR = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
TWO_COLONS = "Actions/Condition can contain only one colon."
# CreateRole / UpdateAssumeRolePolicy with a statement that names no principal (IAM's text
# carries the Java exception's name).
TRUST_WITHOUT_PRINCIPAL = (
    "Invalid principal in policy: com.amazon.balsa.error.InvalidPolicyException: "
    "The passed in policy has a statement with no principals!"
)
RESOURCE_VENDOR = "Resource vendor must be fully qualified and cannot contain regexes."

_VENDOR = re.compile(r"^[a-zA-Z0-9\-.]*$")


def prohibited_field(field: str) -> str:
    """A trust policy naming a Resource."""
    return f"Has prohibited field {field}"


def missing_field(field: str) -> str:
    """A resource or trust policy without a Principal."""
    return f"Missing required field {field}"


def invalid_principal(kind: str, value: str) -> str:
    """A principal IAM does not accept."""
    return f'Invalid principal in policy: "{kind}":"{value}"'


def not_arn(resource: str) -> str:
    """A Resource that is neither an ARN nor `*`."""
    return f'Resource {resource} must be in ARN format or "*".'


def check_action(action: str) -> None:
    """Raise MalformedPolicy with IAM's message when an action lacks a valid vendor prefix."""
    parts = action.split(":")
    if len(parts) == 1 and parts[0] != "*":
        raise MalformedPolicy(NO_VENDOR)
    if len(parts) > 2:
        raise MalformedPolicy(TWO_COLONS)
    if parts[0] != "*" and not _VENDOR.match(parts[0]):
        raise MalformedPolicy(f"Vendor {parts[0]} is not valid")
