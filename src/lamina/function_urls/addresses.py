"""Which function URL a request is for, and the path the function sees.

Two forms reach the same URL config:
- host-based, as on AWS: `<url-id>.lambda-url.<region>.<domain>[:port]`, path passed as is;
- path-based, for clients that cannot resolve `*.localhost`: `/lambda-url/<url-id>/<path>`,
  where the function sees `/<path>`.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from lamina.constants import URL_PATH_PREFIX

_HOST_MARK = ".lambda-url."
_PATH_PREFIX = URL_PATH_PREFIX.encode()


@dataclass(frozen=True)
class UrlAddress:
    """The URL id a request names, the raw (still percent-encoded) path and the Host."""

    url_id: str
    raw_path: str
    host: str
    # Whether the Host named the URL (else the path did).
    by_host: bool

    def domain_name(self, region: str) -> str:
        """AWS's `requestContext.domainName`: the URL's host name, without a port."""
        if self.by_host:
            return self.host.rpartition(":")[0] if _has_port(self.host) else self.host
        return f"{self.url_id}.lambda-url.{region}.localhost"


def _has_port(host: str) -> bool:
    name, colon, port = host.rpartition(":")
    return bool(colon and name and port.isdigit())


def host_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"host":
            return str(value.decode("latin-1"))
    return ""


def locate(scope: Scope) -> UrlAddress | None:
    """The address of a function URL request, or None when it names no URL id."""
    host = host_of(scope)
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    label, mark, _ = host.partition(_HOST_MARK)
    if mark and label:
        return UrlAddress(label.lower(), raw_path.decode("latin-1") or "/", host, by_host=True)
    if not raw_path.startswith(_PATH_PREFIX):
        return None
    url_id, _, rest = raw_path[len(_PATH_PREFIX) :].partition(b"/")
    if not url_id:
        return None
    return UrlAddress(
        url_id.decode("latin-1").lower(), "/" + rest.decode("latin-1"), host, by_host=False
    )
