"""The Code tab: the deployment package's file tree, a highlighted read-only viewer, and
inline edit and deploy when the package is one Python or Node source file."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from pygments import highlight  # type: ignore[import-untyped]
from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]
from pygments.lexers import TextLexer, get_lexer_for_filename  # type: ignore[import-untyped]
from pygments.util import ClassNotFound  # type: ignore[import-untyped]
from starlette.responses import Response

from lamina.console.api_calls import ApiError
from lamina.console.pages.function import function_name, get_function, render_tab
from lamina.console.web import Visit

# Larger files are listed but not shown (a browser would choke on a bundled vendor file).
_VIEW_MAX_BYTES = 512 * 1024
# A bundled node_modules holds thousands of files: the tree lists the first ones.
_LIST_MAX = 1000
_EDITABLE_SUFFIXES = {"python": (".py",), "nodejs": (".js", ".mjs", ".cjs")}
FORMATTER = HtmlFormatter(cssclass="highlight", linenos="table")


@dataclass(frozen=True)
class Package:
    """A function's deployment package, as the Code tab shows it: the names, and a file's
    bytes when asked (a package unzips to up to 250 MB; only the viewed file is read)."""

    archive: bytes
    files: list[str]
    sizes: dict[str, int]

    @classmethod
    def read(cls, archive: bytes) -> Package:
        with zipfile.ZipFile(io.BytesIO(archive)) as package:
            entries = [i for i in package.infolist() if not i.is_dir()]
        return cls(
            archive,
            sorted(i.filename for i in entries),
            {i.filename: i.file_size for i in entries},
        )

    def content(self, name: str) -> bytes:
        with zipfile.ZipFile(io.BytesIO(self.archive)) as package:
            return package.read(name)

    def editable_file(self, runtime: str) -> str | None:
        """The one source file of a single-file Python or Node package, else None."""
        family = "python" if runtime.startswith("python") else "nodejs"
        if not runtime.startswith(("python", "nodejs")) or len(self.files) != 1:
            return None
        only = self.files[0]
        return only if only.endswith(_EDITABLE_SUFFIXES[family]) else None


async def read_package(visit: Visit, function: dict[str, Any]) -> Package | None:
    location = function.get("Code", {}).get("Location")
    if not location:
        return None  # a container image: no package to show
    return Package.read(await visit.console.calls.download(location))


async def show(visit: Visit) -> Response:
    function = await get_function(visit, function_name(visit))
    return await _render(visit, function)


async def _render(
    visit: Visit,
    function: dict[str, Any],
    error: ApiError | None = None,
    draft: str | None = None,
) -> Response:
    package = await read_package(visit, function)
    config = function["Configuration"]
    files = package.files if package else []
    chosen = visit.request.query_params.get("file") or _default_file(files, config)
    viewed: Markup | None = None
    note = ""
    if package and chosen in package.sizes:
        size = package.sizes[chosen]
        if size > _VIEW_MAX_BYTES:
            note = f"{chosen} is {size} bytes: too large to show here."
        else:
            viewed = _highlighted(chosen, package.content(chosen))
    editable = package.editable_file(config.get("Runtime", "")) if package else None
    source = draft
    if source is None and package and editable:
        source = package.content(editable).decode("utf-8", errors="replace")
    return render_tab(
        visit,
        "code",
        function,
        status=400 if error else 200,
        files=files[:_LIST_MAX],
        unlisted=max(0, len(files) - _LIST_MAX),
        chosen=chosen,
        viewed=viewed,
        note=note,
        editable=editable,
        source=source,
        error=error,
        pygments_css=Markup(FORMATTER.get_style_defs(".highlight")),
    )


async def deploy(visit: Visit) -> Response:
    name = function_name(visit)
    function = await get_function(visit, name)
    package = await read_package(visit, function)
    editable = (
        package.editable_file(function["Configuration"].get("Runtime", "")) if package else None
    )
    source = visit.form.get("source", "").replace("\r\n", "\n")
    if editable is None:
        error = ApiError(
            "InvalidParameterValueException",
            "Inline editing needs a package of one Python or Node source file.",
            400,
        )
        return await _render(visit, function, error, source)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(editable, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, source.encode())
    try:
        await visit.call(
            "lambda", "UpdateFunctionCode", FunctionName=name, ZipFile=buffer.getvalue()
        )
    except ApiError as error:
        return await _render(visit, function, error, source)
    return visit.redirect(f"/functions/{name}/code", f"Deployed {editable}.")


def _default_file(files: list[str], config: dict[str, Any]) -> str | None:
    """The handler's module, else the first file."""
    module = str(config.get("Handler", "")).rsplit(".", 1)[0]
    for name in files:
        if name.rsplit(".", 1)[0] == module:
            return name
    return files[0] if files else None


def _highlighted(name: str, data: bytes) -> Markup:
    text = data.decode("utf-8", errors="replace")
    try:
        lexer = get_lexer_for_filename(name, text)
    except ClassNotFound:
        lexer = TextLexer()
    return Markup(highlight(text, lexer, FORMATTER))
