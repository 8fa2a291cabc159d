"""Where the runtime bootstraps Lamina ships sit on the host.

The sandbox mounts this directory read-only into every environment and forks Python
templates from the bootstrap, so it owns the paths; `runtimes/` builds commands from them.
"""

from __future__ import annotations

from pathlib import Path

RUNTIMES_DIR = Path(__file__).resolve().parent.parent / "runtimes"
PYTHON_BOOTSTRAP = RUNTIMES_DIR / "python" / "bootstrap.py"
NODE_BOOTSTRAP = RUNTIMES_DIR / "node" / "bootstrap.cjs"
