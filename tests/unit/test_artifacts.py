"""Code and layers unpacked once per content, and whether a cold start would have to."""

from __future__ import annotations

from pathlib import Path

from lamina.sandbox.artifacts import ArtifactCache
from lamina.store.blobs import FileBlobStore
from tests.support.archives import make_zip


def test_unpacked_says_whether_code_and_layers_wait_on_disk(tmp_path: Path) -> None:
    """A cold start asks first: what is not unpacked yet is fetched and unpacked in a
    thread (seconds, for a node that did not activate the function), not on the loop."""
    blobs = FileBlobStore(tmp_path / "blobs")
    code = blobs.put(make_zip({"app.py": "def handler(e, c):\n    return 1\n"}))
    layer = blobs.put(make_zip({"python/helper.py": "VALUE = 1\n"}))
    cache = ArtifactCache(tmp_path / "artifacts", blobs)

    assert not cache.unpacked(code, [])
    assert not cache.unpacked(code, [layer])
    task_root = cache.code_dir(code)
    assert cache.unpacked(code, [])
    assert not cache.unpacked(code, [layer])  # the layers are not
    opt = cache.opt_dir([layer])
    assert cache.unpacked(code, [layer])
    assert (task_root / "app.py").read_text().startswith("def handler")
    assert opt is not None and (opt / "python" / "helper.py").read_text() == "VALUE = 1\n"
