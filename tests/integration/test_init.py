"""`lamina init`: lists the blueprints, writes one into a directory with its sample event and
a README on deploying it, and refuses to overwrite what is there."""

from __future__ import annotations

import json
from pathlib import Path

from lamina.blueprints import catalog, get
from tests.support.lamina_cli import run_lamina


def test_list_names_every_blueprint() -> None:
    result = run_lamina("init", "--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [blueprint.name for blueprint in catalog()]
    assert any(line.split()[1] == "nodejs20.x" for line in lines)


def test_init_writes_the_blueprint_its_event_and_a_readme(tmp_path: Path) -> None:
    directory = tmp_path / "orders"
    result = run_lamina("init", "--blueprint", "python-sqs-consumer", str(directory))
    assert result.returncode == 0, result.stderr
    blueprint = get("python-sqs-consumer")
    for path, text in blueprint.files.items():
        assert (directory / path).read_text() == text
    event = json.loads((directory / "event.json").read_text())
    assert [record["eventSource"] for record in event["Records"]] == ["aws:sqs", "aws:sqs"]
    assert event["Records"][0]["eventSourceARN"].startswith("arn:aws:sqs:us-east-1:")
    readme = (directory / "README.md").read_text()
    assert "lamina dev . --name orders --runtime python3.12 --handler app.handler" in readme
    assert "lambda create-function --function-name orders" in readme
    assert '"ReportBatchItemFailures"' in readme
    assert f"lamina dev {directory}" in result.stdout


def test_init_refuses_to_overwrite_and_leaves_the_files_alone(tmp_path: Path) -> None:
    directory = tmp_path / "api"
    directory.mkdir()
    (directory / "app.mjs").write_text("// mine\n")
    result = run_lamina("init", "--blueprint", "node-http-api", str(directory))
    assert result.returncode == 1
    assert "not overwriting existing files" in result.stderr and "app.mjs" in result.stderr
    assert sorted(path.name for path in directory.iterdir()) == ["app.mjs"]
    assert (directory / "app.mjs").read_text() == "// mine\n"

    (directory / "app.mjs").unlink()
    (directory / "README.md").write_text("mine\n")
    result = run_lamina("init", "--blueprint", "node-http-api", str(directory))
    assert result.returncode == 1 and "README.md" in result.stderr
    assert sorted(path.name for path in directory.iterdir()) == ["README.md"]


def test_init_names_an_unknown_blueprint_and_asks_for_what_is_missing(tmp_path: Path) -> None:
    result = run_lamina("init", "--blueprint", "cobol-hello", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "No blueprint named cobol-hello" in result.stderr
    assert "lamina init --list" in result.stderr
    assert not (tmp_path / "x").exists()
    result = run_lamina("init", "--blueprint", "python-hello")
    assert result.returncode == 2 and "needs --blueprint NAME and a DIR" in result.stderr
