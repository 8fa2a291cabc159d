"""Activation's work on this host: what a cold start would otherwise do first.

A function is Pending (or its update InProgress) while its code and layers are unpacked into
the artifact cache and its runtime's interpreter is located. A package that cannot be
unpacked fails the change with AWS's InvalidZipFileException; a missing interpreter does not:
it is the host's to fix, and Lamina reports it on each invocation instead
(`Runtime.InvalidRuntime`), since a Failed state would outlive the fix.
"""

from __future__ import annotations

import base64
import zipfile
from collections.abc import Callable

from lamina.control.states import INTERNAL_ERROR, INVALID_ZIP, ActivationFailed
from lamina.model.functions import FunctionConfig
from lamina.runtimes.registry import PROVIDED, RuntimeRegistry
from lamina.sandbox.artifacts import ArtifactCache

# AWS's texts when an archive does not unpack (the trailing semicolon is theirs).
_ARCHIVE_FORMAT = (
    "Failed to unzip archive: An error in the archive format was detected. "
    "Please fix the error and retry;"
)
_INVALID_ENTRIES = "Failed to unzip archive: Zip file contains invalid files/folders;"


def layer_blob_keys(config: FunctionConfig) -> list[str]:
    """The blob keys of the configuration's layers, in order (their SHA-256, in hex)."""
    return [base64.b64decode(layer.code_sha256).hex() for layer in config.layers]


class CodePreparation:
    """Unpacks a configuration's code and layers and locates its interpreter."""

    def __init__(self, artifacts: ArtifactCache, runtimes: RuntimeRegistry) -> None:
        self._artifacts = artifacts
        self._runtimes = runtimes

    def prepare(self, config: FunctionConfig) -> None:
        _unpack(lambda: self._artifacts.code_dir(config.code_blob))
        if config.layers:
            _unpack(lambda: self._artifacts.opt_dir(layer_blob_keys(config)))
        if config.runtime and config.runtime not in PROVIDED:
            self._runtimes.interpreter(config.runtime)  # found once, for every cold start


def _unpack(unpack: Callable[[], object]) -> None:
    try:
        unpack()
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError):
        raise ActivationFailed(INVALID_ZIP, _ARCHIVE_FORMAT) from None
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        # Entries that collide: a file where the archive (or an earlier layer) has a folder.
        raise ActivationFailed(INVALID_ZIP, _INVALID_ENTRIES) from None
    except OSError as error:
        raise ActivationFailed(
            INTERNAL_ERROR, f"Lamina could not unpack the code: {error.strerror or error}"
        ) from None
