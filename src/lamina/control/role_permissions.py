"""Enforced mode: what a function's execution role must allow before Lambda acts with it.

An event source mapping's poller reads its source as the function's role, and a destination
is written to as that role. AWS checks the role when the mapping or the destination is
configured and refuses the change with InvalidParameterValueException; so does Lamina, with
AWS's sentences where they are known (see each constant).

The role is evaluated as the session Lambda would run it under
(`arn:aws:sts::<account>:assumed-role/<role>/<function>`), with the role's inline and attached
policies, through the same `Authority` that decides API calls. Only enforced mode builds a
`RolePermissions`; development mode has none and checks nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from lamina.arns import Account
from lamina.constants import LATEST
from lamina.control.access import Authority, Question
from lamina.control.event_invoke import destination_kind
from lamina.control.file_systems import CLIENT_MOUNT, FILE_SYSTEM_REFUSED
from lamina.control.sts import assumed_role_arn
from lamina.errors import InvalidParameterValue
from lamina.identity.caller import Caller, CallerKind
from lamina.identity.policy import Decision
from lamina.model.mappings import DYNAMODB, KINESIS, MQ, SQS, EventSourceMapping

# AWS's current wording for an SQS source ("The provided execution role ..." before 2021).
SOURCE_REFUSED = (
    "The function execution role does not have permissions to call {action} on {service}"
)
# AWS's wording for a destination the role may not write to (EventInvokeConfig).
DESTINATION_REFUSED = (
    "The function execution role does not have permissions to call {action} on {arn}"
)
# AWS's wording for a stream source (Kinesis names ListShards; DynamoDB Streams has none).
KINESIS_REFUSED = (
    "Cannot access stream {arn}. Please ensure the role can perform the GetRecords, "
    "GetShardIterator, DescribeStream, ListShards, and ListStreams Actions on your stream in IAM."
)
DYNAMODB_REFUSED = (
    "Cannot access stream {arn}. Please ensure the role can perform the GetRecords, "
    "GetShardIterator, DescribeStream, and ListStreams Actions on your stream in IAM."
)
# AWS's wording for a DeadLetterConfig target the role may not write to (seen for SQS; the
# SNS sentence follows it).
DEAD_LETTER_REFUSED = (
    "The provided execution role does not have permissions to call {action} on {service}"
)
# AWS's wording for a VpcConfig the role may not set up network interfaces for (seen for
# CreateNetworkInterface; the other two actions follow it).
NETWORK_INTERFACE_REFUSED = (
    "The provided execution role does not have permissions to call {action} on EC2"
)
# AWS's wording for an MSK secret; Lamina uses it for Amazon MQ's BASIC_AUTH secret too.
SECRET_REFUSED = (
    "Cannot access secret manager value {arn}. Please ensure the role can perform the "
    "'secretsmanager:GetSecretValue' action on your broker in IAM."
)

# The actions a poller performs on its source, in the order AWS reports the first missing
# one (ReceiveMessage first is seen on AWS; the order of the other two is Lamina's).
_SQS_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
_STREAM_ACTIONS = {
    KINESIS: (
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:DescribeStream",
        "kinesis:ListShards",
        "kinesis:ListStreams",
    ),
    DYNAMODB: (
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:DescribeStream",
        "dynamodb:ListStreams",
    ),
}
# What Lambda does with the role to put a function in a VPC, in the order AWS reports the
# first missing one (CreateNetworkInterface first is seen on AWS; the rest is Lamina's).
_NETWORK_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
)
# Poller answers kept (one per mapping; cleared whole when more, deleted mappings' included).
_REFUSALS_KEPT = 4096
# What writing to a destination takes, by its kind.
_DESTINATION_ACTIONS = {
    "sqs": "sqs:SendMessage",
    "sns": "sns:Publish",
    "lambda": "lambda:InvokeFunction",
    "events": "events:PutEvents",
    "s3": "s3:PutObject",
}


class RolePermissions:
    """Decides whether a function's execution role allows what Lambda will do with it."""

    def __init__(self, authority: Authority, account: Account) -> None:
        self._authority = authority
        self._account = account
        # Mapping UUID -> (what the answer depends on, the answer): pollers ask at every
        # reconcile (several times a second), and the answer moves only with the stores.
        self._refusals: dict[str, tuple[tuple[int, int, object], str | None]] = {}

    def session(self, role_arn: str, function_name: str) -> Caller:
        """The principal Lambda acts as for `function_name`: its role's session."""
        account = self._account.account_id
        role_name = role_arn.rsplit("/", 1)[-1]
        return Caller(
            assumed_role_arn(account, role_name, function_name),
            account,
            CallerKind.ASSUMED_ROLE,
            role_name,
            role_arn=role_arn,
        )

    def key_decision(self, session: Caller, action: str, key_arn: str, key_policy: str) -> Decision:
        """What a KMS key's policy (and, where it delegates, the role's) says to `session`."""
        compiled = self._authority.key_policy(key_policy)
        return self._authority.decide(session, Question(action, key_arn, {}, key_policy=compiled))

    def allows(self, role_arn: str, function_name: str, action: str, resource: str) -> bool:
        caller = self.session(role_arn, function_name)
        return bool(self._authority.decide(caller, Question(action, resource, {})))

    def check_source(
        self,
        role_arn: str,
        function_name: str,
        kind: str,
        source_arn: str | None,
        secrets: Sequence[str] = (),
    ) -> None:
        """Refuse a mapping whose role may not read its source (InvalidParameterValue)."""
        if source_arn is None:
            return  # self-managed Kafka: no AWS source to read

        def lacks(action: str, resource: str = source_arn) -> bool:
            return not self.allows(role_arn, function_name, action, resource)

        if kind == SQS:
            for action in _SQS_ACTIONS:
                if lacks(action):
                    raise InvalidParameterValue(
                        SOURCE_REFUSED.format(action=action.split(":", 1)[1], service="SQS")
                    )
        elif kind in _STREAM_ACTIONS:
            if any(lacks(action) for action in _STREAM_ACTIONS[kind]):
                refusal = KINESIS_REFUSED if kind == KINESIS else DYNAMODB_REFUSED
                raise InvalidParameterValue(refusal.format(arn=source_arn))
        elif kind == MQ:
            if lacks("mq:DescribeBroker"):
                # Lamina's wording, after the SQS one: AWS's text is not known.
                raise InvalidParameterValue(
                    SOURCE_REFUSED.format(action="DescribeBroker", service="MQ")
                )
            for secret in secrets:
                if lacks("secretsmanager:GetSecretValue", secret):
                    raise InvalidParameterValue(SECRET_REFUSED.format(arn=secret))

    def check_dead_letter(self, role_arn: str, function_name: str, target_arn: str) -> None:
        """Refuse a DeadLetterConfig target the role may not write to (InvalidParameterValue)."""
        kind = destination_kind(target_arn)
        if kind not in ("sqs", "sns"):
            return  # Lambda's own validation refuses other targets
        action, service = ("sqs:SendMessage", "SQS") if kind == "sqs" else ("sns:Publish", "SNS")
        if not self.allows(role_arn, function_name, action, target_arn):
            raise InvalidParameterValue(
                DEAD_LETTER_REFUSED.format(action=action.split(":", 1)[1], service=service)
            )

    def check_vpc(self, role_arn: str, function_name: str) -> None:
        """Refuse a VpcConfig when the role may not manage the function's network interfaces
        (InvalidParameterValue); EC2 decides these actions on every resource (`*`)."""
        for action in _NETWORK_INTERFACE_ACTIONS:
            if not self.allows(role_arn, function_name, action, "*"):
                raise InvalidParameterValue(
                    NETWORK_INTERFACE_REFUSED.format(action=action.split(":", 1)[1])
                )

    def check_file_systems(
        self, role_arn: str, function_name: str, file_system_arns: Sequence[str]
    ) -> None:
        """Refuse FileSystemConfigs whose file systems (their ARNs) the role may not mount
        (InvalidParameterValue)."""
        for arn in file_system_arns:
            if not self.allows(role_arn, function_name, CLIENT_MOUNT, arn):
                raise InvalidParameterValue(FILE_SYSTEM_REFUSED.format(arn=arn))

    def poller_refusal(self, mapping: EventSourceMapping) -> str | None:
        """Why a running poller may no longer read its source as the function's current role
        (the mapping's LastProcessingResult, `PROBLEM: ...`), or None when it may.

        AWS's poller acts with the role and starts failing once the role loses what it
        needs; the sentence is the one AWS gives when the mapping is configured. Asked
        again only once the function store, the IAM store or the mapping changed."""
        depends = (
            self._authority.functions.change_stamp(),
            self._authority.iam.store.change_stamp(),
            mapping.last_modified,
        )
        cached = self._refusals.get(mapping.uuid)
        if cached is not None and cached[0] == depends:
            return cached[1]
        refusal = self._judge_poller(mapping)
        if len(self._refusals) >= _REFUSALS_KEPT:
            self._refusals.clear()
        self._refusals[mapping.uuid] = (depends, refusal)
        return refusal

    def _judge_poller(self, mapping: EventSourceMapping) -> str | None:
        name = mapping.function_arn.split(":function:", 1)[-1].split(":", 1)[0]
        role = self._current_role(name, mapping.qualifier)
        if not role:
            return None  # the function is gone: the poller reports that itself
        secrets = [uri for kind, uri in mapping.source_access if kind == "BASIC_AUTH"]
        try:
            self.check_source(role, name, mapping.kind, mapping.event_source_arn, secrets)
        except InvalidParameterValue as refusal:
            return f"PROBLEM: {refusal.message}"
        return None

    def _current_role(self, name: str, qualifier: str | None) -> str | None:
        functions = self._authority.functions
        if qualifier is not None and qualifier != LATEST and not qualifier.isdigit():
            alias = functions.get_alias(name, qualifier)
            qualifier = alias.function_version if alias is not None else None
        if qualifier is not None and qualifier.isdigit():
            version = functions.get_version(name, int(qualifier))
            return version.role if version is not None else None
        record = functions.get(name)
        return record.latest.role if record is not None else None

    def check_destinations(
        self, role_arn: str, function_name: str, destinations: Sequence[str | None]
    ) -> None:
        """Refuse destinations the role may not write to (InvalidParameterValue)."""
        for arn in destinations:
            if arn is None:
                continue
            kind = destination_kind(arn)
            action = _DESTINATION_ACTIONS.get(kind or "")
            if action is None:
                continue  # an ARN of no known kind is refused by the config's own checks
            # Objects are written into a bucket: PutObject is decided on the bucket's keys.
            resource = f"{arn}/*" if kind == "s3" else arn
            if not self.allows(role_arn, function_name, action, resource):
                raise InvalidParameterValue(
                    DESTINATION_REFUSED.format(action=action.split(":", 1)[1], arn=arn)
                )
