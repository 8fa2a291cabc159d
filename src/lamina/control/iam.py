"""IAM's rules over the IAM store: names, ids, ARNs, quotas, conflicts, and AWS's errors.

The store keeps whatever it is given; everything IAM refuses is refused here, in AWS's
words (`NoSuchEntity`, `EntityAlreadyExists`, `DeleteConflict`, `LimitExceeded`,
`MalformedPolicyDocument`, `InvalidInput`). Shape constraints (name patterns and lengths,
path patterns, MaxSessionDuration's range) are the botocore model's and are checked by the
API layer before a call gets here.

AWS's managed policies are not rows: they come from `lamina.identity.managed_policies`,
so a newer Lamina brings newer documents without a migration. Only their attachments are
stored, by ARN, like any other.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from functools import lru_cache

from lamina.arns import Account
from lamina.errors import (
    AccessDenied,
    DeleteConflict,
    EntityAlreadyExists,
    InvalidInput,
    LimitExceeded,
    MalformedPolicyDocument,
    NoSuchEntity,
)
from lamina.identity.policy import MalformedPolicy, Policy, PolicyKind, parse_policy
from lamina.model.iam import (
    ACTIVE,
    ROLE,
    USER,
    AccessKey,
    InlinePolicy,
    ManagedPolicy,
    PolicyVersion,
    Role,
    User,
)
from lamina.store.protocols.iam import IamStore

# IAM's quotas (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
MAX_POLICY_VERSIONS = 5
MAX_ATTACHED_POLICIES = 10
MAX_ACCESS_KEYS = 2
# Characters of all of an owner's inline policies together, whitespace not counted.
INLINE_POLICY_QUOTA = {ROLE: 10_240, USER: 2_048}
MANAGED_POLICY_QUOTA = 6_144
TRUST_POLICY_QUOTA = 2_048
DEFAULT_MAX_SESSION = 3600

AWS_POLICY_ACCOUNT = "aws"
_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
_WHITESPACE = re.compile(r"\s+")
_POLICY_ARN = re.compile(
    r"^arn:aws:iam::(?P<account>\d{12}|aws):policy(?P<path>/(?:.*/)?)(?P<name>[^/]+)$"
)

# What ListPolicies' Scope selects.
SCOPE_ALL, SCOPE_AWS, SCOPE_LOCAL = "All", "AWS", "Local"


def new_id(prefix: str, length: int, alphabet: str = _ID_ALPHABET) -> str:
    """An IAM unique id (`AROA…`, `AIDA…`, `ANPA…`) or key id (`AKIA…`, `ASIA…`)."""
    return prefix + _random_text(alphabet, length)


def new_secret() -> str:
    """A secret access key: 40 characters, as AWS's are."""
    return _random_text(_SECRET_ALPHABET, 40)


def _random_text(alphabet: str, length: int) -> str:
    """`length` characters drawn uniformly from `alphabet`. `secrets.choice` reads the
    system's randomness once per character: 56 system calls per session issued, one per
    cold start. Here one read serves them all; bytes past the largest multiple of the
    alphabet's size are dropped, so that no character is likelier than another."""
    size = len(alphabet)
    limit = 256 - 256 % size
    drawn: list[str] = []
    while len(drawn) < length:
        drawn += [alphabet[byte % size] for byte in secrets.token_bytes(length * 2) if byte < limit]
    return "".join(drawn[:length])


@lru_cache(maxsize=1024)
def compile_policy(text: str, kind: PolicyKind) -> Policy:
    """A policy document parsed once (documents are immutable text, so the text is the key),
    refused with IAM's `MalformedPolicyDocument` and the evaluator's reason."""
    try:
        return parse_policy(text, kind)
    except MalformedPolicy as error:
        raise MalformedPolicyDocument(str(error)) from None


def policy_size(document: str) -> int:
    """How IAM counts a policy against its quotas: whitespace is not counted."""
    return len(_WHITESPACE.sub("", document))


def _aws_policies() -> dict[str, tuple[ManagedPolicy, PolicyVersion]]:
    """AWS's managed policies by lower-cased ARN (their documents never change at run time)."""
    from lamina.identity.managed_policies import aws_managed_policies

    return {policy.arn.lower(): (policy, version) for policy, version in aws_managed_policies()}


class IamService:
    def __init__(
        self, store: IamStore, account: Account, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.account = account
        self._clock = clock
        self._aws = _aws_policies()

    @property
    def account_id(self) -> str:
        return self.account.account_id

    # ------------------------------------------------------------------ roles

    def create_role(
        self,
        name: str,
        trust_policy: str,
        path: str = "/",
        description: str | None = None,
        max_session_duration: int = DEFAULT_MAX_SESSION,
        tags: Sequence[tuple[str, str]] = (),
    ) -> Role:
        self._check_trust_policy(trust_policy)
        role = Role(
            name=name,
            role_id=new_id("AROA", 17),
            path=path,
            arn=f"arn:aws:iam::{self.account_id}:role{path}{name}",
            created=self._clock(),
            trust_policy=trust_policy,
            description=description,
            max_session_duration=max_session_duration,
            tags=tuple(tags),
        )
        with self.store.transaction():
            if self.store.get_role(name) is not None:
                raise EntityAlreadyExists(f"Role with name {name} already exists.")
            self.store.put_role(role)
        return role

    def get_role(self, name: str) -> Role:
        role = self.store.get_role(name)
        if role is None:
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        return role

    def roles(self, path_prefix: str | None = None) -> list[Role]:
        return [role for role in self.store.roles() if _under(role.path, path_prefix)]

    def delete_role(self, name: str) -> None:
        with self.store.transaction():
            self.get_role(name)
            if self.store.attached(ROLE, name):
                raise DeleteConflict("Cannot delete entity, must detach all policies first.")
            if self.store.inline_policies(ROLE, name):
                raise DeleteConflict("Cannot delete entity, must delete policies first.")
            self.store.delete_role(name)

    def update_trust_policy(self, name: str, trust_policy: str) -> None:
        self._check_trust_policy(trust_policy)
        with self.store.transaction():
            role = self.get_role(name)
            self.store.put_role(replace(role, trust_policy=trust_policy))

    def update_role(
        self, name: str, description: str | None, max_session_duration: int | None
    ) -> None:
        with self.store.transaction():
            role = self.get_role(name)
            if description is not None:
                role = replace(role, description=description)
            if max_session_duration is not None:
                role = replace(role, max_session_duration=max_session_duration)
            self.store.put_role(role)

    def _check_trust_policy(self, document: str) -> None:
        if policy_size(document) > TRUST_POLICY_QUOTA:
            raise LimitExceeded(f"Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_QUOTA}")
        compile_policy(document, PolicyKind.TRUST)

    # ------------------------------------------------------------------ users

    def create_user(self, name: str, path: str = "/", tags: Sequence[tuple[str, str]] = ()) -> User:
        user = User(
            name=name,
            user_id=new_id("AIDA", 17),
            path=path,
            arn=f"arn:aws:iam::{self.account_id}:user{path}{name}",
            created=self._clock(),
            tags=tuple(tags),
        )
        with self.store.transaction():
            if self.store.get_user(name) is not None:
                raise EntityAlreadyExists(f"User with name {name} already exists.")
            self.store.put_user(user)
        return user

    def get_user(self, name: str) -> User:
        user = self.store.get_user(name)
        if user is None:
            raise NoSuchEntity(f"The user with name {name} cannot be found.")
        return user

    def users(self, path_prefix: str | None = None) -> list[User]:
        return [user for user in self.store.users() if _under(user.path, path_prefix)]

    def delete_user(self, name: str) -> None:
        with self.store.transaction():
            self.get_user(name)
            if self.store.access_keys(name):
                raise DeleteConflict("Cannot delete entity, must delete access keys first.")
            if self.store.inline_policies(USER, name):
                raise DeleteConflict("Cannot delete entity, must delete policies first.")
            if self.store.attached(USER, name):
                raise DeleteConflict("Cannot delete entity, must detach all policies first.")
            self.store.delete_user(name)

    # ------------------------------------------------------------------ access keys

    def create_access_key(self, user_name: str) -> AccessKey:
        with self.store.transaction():
            user = self.get_user(user_name)
            if len(self.store.access_keys(user.name)) >= MAX_ACCESS_KEYS:
                raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}")
            key = AccessKey(
                access_key_id=new_id("AKIA", 16),
                secret=new_secret(),
                user_name=user.name,
                status=ACTIVE,
                created=self._clock(),
            )
            self.store.put_access_key(key)
        return key

    def access_keys(self, user_name: str) -> list[AccessKey]:
        user = self.get_user(user_name)
        return self.store.access_keys(user.name)

    def _user_key(self, user_name: str, access_key_id: str) -> AccessKey:
        user = self.get_user(user_name)
        key = self.store.get_access_key(access_key_id)
        if key is None or key.user_name.lower() != user.name.lower():
            raise NoSuchEntity(f"The Access Key with id {access_key_id} cannot be found.")
        return key

    def delete_access_key(self, user_name: str, access_key_id: str) -> None:
        with self.store.transaction():
            self._user_key(user_name, access_key_id)
            self.store.delete_access_key(access_key_id)

    def update_access_key(self, user_name: str, access_key_id: str, status: str) -> None:
        with self.store.transaction():
            key = self._user_key(user_name, access_key_id)
            self.store.put_access_key(replace(key, status=status))

    # ------------------------------------------------------------------ owners (role/user)

    def owner_name(self, kind: str, name: str) -> str:
        """The role's or user's name as created (the store finds it case-insensitively)."""
        return self.get_role(name).name if kind == ROLE else self.get_user(name).name

    # ------------------------------------------------------------------ inline policies

    def put_inline_policy(self, kind: str, owner: str, name: str, document: str) -> None:
        compile_policy(document, PolicyKind.IDENTITY)
        with self.store.transaction():
            owner = self.owner_name(kind, owner)
            others = [
                policy.document
                for policy in self.store.inline_policies(kind, owner)
                if policy.name != name
            ]
            quota = INLINE_POLICY_QUOTA[kind]
            if sum(map(policy_size, [*others, document])) > quota:
                raise LimitExceeded(
                    f"Maximum policy size of {quota} bytes exceeded for {kind} {owner}"
                )
            self.store.put_inline_policy(InlinePolicy(kind, owner, name, document))

    def get_inline_policy(self, kind: str, owner: str, name: str) -> InlinePolicy:
        owner = self.owner_name(kind, owner)
        policy = self.store.get_inline_policy(kind, owner, name)
        if policy is None:
            raise NoSuchEntity(f"The {kind} policy with name {name} cannot be found.")
        return policy

    def inline_policy_names(self, kind: str, owner: str) -> list[str]:
        owner = self.owner_name(kind, owner)
        return [policy.name for policy in self.store.inline_policies(kind, owner)]

    def delete_inline_policy(self, kind: str, owner: str, name: str) -> None:
        with self.store.transaction():
            owner = self.owner_name(kind, owner)
            if not self.store.delete_inline_policy(kind, owner, name):
                raise NoSuchEntity(f"The {kind} policy with name {name} cannot be found.")

    # ------------------------------------------------------------------ attachments

    def attach(self, kind: str, owner: str, policy_arn: str) -> None:
        with self.store.transaction():
            owner = self.owner_name(kind, owner)
            policy = self._find_policy(policy_arn)
            if policy is None:
                raise NoSuchEntity(f"Policy {policy_arn} does not exist or is not attachable.")
            attached = self.store.attached(kind, owner)
            if policy.arn in attached:
                return
            if len(attached) >= MAX_ATTACHED_POLICIES:
                quota = "PoliciesPerRole" if kind == ROLE else "PoliciesPerUser"
                raise LimitExceeded(f"Cannot exceed quota for {quota}: {MAX_ATTACHED_POLICIES}")
            self.store.attach(kind, owner, policy.arn)

    def detach(self, kind: str, owner: str, policy_arn: str) -> None:
        with self.store.transaction():
            owner = self.owner_name(kind, owner)
            if not self.store.detach(kind, owner, policy_arn):
                raise NoSuchEntity(f"Policy {policy_arn} was not found.")

    def attached(
        self, kind: str, owner: str, path_prefix: str | None = None
    ) -> list[ManagedPolicy]:
        owner = self.owner_name(kind, owner)
        found = (self._find_policy(arn) for arn in self.store.attached(kind, owner))
        return [
            policy for policy in found if policy is not None and _under(policy.path, path_prefix)
        ]

    # ------------------------------------------------------------------ managed policies

    def create_policy(
        self,
        name: str,
        document: str,
        path: str = "/",
        description: str | None = None,
        tags: Sequence[tuple[str, str]] = (),
    ) -> ManagedPolicy:
        self._check_managed_document(document)
        now = self._clock()
        policy = ManagedPolicy(
            name=name,
            policy_id=new_id("ANPA", 17),
            path=path,
            arn=f"arn:aws:iam::{self.account_id}:policy{path}{name}",
            default_version="v1",
            created=now,
            updated=now,
            description=description,
            tags=tuple(tags),
        )
        with self.store.transaction():
            # Names are unique in the account whatever the path, as on IAM.
            if any(found.name.lower() == name.lower() for found in self.store.policies()):
                raise EntityAlreadyExists(
                    f"A policy called {name} already exists. Duplicate names are not allowed."
                )
            self.store.put_policy(policy)
            self.store.put_policy_version(PolicyVersion(policy.arn, "v1", document, now))
        return policy

    def get_policy(self, arn: str) -> ManagedPolicy:
        policy = self._find_policy(self._checked_arn(arn))
        if policy is None:
            raise NoSuchEntity(f"Policy {arn} was not found.")
        return policy

    def policies(
        self, scope: str = SCOPE_ALL, only_attached: bool = False, path_prefix: str | None = None
    ) -> list[ManagedPolicy]:
        found: list[ManagedPolicy] = []
        if scope in {SCOPE_ALL, SCOPE_AWS}:
            found.extend(policy for policy, _ in self._aws.values())
        if scope in {SCOPE_ALL, SCOPE_LOCAL}:
            found.extend(self.store.policies())
        found = [policy for policy in found if _under(policy.path, path_prefix)]
        if only_attached:
            found = [policy for policy in found if self.store.attachment_count(policy.arn)]
        return sorted(found, key=lambda policy: (policy.name.lower(), policy.arn))

    def attachment_count(self, arn: str) -> int:
        return self.store.attachment_count(arn)

    def delete_policy(self, arn: str) -> None:
        with self.store.transaction():
            policy = self._local_policy(arn)
            if self.store.attachment_count(policy.arn):
                raise DeleteConflict("Cannot delete a policy attached to entities.")
            if len(self.store.policy_versions(policy.arn)) > 1:
                raise DeleteConflict(
                    "This policy has more than one version. Before you delete a policy, you "
                    "must delete the policy's versions. The default version is deleted with "
                    "the policy."
                )
            self.store.delete_policy(policy.arn)

    def versions(self, arn: str) -> list[PolicyVersion]:
        policy = self.get_policy(arn)
        aws = self._aws.get(policy.arn.lower())
        if aws is not None:
            return [aws[1]]
        return self.store.policy_versions(policy.arn)

    def get_policy_version(self, arn: str, version_id: str) -> PolicyVersion:
        policy = self._find_policy(self._checked_arn(arn))
        version = None
        if policy is not None:
            version = next(
                (v for v in self.versions(policy.arn) if v.version_id == version_id), None
            )
        if version is None:
            # Unconfirmed against AWS: the wording of its "does not exist" for policies.
            raise NoSuchEntity(
                f"Policy {arn} version {version_id} does not exist or is not attachable."
            )
        return version

    def create_policy_version(self, arn: str, document: str, set_as_default: bool) -> PolicyVersion:
        self._check_managed_document(document)
        with self.store.transaction():
            policy = self._local_policy(arn)
            existing = self.store.policy_versions(policy.arn)
            if len(existing) >= MAX_POLICY_VERSIONS:
                raise LimitExceeded(
                    f"A managed policy can have up to {MAX_POLICY_VERSIONS} versions. Before you "
                    "create a new version, you must delete an existing version."
                )
            number = 1 + max((_version_number(v.version_id) for v in existing), default=0)
            now = self._clock()
            version = PolicyVersion(policy.arn, f"v{number}", document, now)
            self.store.put_policy_version(version)
            if set_as_default:
                self.store.put_policy(
                    replace(policy, default_version=version.version_id, updated=now)
                )
        return version

    def delete_policy_version(self, arn: str, version_id: str) -> None:
        with self.store.transaction():
            policy = self._local_policy(arn)
            if version_id == policy.default_version:
                raise DeleteConflict("Cannot delete the default version of a policy.")
            if not self.store.delete_policy_version(policy.arn, version_id):
                raise NoSuchEntity(
                    f"Policy {arn} version {version_id} does not exist or is not attachable."
                )

    def set_default_version(self, arn: str, version_id: str) -> None:
        with self.store.transaction():
            policy = self._local_policy(arn)
            if self.store.get_policy_version(policy.arn, version_id) is None:
                raise NoSuchEntity(
                    f"Policy {arn} version {version_id} does not exist or is not attachable."
                )
            self.store.put_policy(
                replace(policy, default_version=version_id, updated=self._clock())
            )

    def _check_managed_document(self, document: str) -> None:
        if policy_size(document) > MANAGED_POLICY_QUOTA:
            raise LimitExceeded(f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_QUOTA}")
        compile_policy(document, PolicyKind.IDENTITY)

    def _checked_arn(self, arn: str) -> str:
        if _POLICY_ARN.match(arn) is None:
            raise InvalidInput(f"ARN {arn} is not valid.")
        return arn

    def _find_policy(self, arn: str) -> ManagedPolicy | None:
        aws = self._aws.get(arn.lower())
        if aws is not None:
            return aws[0]
        return self.store.get_policy(arn)

    def _local_policy(self, arn: str) -> ManagedPolicy:
        """A customer managed policy, to be changed: AWS's own cannot be."""
        policy = self.get_policy(arn)
        if policy.arn.lower() in self._aws:
            # Unconfirmed against AWS: the wording of its refusal to change its own policies.
            raise AccessDenied(
                f"User: arn:aws:iam::{self.account_id}:root is not authorized to perform "
                f"this operation on resource: policy {policy.arn}"
            )
        return policy

    # ------------------------------------------------------------------ for the evaluator

    def default_document(self, arn: str) -> str | None:
        policy = self._find_policy(arn)
        if policy is None:
            return None
        aws = self._aws.get(policy.arn.lower())
        if aws is not None:
            return aws[1].document
        version = self.store.get_policy_version(policy.arn, policy.default_version)
        return version.document if version is not None else None

    def identity_documents(self, kind: str, owner: str) -> list[str]:
        """Every identity policy of a role or user: inline ones, then attached ones' default
        versions (the owner must exist)."""
        documents = [policy.document for policy in self.store.inline_policies(kind, owner)]
        for arn in self.store.attached(kind, owner):
            document = self.default_document(arn)
            if document is not None:
                documents.append(document)
        return documents

    def identity_policies(self, kind: str, owner: str) -> list[Policy]:
        return [
            compile_policy(document, PolicyKind.IDENTITY)
            for document in self.identity_documents(kind, owner)
        ]


def _under(path: str, prefix: str | None) -> bool:
    return not prefix or path.startswith(prefix)


def _version_number(version_id: str) -> int:
    digits = version_id[1:].split(".", maxsplit=1)[0]
    return int(digits) if digits.isdigit() else 0


def tag_pairs(tags: Iterable[dict[str, str]] | None) -> tuple[tuple[str, str], ...]:
    return tuple((tag["Key"], tag.get("Value", "")) for tag in tags or ())
