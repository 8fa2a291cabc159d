"""The LayerStore contract: versions, their order, numbering that is never reused, sizes and
transactions."""

from __future__ import annotations

import pytest

from lamina.model.functions import LayerVersion
from lamina.store.protocols import LayerStore
from tests.support.backends import Backend


@pytest.fixture
def layers(store_backend: Backend) -> LayerStore:
    return store_backend.stores().layers


def layer(name: str, version: int, code_size: int = 10) -> LayerVersion:
    return LayerVersion(
        name=name,
        version=version,
        code_sha256=f"{name}{version}",
        code_size=code_size,
        code_blob="b" * 64,
        unzipped_size=3 * code_size,
    )


def test_a_version_round_trips_with_its_policy(layers: LayerStore) -> None:
    sent = LayerVersion(
        name="deps",
        version=3,
        code_sha256="abc",
        code_size=10,
        code_blob="b" * 64,
        unzipped_size=30,
        description="numpy",
        compatible_runtimes=("python3.12", "python3.13"),
        compatible_architectures=("arm64",),
        license_info="MIT",
        statements={"s1": {"Action": "lambda:GetLayerVersion", "Principal": "*"}},
    )
    layers.put_version(sent)
    assert layers.get_version("deps", 3) == sent
    assert layers.get_version("deps", 4) is None
    assert layers.get_version("other", 3) is None


def test_last_version_is_kept_apart_from_the_versions(layers: LayerStore) -> None:
    assert layers.last_version("deps") == 0
    layers.set_last_version("deps", 1)
    layers.put_version(layer("deps", 1))
    layers.set_last_version("deps", 2)
    layers.put_version(layer("deps", 2))
    layers.delete_version("deps", 2)
    # Deleting the newest does not give its number back.
    assert layers.last_version("deps") == 2
    assert layers.last_version("other") == 0


def test_versions_are_listed_newest_first(layers: LayerStore) -> None:
    for version in (2, 10, 1):
        layers.put_version(layer("deps", version))
    layers.put_version(layer("other", 5))
    assert [v.version for v in layers.list_versions("deps")] == [10, 2, 1]
    layers.delete_version("deps", 10)
    assert [v.version for v in layers.list_versions("deps")] == [2, 1]
    assert layers.list_versions("missing") == []


def test_latest_versions_are_one_per_layer_by_name(layers: LayerStore) -> None:
    for name, version in [("zeta", 1), ("alpha", 2), ("alpha", 9), ("zeta", 3), ("mid", 4)]:
        layers.put_version(layer(name, version))
    assert [(v.name, v.version) for v in layers.latest_versions()] == [
        ("alpha", 9),
        ("mid", 4),
        ("zeta", 3),
    ]


def test_total_code_size_counts_every_version(layers: LayerStore) -> None:
    assert layers.total_code_size() == 0
    layers.put_version(layer("a", 1, code_size=100))
    layers.put_version(layer("a", 2, code_size=20))
    layers.put_version(layer("b", 1, code_size=3))
    assert layers.total_code_size() == 123
    layers.delete_version("a", 1)
    assert layers.total_code_size() == 23


def test_a_failed_transaction_leaves_nothing_behind(layers: LayerStore) -> None:
    with pytest.raises(RuntimeError), layers.transaction():
        layers.set_last_version("deps", 1)
        layers.put_version(layer("deps", 1))
        raise RuntimeError("abort")
    assert layers.last_version("deps") == 0
    assert layers.get_version("deps", 1) is None


def test_versions_survive_reopening_the_store(store_backend: Backend) -> None:
    first = store_backend.stores().layers
    first.set_last_version("deps", 1)
    kept = layer("deps", 1)
    first.put_version(kept)
    again = store_backend.stores().layers
    assert (again.last_version("deps"), again.get_version("deps", 1)) == (1, kept)
