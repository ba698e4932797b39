"""The kubeconfig k3s writes on its server, made usable from the admin's machine: renamed to
the chosen context, pointed at the public address, written 0600 or merged as a named context."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from libresh_cli import yamlfile
from libresh_cli.errors import BadInputError, ConflictError, OperationFailedError
from libresh_cli.settings import Paths, write_private_file

# A context name libresh writes: also a file name (kubeconfigs/CONTEXT.yaml), so no '/', no
# leading '.', nothing a shell or YAML would read differently.
CONTEXT_PATTERN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._@-]{0,200}[A-Za-z0-9])?")


def check_context(name: str, option: str = "--context") -> str:
    if not CONTEXT_PATTERN.fullmatch(name):
        raise BadInputError(
            f"{option} {name!r} is not a context name libresh can use.",
            hint="Use letters, digits, '.', '_', '@' and '-', starting and ending with a letter "
            "or digit (it also names the kubeconfig file).",
        )
    return name


@dataclass(frozen=True)
class Destination:
    """Where the kubeconfig goes: its own file, or merged into an existing kubeconfig."""

    path: Path
    merge: bool

    @classmethod
    def choose(
        cls, paths: Paths, context: str, kubeconfig: Path | None, merge: bool
    ) -> Destination:
        check_context(context)
        if merge:
            return cls(kubeconfig or default_merge_target(), True)
        return cls(kubeconfig or paths.config / "kubeconfigs" / f"{context}.yaml", False)


def default_merge_target() -> Path:
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(first) if first else Path.home() / ".kube" / "config"


HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_address(address: str, option: str = "--address") -> str:
    """A host name or an IP address (no zone): it goes into k3s' certificate and the URL."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        labels = address[:-1].split(".") if address.endswith(".") else address.split(".")
        if len(address) <= 253 and all(HOST_LABEL.fullmatch(label) for label in labels):
            return address
    else:
        if not (isinstance(ip, ipaddress.IPv6Address) and ip.scope_id):
            return address
    raise BadInputError(
        f"{option} {address!r} is not a host name or IP address.",
        hint="Give the server's public name (e.g. cloud.example.org) or address "
        "(e.g. 203.0.113.10) with --address.",
    )


def server_url(address: str, port: int = 6443) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}:{port}"


def from_k3s(text: str, *, context: str, server: str) -> dict[str, Any]:
    """k3s names its cluster, user and context `default` and points at 127.0.0.1."""
    try:
        document = yamlfile.load(
            text, source="the host's k3s kubeconfig", limit=yamlfile.MAX_KUBECONFIG_BYTES
        )
        cluster = dict(document["clusters"][0]["cluster"])
        user = dict(document["users"][0]["user"])
    except (yamlfile.YamlRefusedError, KeyError, IndexError, TypeError) as error:
        raise OperationFailedError(
            "The kubeconfig k3s wrote on the host is not one libresh can read.",
            hint="Check /etc/rancher/k3s/k3s.yaml on the host.",
        ) from error
    cluster["server"] = server
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }


def read_kubeconfig(path: Path) -> dict[str, Any] | None:
    if not path.exists() and not path.is_symlink():
        return None
    try:
        document = (
            yamlfile.load_file(path, what="kubeconfig", limit=yamlfile.MAX_KUBECONFIG_BYTES) or {}
        )
    except yamlfile.YamlRefusedError as error:
        raise BadInputError(
            f"{error.message[:-1]}, so libresh will not add to it.",
            hint="Fix the file, or write the new cluster to another one with --kubeconfig.",
        ) from None
    if not isinstance(document, dict):
        raise BadInputError(f"{path} is not a kubeconfig (no mapping at the top).")
    return document


def _named(document: dict[str, Any], section: str, name: str) -> dict[str, Any] | None:
    for entry in document.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def server_of_context(document: dict[str, Any], context: str) -> str | None:
    entry = _named(document, "contexts", context)
    if entry is None:
        return None
    cluster = _named(document, "clusters", str((entry.get("context") or {}).get("cluster")))
    return str(((cluster or {}).get("cluster") or {}).get("server", "")) or "(no server)"


def check_destination(destination: Destination, context: str, server: str) -> None:
    """Refuse, before anything is done on the host, to take a context name used for another
    cluster, or to overwrite a kubeconfig that holds other contexts."""
    document = read_kubeconfig(destination.path)
    if document is None:
        return
    used_by = server_of_context(document, context)
    if used_by is not None and used_by != server:
        raise ConflictError(
            f"The context '{context}' in {destination.path} already points at another "
            f"cluster ({used_by}).",
            hint="Choose another name with --context, or remove that context first "
            f"(kubectl config delete-context {context}).",
        )
    others = [
        str(c.get("name"))
        for c in document.get("contexts") or []
        if isinstance(c, dict) and c.get("name") != context
    ]
    if others and not destination.merge:
        raise ConflictError(
            f"{destination.path} holds other contexts ({', '.join(others)}); libresh will not "
            "overwrite it.",
            hint="Add this cluster to it with --merge, or write it to another file with "
            "--kubeconfig.",
        )


def merged(existing: dict[str, Any] | None, new: dict[str, Any], context: str) -> dict[str, Any]:
    """`new`'s cluster, user and context replace the same-named ones; the rest is kept. The
    current context changes only if there was none."""
    document = dict(existing or {"apiVersion": "v1", "kind": "Config"})
    for section in ("clusters", "users", "contexts"):
        kept = [
            e
            for e in document.get(section) or []
            if not (isinstance(e, dict) and e.get("name") == context)
        ]
        document[section] = kept + new[section]
    document.setdefault("current-context", context)
    if not document.get("current-context"):
        document["current-context"] = context
    return document


def write(destination: Destination, new: dict[str, Any], context: str) -> bool:
    """Write (0600); False when the file already held exactly this."""
    existing = read_kubeconfig(destination.path)
    document = merged(existing, new, context) if destination.merge else new
    if existing == document:
        return False
    write_private_file(destination.path, yaml.safe_dump(document, sort_keys=False))
    return True
