"""The console's own assets: the built browser libraries are where the pages load them, and
without them a page says how to build them instead of failing."""

from __future__ import annotations

import jinja2

from lamina.console.web import TEMPLATES, VENDOR, VENDOR_FILES, vendor_ready


def render_error_page(vendor_built: bool) -> str:
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    error = {"code": "ResourceNotFoundException", "message": "Function not found"}
    return templates.get_template("error.html").render(
        prefix="/console",
        csrf_token="t",
        csrf_field="csrf_token",
        enforced=False,
        principal="",
        account_id="000000000000",
        region="us-east-1",
        vendor_ready=vendor_built,
        flash=[],
        path="/console/functions/x",
        error=error,
    )


def test_make_install_built_the_vendor_files() -> None:
    assert vendor_ready(), f"run `make install`: {VENDOR} lacks some of {VENDOR_FILES}"


def test_a_page_without_the_libraries_says_how_to_build_them() -> None:
    page = render_error_page(vendor_built=False)
    assert "Run <code>make install</code>" in page
    assert "static/vendor/htmx.min.js" not in page
    built = render_error_page(vendor_built=True)
    assert "make install" not in built and "/console/static/vendor/htmx.min.js" in built
