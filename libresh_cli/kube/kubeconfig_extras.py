"""The kubeconfig settings kubectl honours and the kubernetes Python loader does not pass on
to an HTTP client of our own: which proxy (proxy-url, or the environment with NO_PROXY as Go
reads it, CIDR blocks included), the TLS server name, impersonation, and the refusal of
`insecure-skip-tls-verify` beside a CA.

Sources: client-go's rest.Config (TLSClientConfig.ServerName, Proxy, Impersonate) and
clientcmd's validation ("specifying a root certificates file with the insecure flag is not
allowed"); Go's golang.org/x/net/http/httpproxy for NO_PROXY (entries: `*`, host names that
also match their subdomains, a leading dot, IP addresses, CIDR blocks, optional ports;
localhost and loopback addresses never go through a proxy)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from libresh_cli.errors import BadInputError


@dataclass(frozen=True)
class Extras:
    tls_server_name: str | None = None
    proxy: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    impersonate_groups: tuple[str, ...] = ()
    refreshable: bool = False  # credentials an exec plugin or a token file may renew


def selected_entries(
    documents: list[Any], context: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cluster and user sections the context selects, merged as kubectl merges several
    KUBECONFIG files: the first file that names a thing wins."""
    current = context or next(
        (d.get("current-context") for d in documents if d and d.get("current-context")), None
    )
    chosen = _first(documents, "contexts", "context", current)
    return (
        _first(documents, "clusters", "cluster", chosen.get("cluster")),
        _first(documents, "users", "user", chosen.get("user")),
    )


def _first(documents: list[Any], section: str, body: str, name: Any) -> dict[str, Any]:
    for document in documents:
        for entry in (document or {}).get(section) or []:
            if entry.get("name") == name:
                found = entry.get(body) or {}
                return found if isinstance(found, dict) else {}
    return {}


def extras_for(
    cluster: Mapping[str, Any], user: Mapping[str, Any], server: str, env: Mapping[str, str]
) -> Extras:
    if cluster.get("insecure-skip-tls-verify") is True and (
        cluster.get("certificate-authority") or cluster.get("certificate-authority-data")
    ):
        raise BadInputError(
            "The kubeconfig's cluster sets insecure-skip-tls-verify and a certificate "
            "authority: the certificate would silently not be checked (kubectl refuses this "
            "too).",
            hint="Remove insecure-skip-tls-verify (the CA is then used), or the CA.",
        )
    headers = {}
    if user.get("as"):
        headers["Impersonate-User"] = str(user["as"])
    if user.get("as-uid"):
        headers["Impersonate-Uid"] = str(user["as-uid"])
    for key, values in (user.get("as-user-extra") or {}).items():
        headers[f"Impersonate-Extra-{key}"] = ",".join(str(v) for v in values or [])
    groups = tuple(str(g) for g in user.get("as-groups") or [])
    proxy = cluster.get("proxy-url") or proxy_from_environment(server, env)
    return Extras(
        tls_server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name") else None,
        proxy=str(proxy) if proxy else None,
        headers=headers,
        impersonate_groups=groups,
        refreshable=bool(user.get("exec") or user.get("tokenFile") or user.get("auth-provider")),
    )


def proxy_from_environment(server: str, env: Mapping[str, str]) -> str | None:
    url = urlsplit(server)
    secure = url.scheme == "https"
    names = ("HTTPS_PROXY", "https_proxy") if secure else ("HTTP_PROXY", "http_proxy")
    proxy = next((env[n] for n in names if env.get(n)), None)
    if not proxy or not url.hostname:
        return None
    port = url.port or (443 if secure else 80)
    if bypasses_proxy(url.hostname, port, env.get("NO_PROXY") or env.get("no_proxy") or ""):
        return None
    return proxy


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    host = host.lower().strip("[]")
    address = _address(host)
    if host == "localhost" or (address is not None and address.is_loopback):
        return True
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry_host, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None or _address(entry_host) is not None:
            if _address(entry_host) == address:
                return True
            continue
        domain = entry_host.lstrip(".").removeprefix("*.")
        if host == domain or host.endswith("." + domain):
            return True
    return False


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port) if port.isdigit() else None
    return entry, None
