"""The micro-benchmark of enforced mode's cost on an Invoke runs and prints its figures
(`bench/authorization.py`; no timed assertion)."""

from __future__ import annotations

from pathlib import Path

from bench.authorization import measure


def test_the_cost_of_authorising_an_invoke_is_measured(tmp_path: Path) -> None:
    figures = measure(tmp_path / "data", rounds=200)
    for name, value in figures.items():
        print(f"{name}: {value:.2f}")
    assert set(figures) >= {"authorise Invoke us", "added over the root key us"}
