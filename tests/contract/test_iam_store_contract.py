"""The IamStore contract: roles, users, access keys, inline and managed policies with their
versions, attachments and STS sessions round-trip; names are found case-insensitively but
keep their spelling; lists come in their documented orders; deleting an owner takes what
hangs off it; transactions serialise read-modify-writes and roll back whole; the change
stamp moves with every change, on this node at once and on another one soon after."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import pytest

from lamina.identity.managed_policies import aws_managed_policies
from lamina.model.iam import (
    ACTIVE,
    INACTIVE,
    ROLE,
    USER,
    AccessKey,
    InlinePolicy,
    ManagedPolicy,
    PolicyVersion,
    Role,
    Session,
    User,
)
from lamina.store.protocols import IamStore
from tests.support.backends import Backend
from tests.support.waiting import wait_until

ACCOUNT = "123456789012"
TRUST = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    '"Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
)
ALLOW_ALL = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


@pytest.fixture
def iam(store_backend: Backend) -> IamStore:
    return store_backend.stores().iam


def role(name: str, path: str = "/", description: str | None = None) -> Role:
    return Role(
        name=name,
        role_id=f"AROA{name.upper():0<17}"[:21],
        path=path,
        arn=f"arn:aws:iam::{ACCOUNT}:role{path}{name}",
        created=1_700_000_000.5,
        trust_policy=TRUST,
        description=description,
    )


def user(name: str) -> User:
    return User(
        name=name,
        user_id=f"AIDA{name.upper():0<17}"[:21],
        path="/",
        arn=f"arn:aws:iam::{ACCOUNT}:user/{name}",
        created=1_700_000_001.0,
    )


def key(key_id: str, user_name: str, created: float = 1_700_000_002.0) -> AccessKey:
    return AccessKey(key_id, f"secret-of-{key_id}", user_name, ACTIVE, created)


def policy(name: str, arn: str | None = None, default_version: str = "v1") -> ManagedPolicy:
    return ManagedPolicy(
        name=name,
        policy_id=f"ANPA{name.upper():0<17}"[:21],
        path="/",
        arn=arn or f"arn:aws:iam::{ACCOUNT}:policy/{name}",
        default_version=default_version,
        created=1_700_000_003.0,
        updated=1_700_000_003.0,
    )


def version(arn: str, version_id: str, document: str = ALLOW_ALL) -> PolicyVersion:
    return PolicyVersion(arn, version_id, document, 1_700_000_004.0)


def session(key_id: str, expires: float) -> Session:
    return Session(
        access_key_id=key_id,
        secret=f"secret-of-{key_id}",
        token=f"token-of-{key_id}",
        expires=expires,
        account=ACCOUNT,
        principal_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/runner/s1",
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/runner",
        session_name="s1",
        session_policy=ALLOW_ALL,
    )


# ---------------------------------------------------------------------- roles and users


def test_a_role_round_trips_with_every_field(iam: IamStore) -> None:
    sent = replace(
        role("Runner", path="/service/", description="runs things: ünïcode and \u0000 survive"),
        max_session_duration=43200,
        tags=(("team", "ops"), ("cost", "")),
    )
    iam.put_role(sent)
    assert iam.get_role("Runner") == sent
    assert iam.get_role("missing") is None


def test_role_names_are_found_case_insensitively_and_keep_their_spelling(iam: IamStore) -> None:
    iam.put_role(role("MyRole"))
    found = iam.get_role("MYROLE")
    assert found is not None
    assert found.name == "MyRole"
    # One role per name whatever the case: a put under another spelling replaces it.
    iam.put_role(role("myrole", description="again"))
    assert [(r.name, r.description) for r in iam.roles()] == [("myrole", "again")]


def test_roles_are_listed_by_name(iam: IamStore) -> None:
    for name in ("b", "C", "a", "A1"):
        iam.put_role(role(name))
    assert [r.name for r in iam.roles()] == ["A1", "C", "a", "b"]


def test_deleting_a_role_takes_its_policies_and_attachments(iam: IamStore) -> None:
    iam.put_role(role("r"))
    iam.put_inline_policy(InlinePolicy(ROLE, "r", "inline", ALLOW_ALL))
    iam.put_policy(policy("p"))
    iam.attach(ROLE, "r", policy("p").arn)
    assert iam.delete_role("R")
    assert iam.get_role("r") is None
    assert not iam.delete_role("r")
    iam.put_role(role("r"))
    assert iam.inline_policies(ROLE, "r") == []
    assert iam.attached(ROLE, "r") == []
    assert iam.attachment_count(policy("p").arn) == 0
    assert iam.get_policy(policy("p").arn) is not None


def test_a_user_round_trips_and_is_found_case_insensitively(iam: IamStore) -> None:
    sent = replace(user("Alice"), tags=(("k", "v"),))
    iam.put_user(sent)
    assert iam.get_user("alice") == sent
    assert iam.get_user("bob") is None
    iam.put_user(user("bob"))
    assert [u.name for u in iam.users()] == ["Alice", "bob"]


def test_deleting_a_user_takes_its_keys_policies_and_attachments(iam: IamStore) -> None:
    iam.put_user(user("alice"))
    iam.put_access_key(key("AKIAAAAAAAAAAAAAAAA1", "alice"))
    iam.put_inline_policy(InlinePolicy(USER, "alice", "inline", ALLOW_ALL))
    iam.attach(USER, "alice", BASIC_EXECUTION)
    assert iam.delete_user("Alice")
    assert not iam.delete_user("alice")
    assert iam.get_access_key("AKIAAAAAAAAAAAAAAAA1") is None
    assert iam.access_keys("alice") == []
    assert iam.inline_policies(USER, "alice") == []
    assert iam.attached(USER, "alice") == []


def test_a_role_and_a_user_of_one_name_keep_their_policies_apart(iam: IamStore) -> None:
    iam.put_role(role("same"))
    iam.put_user(user("same"))
    iam.put_inline_policy(InlinePolicy(ROLE, "same", "p", ALLOW_ALL))
    iam.attach(USER, "same", BASIC_EXECUTION)
    assert iam.inline_policies(USER, "same") == []
    assert iam.attached(ROLE, "same") == []
    assert iam.delete_user("same")
    assert [p.name for p in iam.inline_policies(ROLE, "same")] == ["p"]


# ---------------------------------------------------------------------- access keys


def test_access_keys_round_trip_oldest_first_and_keep_their_place_when_updated(
    iam: IamStore,
) -> None:
    first, second = key("AKIAAAAAAAAAAAAAAAA1", "alice"), key("AKIAAAAAAAAAAAAAAAA0", "alice")
    iam.put_access_key(first)
    iam.put_access_key(second)
    iam.put_access_key(key("AKIAAAAAAAAAAAAAAAA2", "bob"))
    assert iam.get_access_key(first.access_key_id) == first
    assert iam.get_access_key("AKIAMISSING") is None
    iam.put_access_key(replace(first, status=INACTIVE))
    assert [(k.access_key_id, k.status) for k in iam.access_keys("ALICE")] == [
        (first.access_key_id, INACTIVE),
        (second.access_key_id, ACTIVE),
    ]
    assert iam.delete_access_key(first.access_key_id)
    assert not iam.delete_access_key(first.access_key_id)
    assert iam.access_keys("alice") == [second]


# ---------------------------------------------------------------------- inline policies


def test_inline_policies_round_trip_by_name_and_are_replaced_whole(iam: IamStore) -> None:
    iam.put_inline_policy(InlinePolicy(ROLE, "Runner", "write", ALLOW_ALL))
    iam.put_inline_policy(InlinePolicy(ROLE, "Runner", "read", TRUST))
    # The document is kept byte for byte, whitespace and all.
    spaced = '{\n  "Version": "2012-10-17",\n  "Statement": []\n}'
    iam.put_inline_policy(InlinePolicy(ROLE, "runner", "write", spaced))
    assert iam.get_inline_policy(ROLE, "RUNNER", "write") == InlinePolicy(
        ROLE, "runner", "write", spaced
    )
    assert iam.get_inline_policy(ROLE, "Runner", "missing") is None
    assert iam.get_inline_policy(USER, "Runner", "write") is None
    assert [p.name for p in iam.inline_policies(ROLE, "Runner")] == ["read", "write"]
    assert iam.delete_inline_policy(ROLE, "Runner", "read")
    assert not iam.delete_inline_policy(ROLE, "Runner", "read")
    assert [p.name for p in iam.inline_policies(ROLE, "Runner")] == ["write"]


# ---------------------------------------------------------------------- managed policies


def test_a_managed_policy_round_trips_and_its_arn_is_found_case_insensitively(
    iam: IamStore,
) -> None:
    sent = replace(policy("Deploy"), description="deploys", tags=(("a", "b"),))
    iam.put_policy(sent)
    assert iam.get_policy(sent.arn) == sent
    assert iam.get_policy(sent.arn.replace("Deploy", "deploy")) == sent
    assert iam.get_policy(f"arn:aws:iam::{ACCOUNT}:policy/missing") is None
    iam.put_policy(replace(sent, default_version="v2"))
    stored = iam.get_policy(sent.arn)
    assert stored is not None
    assert stored.default_version == "v2"


def test_policies_are_listed_by_name_customer_and_aws_managed_alike(iam: IamStore) -> None:
    iam.put_policy(policy("AWSLambdaBasicExecutionRole", BASIC_EXECUTION))
    iam.put_policy(policy("zeta"))
    iam.put_policy(policy("Alpha"))
    # A customer policy may share an AWS-managed policy's name: the ARNs differ.
    iam.put_policy(policy("AWSLambdaBasicExecutionRole"))
    assert [(p.name, p.arn) for p in iam.policies()] == [
        # One name: by ARN then.
        (
            "AWSLambdaBasicExecutionRole",
            f"arn:aws:iam::{ACCOUNT}:policy/AWSLambdaBasicExecutionRole",
        ),
        ("AWSLambdaBasicExecutionRole", BASIC_EXECUTION),
        ("Alpha", f"arn:aws:iam::{ACCOUNT}:policy/Alpha"),
        ("zeta", f"arn:aws:iam::{ACCOUNT}:policy/zeta"),
    ]


def test_policy_versions_come_oldest_first_and_keep_their_place(iam: IamStore) -> None:
    arn = policy("p").arn
    iam.put_policy(policy("p"))
    for version_id in ("v1", "v2", "v10", "v3"):
        iam.put_policy_version(version(arn, version_id))
    iam.put_policy_version(version(arn, "v2", TRUST))
    assert [v.version_id for v in iam.policy_versions(arn)] == ["v1", "v2", "v10", "v3"]
    assert iam.get_policy_version(arn, "v2") == version(arn, "v2", TRUST)
    assert iam.get_policy_version(arn, "v4") is None
    assert iam.delete_policy_version(arn, "v10")
    assert not iam.delete_policy_version(arn, "v10")
    assert [v.version_id for v in iam.policy_versions(arn)] == ["v1", "v2", "v3"]
    iam.put_policy_version(version(arn, "v4"))
    assert [v.version_id for v in iam.policy_versions(arn)] == ["v1", "v2", "v3", "v4"]


def test_deleting_a_policy_takes_its_versions_and_attachments(iam: IamStore) -> None:
    arn = policy("p").arn
    iam.put_policy(policy("p"))
    iam.put_policy_version(version(arn, "v1"))
    iam.put_policy_version(version(arn, "v2"))
    iam.attach(ROLE, "r", arn)
    iam.attach(ROLE, "r", BASIC_EXECUTION)
    assert iam.delete_policy(arn)
    assert not iam.delete_policy(arn)
    assert iam.get_policy(arn) is None
    assert iam.policy_versions(arn) == []
    assert iam.get_policy_version(arn, "v1") is None
    assert iam.attached(ROLE, "r") == [BASIC_EXECUTION]
    # Created again under the ARN, it starts with no versions.
    iam.put_policy(policy("p"))
    assert iam.policy_versions(arn) == []


# ---------------------------------------------------------------------- attachments


def test_attachments_are_idempotent_ordered_and_counted_across_owners(iam: IamStore) -> None:
    first, second = policy("first").arn, policy("second").arn
    iam.attach(ROLE, "Runner", second)
    iam.attach(ROLE, "Runner", BASIC_EXECUTION)
    iam.attach(ROLE, "runner", first)
    iam.attach(ROLE, "RUNNER", second)  # again: keeps its place, counted once
    assert iam.attached(ROLE, "Runner") == [second, BASIC_EXECUTION, first]
    iam.attach(USER, "alice", second)
    assert iam.attachment_count(second) == 2
    assert iam.attachment_count(policy("none").arn) == 0
    assert iam.detach(ROLE, "runner", second)
    assert not iam.detach(ROLE, "runner", second)
    assert iam.attached(ROLE, "Runner") == [BASIC_EXECUTION, first]
    assert iam.attachment_count(second) == 1
    iam.attach(ROLE, "Runner", second)
    assert iam.attached(ROLE, "Runner") == [BASIC_EXECUTION, first, second]


# ---------------------------------------------------------------------- sessions


def test_sessions_round_trip_and_expired_ones_are_deleted(iam: IamStore) -> None:
    kept = session("ASIAAAAAAAAAAAAAAAA1", expires=2_000.0)
    iam.put_session(kept)
    iam.put_session(session("ASIAAAAAAAAAAAAAAAA2", expires=1_000.0))
    iam.put_session(session("ASIAAAAAAAAAAAAAAAA3", expires=1_500.0))
    bare = Session(
        "ASIAAAAAAAAAAAAAAAA4", "s", "t", 3_000.0, ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root"
    )
    iam.put_session(bare)
    assert iam.get_session(kept.access_key_id) == kept
    assert iam.get_session(bare.access_key_id) == bare
    assert iam.get_session("ASIAMISSING") is None
    assert iam.delete_expired_sessions(1_500.0) == 2
    assert iam.delete_expired_sessions(1_500.0) == 0
    assert iam.get_session("ASIAAAAAAAAAAAAAAAA2") is None
    assert iam.get_session(kept.access_key_id) == kept


# ---------------------------------------------------------------------- transactions


def test_a_transaction_that_fails_leaves_nothing_behind(iam: IamStore) -> None:
    iam.put_role(role("kept"))
    with pytest.raises(RuntimeError), iam.transaction():
        iam.put_role(role("lost"))
        iam.attach(ROLE, "kept", BASIC_EXECUTION)
        with iam.transaction():  # a nested one joins the outer
            iam.put_inline_policy(InlinePolicy(ROLE, "kept", "p", ALLOW_ALL))
        raise RuntimeError("abandon")
    assert [r.name for r in iam.roles()] == ["kept"]
    assert iam.attached(ROLE, "kept") == []
    assert iam.inline_policies(ROLE, "kept") == []


def test_read_modify_writes_in_transactions_are_serialised(store_backend: Backend) -> None:
    """Two nodes (or threads) adding policy versions under the rule "next id = count + 1"
    never hand out one id twice."""
    first, second = store_backend.stores().iam, store_backend.stores().iam
    arn = policy("p").arn
    first.put_policy(policy("p"))
    rounds = 15

    def add_versions(iam: IamStore) -> None:
        for _ in range(rounds):
            with iam.transaction():
                count = len(iam.policy_versions(arn))
                iam.put_policy_version(version(arn, f"v{count + 1}"))

    threads = [threading.Thread(target=add_versions, args=(store,)) for store in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [v.version_id for v in first.policy_versions(arn)]
    assert ids == [f"v{n}" for n in range(1, 2 * rounds + 1)]


# ---------------------------------------------------------------------- stamp and reopening


def test_the_change_stamp_moves_with_every_change(iam: IamStore) -> None:
    arn = policy("p").arn
    changes: list[Callable[[], object]] = [
        lambda: iam.put_role(role("r")),
        lambda: iam.put_user(user("u")),
        lambda: iam.put_access_key(key("AKIAAAAAAAAAAAAAAAA1", "u")),
        lambda: iam.put_access_key(replace(key("AKIAAAAAAAAAAAAAAAA1", "u"), status=INACTIVE)),
        lambda: iam.put_inline_policy(InlinePolicy(ROLE, "r", "p", ALLOW_ALL)),
        lambda: iam.put_policy(policy("p")),
        lambda: iam.put_policy_version(version(arn, "v1")),
        lambda: iam.attach(ROLE, "r", arn),
        lambda: iam.detach(ROLE, "r", arn),
        lambda: iam.delete_policy_version(arn, "v1"),
        lambda: iam.delete_policy(arn),
        lambda: iam.delete_inline_policy(ROLE, "r", "p"),
        lambda: iam.delete_access_key("AKIAAAAAAAAAAAAAAAA1"),
        lambda: iam.delete_user("u"),
        lambda: iam.delete_role("r"),
    ]
    for number, change in enumerate(changes):
        before = iam.change_stamp()
        change()
        assert iam.change_stamp() != before, f"change {number} left the stamp alone"


def test_another_node_sees_the_stamp_move(store_backend: Backend) -> None:
    writer, reader = store_backend.stores().iam, store_backend.stores().iam
    before = reader.change_stamp()
    writer.put_role(role("r"))
    # Another node hears of the change within about a second (PostgreSQL's notification);
    # what it reads is current at once.
    wait_until(lambda: reader.change_stamp() != before, timeout=10)
    assert reader.get_role("r") == role("r")


def test_everything_survives_reopening_the_store(store_backend: Backend) -> None:
    iam = store_backend.stores().iam
    arn = policy("p").arn
    iam.put_role(role("r"))
    iam.put_user(user("u"))
    iam.put_access_key(key("AKIAAAAAAAAAAAAAAAA1", "u"))
    iam.put_inline_policy(InlinePolicy(USER, "u", "p", ALLOW_ALL))
    iam.put_policy(policy("p"))
    iam.put_policy_version(version(arn, "v1"))
    iam.attach(ROLE, "r", arn)
    iam.put_session(session("ASIAAAAAAAAAAAAAAAA1", expires=2_000.0))

    reopened = store_backend.stores().iam
    assert reopened.get_role("r") == role("r")
    assert reopened.get_user("u") == user("u")
    assert reopened.access_keys("u") == [key("AKIAAAAAAAAAAAAAAAA1", "u")]
    assert reopened.inline_policies(USER, "u") == [InlinePolicy(USER, "u", "p", ALLOW_ALL)]
    assert reopened.get_policy(arn) == policy("p")
    assert reopened.policy_versions(arn) == [version(arn, "v1")]
    assert reopened.attached(ROLE, "r") == [arn]
    assert reopened.get_session("ASIAAAAAAAAAAAAAAAA1") == session(
        "ASIAAAAAAAAAAAAAAAA1", expires=2_000.0
    )


def test_aws_managed_policies_round_trip(iam: IamStore) -> None:
    seeded = aws_managed_policies()
    for policy_entity, default_version in seeded:
        iam.put_policy(policy_entity)
        iam.put_policy_version(default_version)
    for policy_entity, default_version in seeded:
        assert iam.get_policy(policy_entity.arn) == policy_entity
        assert iam.policy_versions(policy_entity.arn) == [default_version]
    assert [p.name for p in iam.policies()] == sorted(p.name for p, _ in seeded)
