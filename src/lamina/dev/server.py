"""The server `lamina dev` talks to: the one at the endpoint, or one it starts itself.

The embedded server is a child `lamina serve` process rather than a thread: sandboxes fork
and install signal handlers, which is safe in a server's own main thread and nowhere else.
It stays in `lamina dev`'s process group, so closing the terminal ends both.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from lamina.settings import is_loopback

HEALTH_PATH = "/_lamina/health"


class ServerError(Exception):
    """No server could be reached or started; the message says why."""


def is_lamina(endpoint: str) -> bool:
    """True if a Lamina server answers at `endpoint`, False if nothing listens there."""
    try:
        with urllib.request.urlopen(endpoint + HEALTH_PATH, timeout=2) as response:
            return bool(json.load(response).get("status") == "ok")
    except urllib.error.HTTPError as error:
        error.close()
        raise ServerError(
            f"{endpoint} answers {HEALTH_PATH} with HTTP {error.code}: it is not a Lamina server"
        ) from None
    except (urllib.error.URLError, OSError):
        return False
    except ValueError:
        raise ServerError(f"{endpoint} answers, but it is not a Lamina server") from None


class EmbeddedServer:
    """`lamina serve` in a child process, its output in a log file of the data directory."""

    def __init__(self, endpoint: str, data_dir: Path) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "http" or not parts.hostname or not is_loopback(parts.hostname):
            raise ServerError(
                f"no Lamina server answers at {endpoint}; start one there, or leave out "
                "--endpoint to let `lamina dev` start one on this machine"
            )
        self.host = parts.hostname
        self.port = parts.port or 80
        # Absolute: sandbox code resolves it from other working directories.
        self.data_dir = data_dir.resolve()
        self.log_path = data_dir / "dev-server.log"
        self._endpoint = endpoint
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lamina",
                "serve",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise ServerError(f"the embedded server exited early:\n{self.log_tail()}")
            if is_lamina(self._endpoint):
                return
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"the embedded server did not start in {timeout:.0f}s")

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """A clean shutdown (SIGTERM, as `lamina serve` expects), then a kill if it hangs."""
        process = self._process
        if process is not None and process.poll() is None:
            # Harmless if Ctrl-C already reached it through the process group.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):  # hung, or a second Ctrl-C
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
