"""Which form of function URL Lamina hands out, decided once at start-up for this host.

Every URL is served in two forms (see `addresses`): by host, as on AWS
(`http://<url-id>.lambda-url.<region>.localhost:<port>/`), and by path
(`http://<host>:<port>/lambda-url/<url-id>/`). The `FunctionUrl` Lamina returns must be one
its clients can call as it is. Browsers and curl map `*.localhost` to loopback themselves;
Python, Node and Go ask the system resolver, and glibc does so only with a module such as
`myhostname` (libnss-myhostname) or `resolve` (systemd-resolved) on the `hosts:` line of
/etc/nsswitch.conf. So `LAMINA_FUNCTION_URL_FORM=auto` (the default) gives:
- the host form when the server is addressed on this machine and the system resolver maps
  a `*.localhost` name to it (asked once, here, never on a request's path);
- the path form otherwise, which every client can call.

`host` and `path` force a form. A server published under another name (`LAMINA_PUBLIC_URL`)
writes its host form under that name, `<url-id>.lambda-url.<region>.<name>` (for wildcard
DNS in front of it); under `auto` it gives the path form, since `*.localhost` cannot reach it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lamina.constants import URL_PATH_PREFIX
from lamina.settings import Settings, is_loopback

AUTO = "auto"
HOST = "host"
PATH = "path"
FORMS = (AUTO, HOST, PATH)

# A name of the shape the host form uses; any `*.localhost` name resolves alike.
_PROBE_LABEL = "lamina-probe"
# glibc may also ask DNS for the name; a resolver that does not answer must not hold up
# start-up, and a name it cannot resolve in this time would not serve clients either.
PROBE_TIMEOUT_S = 2.0

Resolve = Callable[..., list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Resolution:
    """Whether `*.localhost` names reach this server through the system resolver, and why."""

    reaches: bool
    detail: str


def probe_name(region: str) -> str:
    return f"{_PROBE_LABEL}.lambda-url.{region}.localhost"


def probe_localhost(
    region: str,
    endpoint_host: str,
    timeout: float = PROBE_TIMEOUT_S,
    resolve: Resolve = socket.getaddrinfo,
) -> Resolution:
    """Ask the system resolver (getaddrinfo, as urllib does) for a host-form name.

    It reaches the server when every address is loopback and, if the server is addressed by
    an IP, that address is among them. The look-up runs in a daemon thread so that a hung
    resolver costs `timeout` at most.
    """
    name = probe_name(region)
    answer: list[list[tuple[Any, ...]] | OSError] = []

    def look_up() -> None:
        try:
            answer.append(resolve(name, None, type=socket.SOCK_STREAM))
        except OSError as error:
            answer.append(error)

    thread = threading.Thread(target=look_up, name="lamina-url-form-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not answer:
        return Resolution(False, f"the system resolver gave no answer for {name} in {timeout:g} s")
    found = answer[0]
    if isinstance(found, OSError):
        why = found.strerror if isinstance(found, socket.gaierror) and found.strerror else found
        return Resolution(False, f"the system resolver cannot resolve {name} ({why})")
    # In the resolver's order, once each (it lists an address per socket type).
    addresses = list(dict.fromkeys(str(info[4][0]).partition("%")[0] for info in found))
    listed = ", ".join(addresses) or "no address"
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        return Resolution(False, f"the system resolver maps {name} to {listed}, not to loopback")
    if _is_ip(endpoint_host) and str(ipaddress.ip_address(endpoint_host)) not in addresses:
        return Resolution(
            False, f"the system resolver maps {name} to {listed}, not {endpoint_host}"
        )
    return Resolution(True, f"the system resolver maps {name} to {listed}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def on_this_machine(host: str) -> bool:
    """Whether `*.localhost` names could reach a server addressed as `host`."""
    return is_loopback(host) or host.endswith(".localhost")


@dataclass(frozen=True)
class UrlForm:
    """The form of every `FunctionUrl` this process hands out, and why it was chosen."""

    form: str
    reason: str
    endpoint: str
    region: str

    def described(self) -> tuple[str, str, str]:
        """(form, an example URL, why this form) for the server's log."""
        return self.form, self.url("<url-id>"), self.reason

    def url(self, url_id: str) -> str:
        """The `FunctionUrl` of a URL config."""
        return self.written(self.form, url_id)

    def written(self, form: str, url_id: str) -> str:
        """A URL id's address in `form`; both forms are served whichever is handed out."""
        if form == PATH:
            return f"{self.endpoint}{URL_PATH_PREFIX}{url_id}/"
        parts = urlsplit(self.endpoint)
        host = parts.hostname or "localhost"
        domain = "localhost" if on_this_machine(host) else host
        port = f":{parts.port}" if parts.port is not None else ""
        return f"{parts.scheme or 'http'}://{url_id}.lambda-url.{self.region}.{domain}{port}/"

    @property
    def other(self) -> str:
        return PATH if self.form == HOST else HOST


def choose_form(
    settings: Settings, probe: Callable[[str, str], Resolution] = probe_localhost
) -> UrlForm:
    """The form for this process's settings; probes the resolver only when it decides."""
    endpoint = settings.endpoint
    host = urlsplit(endpoint).hostname or ""

    def chosen(form: str, reason: str) -> UrlForm:
        return UrlForm(form, reason, endpoint, settings.region)

    wanted = settings.function_url_form
    if wanted in (HOST, PATH):
        return chosen(wanted, f"LAMINA_FUNCTION_URL_FORM={wanted}")
    if not on_this_machine(host):
        return chosen(
            PATH, f"the server is published as {host}, where *.localhost names do not lead"
        )
    resolution = probe(settings.region, host)
    return chosen(HOST if resolution.reaches else PATH, resolution.detail)


def switch_hint(form: UrlForm) -> list[str]:
    """How an operator gets the other form: a heading, then one line per way (for doctor)."""
    host = urlsplit(form.endpoint).hostname or ""
    if form.other == PATH:
        return [f"to hand out the path form, set LAMINA_FUNCTION_URL_FORM={PATH}"]
    if not on_this_machine(host):
        return [
            f"to hand out the host form, set LAMINA_FUNCTION_URL_FORM={HOST}",
            f"with wildcard DNS for *.lambda-url.{form.region}.{host} pointing at this server",
        ]
    return [
        "to hand out the host form, let the system resolver map *.localhost to loopback:",
        "install libnss-myhostname (Debian, Ubuntu: `sudo apt-get install libnss-myhostname`);",
        "it adds `myhostname` to the hosts: line of /etc/nsswitch.conf and resolves every",
        "*.localhost name to 127.0.0.1 and ::1 (if the module is installed already, add",
        "`myhostname` after `files` on that line yourself); then restart `lamina serve`",
        f"or set LAMINA_FUNCTION_URL_FORM={HOST}; then only clients that resolve *.localhost",
        "themselves (curl, browsers) can call the URLs as returned",
    ]
