"""Browser tests of the console: a real server, driven by Debian's Chromium (headless)
through Playwright's sync API. No browser is ever downloaded: the system's Chromium runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.peers import MotoServer
from tests.support.server import LaminaServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Where `screenshot` saves pages: the README's pictures when `make screenshots` asks for them
# (LAMINA_SCREENSHOTS=docs/console), else a directory of the test session's own, so that a
# test run leaves the checkout as it found it.
SCREENSHOTS_VARIABLE = "LAMINA_SCREENSHOTS"
_screenshots: list[Path] = []
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


@pytest.fixture(scope="session", autouse=True)
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get(SCREENSHOTS_VARIABLE)
    where = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    _screenshots[:] = [where]
    return where


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module. Playwright's sync API runs an event loop in this thread
    while it is open: stopped with the module, so that later tests can start their own."""
    if not Path(CHROMIUM).exists() or shutil.which("node") is None:
        pytest.skip("Debian's chromium is not installed (make install puts it there)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, moto: MotoServer
) -> Iterator[LaminaServer]:
    """A development-mode server (no sign-in) whose event sources live on moto's server."""
    data = tmp_path_factory.mktemp("console") / "data"
    started = LaminaServer(data, env=moto.env).start()
    yield started
    started.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(20_000)
    opened = context.new_page()
    yield opened
    context.close()


def screenshot(page: Any, name: str) -> None:
    """Save the page as NAME.png (for the README under `make screenshots`)."""
    where = _screenshots[0]
    where.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(where / f"{name}.png"), full_page=True)
