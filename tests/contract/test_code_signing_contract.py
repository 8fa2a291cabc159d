"""The CodeSigningConfigStore contract: round trips, replacement, order and transactions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lamina.model.functions import CodeSigningConfig
from lamina.store.protocols import CodeSigningConfigStore
from tests.support.backends import Backend


@pytest.fixture
def configs(store_backend: Backend) -> CodeSigningConfigStore:
    return store_backend.stores().code_signing


def csc(config_id: str, **fields: object) -> CodeSigningConfig:
    base = CodeSigningConfig(
        config_id=config_id,
        arn=f"arn:aws:lambda:us-east-1:123456789012:code-signing-config:{config_id}",
        description="signed builds",
        signing_profile_version_arns=("arn:aws:signer:us-east-1:123456789012:/p/v1",),
    )
    return replace(base, **fields)


def test_a_config_round_trips(configs: CodeSigningConfigStore) -> None:
    sent = csc("csc-1", untrusted_artifact_on_deployment="Enforce", tags={"a": "b"})
    configs.put(sent)
    assert configs.get("csc-1") == sent
    assert configs.get("csc-2") is None


def test_put_replaces_and_delete_forgets(configs: CodeSigningConfigStore) -> None:
    configs.put(csc("csc-1"))
    changed = csc("csc-1", description="changed", signing_profile_version_arns=())
    configs.put(changed)
    assert configs.all() == [changed]
    configs.delete("csc-1")
    configs.delete("csc-1")  # again: nothing to do
    assert configs.get("csc-1") is None
    assert configs.all() == []


def test_all_lists_by_id(configs: CodeSigningConfigStore) -> None:
    for config_id in ("csc-c", "csc-a", "csc-b"):
        configs.put(csc(config_id))
    assert [c.config_id for c in configs.all()] == ["csc-a", "csc-b", "csc-c"]


def test_a_failed_transaction_leaves_nothing_behind(configs: CodeSigningConfigStore) -> None:
    configs.put(csc("kept"))
    with pytest.raises(RuntimeError), configs.transaction():
        configs.put(csc("new"))
        configs.delete("kept")
        raise RuntimeError("abort")
    assert [c.config_id for c in configs.all()] == ["kept"]


def test_configs_survive_reopening_the_store(store_backend: Backend) -> None:
    kept = csc("kept")
    store_backend.stores().code_signing.put(kept)
    assert store_backend.stores().code_signing.get("kept") == kept
