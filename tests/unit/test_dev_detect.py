"""`lamina dev` guesses the runtime and handler from a directory's files, or says why not."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.dev.detect import CannotGuess, Entry, guess_entry


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return directory


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"app.py": "def handler(event, context):\n    pass\n"},
            Entry("python3.12", "app.handler"),
        ),
        (
            {"lambda_function.py": "async def lambda_handler(e, c):\n    pass\n"},
            Entry("python3.12", "lambda_function.lambda_handler"),
        ),
        (
            # The console's file wins over SAM's when both are present.
            {
                "app.py": "def handler(e, c): pass\n",
                "lambda_function.py": "def lambda_handler(e, c): pass\n",
            },
            Entry("python3.12", "lambda_function.lambda_handler"),
        ),
        (
            # A syntax error elsewhere in the file does not hide the handler.
            {"app.py": "def handler(event, context):\n    return {\n"},
            Entry("python3.12", "app.handler"),
        ),
        (
            {"index.mjs": "export const handler = async () => 1;\n"},
            Entry("nodejs20.x", "index.handler"),
        ),
        ({"index.js": "exports.handler = async () => 1;\n"}, Entry("nodejs20.x", "index.handler")),
        (
            {"handler.js": "module.exports = { other, handler: run };\n"},
            Entry("nodejs20.x", "handler.handler"),
        ),
        (
            {"index.mjs": "async function run() {}\nexport { run as handler };\n"},
            Entry("nodejs20.x", "index.handler"),
        ),
        (
            {"index.mjs": "export async function handler(event) {}\n"},
            Entry("nodejs20.x", "index.handler"),
        ),
        # A bootstrap means a custom runtime, even next to code in a known language.
        (
            {"bootstrap": "#!/bin/sh\n", "app.py": "def handler(e, c): pass\n"},
            Entry("provided.al2023", "bootstrap"),
        ),
    ],
)
def test_guesses(tmp_path: Path, files: dict[str, str], expected: Entry) -> None:
    assert guess_entry(write(tmp_path, files), None, None) == expected


def test_given_values_are_kept_and_fill_in_the_rest(tmp_path: Path) -> None:
    write(tmp_path, {"main.py": "def run(e, c): pass\n", "index.js": "exports.handler = 1\n"})
    assert guess_entry(tmp_path, "python3.13", "main.run") == Entry("python3.13", "main.run")
    assert guess_entry(tmp_path, None, "main.run") == Entry("python3.12", "main.run")
    assert guess_entry(tmp_path, "nodejs22.x", None) == Entry("nodejs22.x", "index.handler")


def test_nothing_to_run(tmp_path: Path) -> None:
    write(tmp_path, {"README.md": "hi\n", "app.py": "def helper(): pass\n"})
    with pytest.raises(CannotGuess, match=r"cannot tell how to run .*--runtime and --handler"):
        guess_entry(tmp_path, None, None)


def test_two_languages_are_ambiguous(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": "def handler(e, c): pass\n", "index.js": "exports.handler = 1\n"})
    with pytest.raises(
        CannotGuess, match=r"both Python and Node.js .*app\.handler.*index\.handler"
    ):
        guess_entry(tmp_path, None, None)


def test_a_handler_whose_module_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CannotGuess, match=r"no main\.py, main\.js or main\.mjs .* pass --runtime"):
        guess_entry(tmp_path, None, "main.run")


def test_a_runtime_without_a_matching_file(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": "def handler(e, c): pass\n"})
    with pytest.raises(CannotGuess, match=r"found no index\.mjs/"):
        guess_entry(tmp_path, "nodejs20.x", None)
    with pytest.raises(CannotGuess, match=r"runtime java21: pass --handler"):
        guess_entry(tmp_path, "java21", None)
