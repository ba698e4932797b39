"""The cluster file of `libresh cluster create`: what an HA cluster on Hetzner Cloud is made
of, validated with every error naming its field. And the API token, which is never in that
file: it comes from an environment variable or a file only its owner can read.

Pure apart from reading the files named.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libresh_cli import yamlfile
from libresh_cli.cluster import k3s
from libresh_cli.errors import BadInputError, PrerequisiteError

NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,29}[a-z0-9]")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")  # as infra.service.EMAIL
TOKEN_ENV = "HCLOUD_TOKEN"  # noqa: S105 - a variable name; the variable Hetzner's own `hcloud` CLI reads
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9]{64}")  # Hetzner Cloud API tokens
DEFAULT_IMAGE = "debian-12"
# How the Kubernetes API (6443) is reached. Hetzner Cloud Firewalls do not apply to load
# balancers (docs.hetzner.com/cloud/firewalls/faq, "Can Firewalls be applied to my Hetzner
# Cloud Load Balancers?"), so a load balancer's 6443 is open to the whole internet whatever
# allowed_networks.api says (hetzner-k3s docs/Creating_a_cluster.md says the same).
API_FIREWALL = "firewall"  # no load balancer: each server's 6443, filtered by the firewall
API_LOAD_BALANCER = "public_load_balancer"  # a load balancer, its 6443 open to everyone
API_ACCESS = (API_FIREWALL, API_LOAD_BALANCER)
MAX_KEY_BYTES = 64 * 1024  # an SSH public key or an API token: one line
KNOWN_KEYS = {
    "name", "provider", "location", "locations", "image", "ssh_key", "servers", "agents",
    "allowed_networks", "private_network", "k3s_version", "email", "api_access",
}  # fmt: skip
EXAMPLE = """name: coop
provider: hetzner
locations: [fsn1, nbg1, hel1]
ssh_key: ~/.ssh/id_ed25519.pub
servers: {type: cx23, count: 3}
agents: {type: cx33, count: 2}
allowed_networks: {ssh: [203.0.113.7/32], api: [203.0.113.7/32]}
private_network: 10.0.0.0/16
api_access: firewall
"""


@dataclass(frozen=True)
class NodeGroup:
    server_type: str
    count: int


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    locations: tuple[str, ...]
    image: str
    ssh_public_key: str  # the key's text (one line)
    ssh_identity: Path | None  # the private key beside it, when there is one
    servers: NodeGroup
    agents: NodeGroup
    ssh_from: tuple[str, ...]  # networks SSH is open to
    api_from: tuple[str, ...]  # networks the Kubernetes API (6443) is open to
    private_network: str | None  # None: no private network, flannel over WireGuard
    k3s_version: str
    email: str | None
    api_access: str = API_FIREWALL
    source: Path = field(default=Path("cluster.yaml"), compare=False)

    @property
    def labels(self) -> dict[str, str]:
        return {"libresh.org/cluster": self.name}

    @property
    def subnet(self) -> str | None:
        """The servers' subnet: the network's first /24 (or the network itself if smaller)."""
        if self.private_network is None:
            return None
        network = ipaddress.ip_network(self.private_network)
        if network.prefixlen >= 24:
            return str(network)
        return str(next(network.subnets(new_prefix=24)))

    def location_of(self, role: str, index: int) -> str:
        """Nodes go round the locations, servers and agents each from the first."""
        return self.locations[(index - 1) % len(self.locations)]

    def node_names(self, role: str, count: int | None = None) -> list[str]:
        group = self.servers if role == "server" else self.agents
        return [f"{self.name}-{role}-{i}" for i in range(1, (count or group.count) + 1)]

    def warnings(self) -> list[str]:
        found = []
        if self.servers.count % 2 == 0:
            found.append(
                f"{self.source}: servers.count is {self.servers.count}: etcd needs a majority of "
                f"servers up, so {self.servers.count} servers survive no more failures than "
                f"{self.servers.count - 1}. Use an odd number (3 or 5)."
            )
        if "0.0.0.0/0" in self.ssh_from or "::/0" in self.ssh_from:
            found.append(
                f"{self.source}: allowed_networks.ssh is open to the whole internet; give the "
                "addresses you administer from."
            )
        if self.api_access == API_LOAD_BALANCER:
            found.append(
                f"{self.source}: api_access: {API_LOAD_BALANCER}: the load balancer's port 6443 "
                "is open to the whole internet (Hetzner Cloud Firewalls do not apply to load "
                "balancers); allowed_networks.api filters only the servers' own 6443. Use "
                f"api_access: {API_FIREWALL} to keep the API to allowed_networks.api."
            )
        return found


class _Errors:
    """Errors collected over the whole file, reported together."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            lines = "\n".join(f"- {item}" for item in self.items)
            raise BadInputError(
                f"{self.source} is not a valid cluster file:\n{lines}",
                hint=f"A complete example:\n{EXAMPLE}",
            )


def load_spec(path: Path) -> ClusterSpec:
    try:
        text = yamlfile.read_text(path, what="cluster file")
    except yamlfile.YamlRefusedError:
        raise
    except BadInputError as error:  # missing, unreadable, not a regular file
        raise BadInputError(
            error.message,
            hint="Give the path of a cluster file with -f (see `libresh cluster create --help`).",
        ) from None
    data = yamlfile.load(text, source=f"the cluster file {path}")
    if not isinstance(data, dict):
        raise BadInputError(f"{path} must be a mapping of fields.", hint=f"Example:\n{EXAMPLE}")
    return parse_spec(data, path)


def parse_spec(data: dict[str, Any], source: Path) -> ClusterSpec:
    errors = _Errors(source)
    for key in sorted(set(data) - KNOWN_KEYS, key=str):
        errors.add(str(key), f"unknown field (fields: {', '.join(sorted(KNOWN_KEYS))})")
    name = _name(data.get("name"), errors)
    if data.get("provider", "hetzner") != "hetzner":
        errors.add("provider", f"{data.get('provider')!r} is not supported; use hetzner")
    locations = _locations(data, errors)
    public_key, identity = _ssh_key(data.get("ssh_key"), source, errors)
    # A spread placement group holds at most 10 servers.
    servers = _group(data.get("servers"), "servers", errors, span=(1, 10), default_count=3)
    agents = _group(data.get("agents", {"count": 0}), "agents", errors, span=(0, 50))
    ssh_from, api_from = _allowed(data.get("allowed_networks"), errors)
    private = _private_network(data.get("private_network", "10.0.0.0/16"), errors)
    version = _k3s_version(data.get("k3s_version", k3s.DEFAULT_K3S_VERSION), errors)
    api_access = data.get("api_access", API_FIREWALL)
    if api_access not in API_ACCESS:
        errors.add(
            "api_access",
            f"{api_access!r} is not one of {', '.join(API_ACCESS)} ({API_FIREWALL}: the API on "
            "each server, open to allowed_networks.api only; "
            f"{API_LOAD_BALANCER}: a load balancer, open to the whole internet)",
        )
    image = data.get("image", DEFAULT_IMAGE)
    if not isinstance(image, str) or not image:
        errors.add("image", "give an image name, e.g. debian-12 or ubuntu-24.04")
    email = data.get("email")
    if email is not None and not isinstance(email, str):
        errors.add("email", "give the Let's Encrypt contact address as text")
    elif email is not None and not EMAIL_PATTERN.fullmatch(email):
        errors.add("email", f"{email!r} is not an email address")
    errors.raise_if_any()
    return ClusterSpec(
        name=name,
        locations=locations,
        image=str(image),
        ssh_public_key=public_key,
        ssh_identity=identity,
        servers=servers,
        agents=agents,
        ssh_from=ssh_from,
        api_from=api_from,
        private_network=private,
        k3s_version=version,
        email=email,
        api_access=str(api_access),
        source=source,
    )


def _name(value: Any, errors: _Errors) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        errors.add(
            "name",
            f"{value!r} is not a cluster name: 2 to 31 lowercase letters, digits and '-', "
            "starting with a letter (it prefixes every resource's name)",
        )
        return ""
    return value


def _locations(data: dict[str, Any], errors: _Errors) -> tuple[str, ...]:
    if "location" in data and "locations" in data:
        errors.add("location", "give either location or locations, not both")
    value = data.get("locations", data.get("location"))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        errors.add("locations", "give one or more Hetzner locations, e.g. [fsn1, nbg1, hel1]")
        return ()
    return tuple(value)


def _ssh_key(value: Any, source: Path, errors: _Errors) -> tuple[str, Path | None]:
    if not isinstance(value, str) or not value:
        errors.add("ssh_key", "give the path of your SSH public key, e.g. ~/.ssh/id_ed25519.pub")
        return "", None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = source.parent / path
    if not path.exists():
        errors.add("ssh_key", f"cannot read {path}: No such file or directory")
        return "", None
    try:
        text = yamlfile.read_text(path, what="SSH public key", limit=MAX_KEY_BYTES).strip()
    except BadInputError as error:  # unreadable, not UTF-8, a pipe, too big
        errors.add("ssh_key", error.message.removeprefix("Cannot read ").rstrip("."))
        return "", None
    if not text.startswith(("ssh-", "ecdsa-", "sk-")) or "PRIVATE KEY" in text:
        errors.add("ssh_key", f"{path} is not an OpenSSH public key (the .pub file)")
        return "", None
    private = path.with_suffix("") if path.suffix == ".pub" else None
    return text.splitlines()[0], private if private and private.exists() else None


def _group(
    value: Any, where: str, errors: _Errors, *, span: tuple[int, int], default_count: int = 0
) -> NodeGroup:
    if not isinstance(value, dict):
        errors.add(where, "give type and count, e.g. {type: cx23, count: 3}")
        return NodeGroup("", 0)
    for key in sorted(set(value) - {"type", "count"}, key=str):
        errors.add(f"{where}.{key}", "unknown field (fields: type, count)")
    count = value.get("count", default_count)
    low, high = span
    if isinstance(count, bool) or not isinstance(count, int) or not low <= count <= high:
        errors.add(f"{where}.count", f"{count!r} is not a number from {low} to {high}")
        count = low
    server_type = value.get("type", "")
    if count and (not isinstance(server_type, str) or not server_type):
        errors.add(f"{where}.type", "give a Hetzner server type, e.g. cx23, cpx22 or cax21")
    return NodeGroup(str(server_type or ""), count)


def _allowed(value: Any, errors: _Errors) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not isinstance(value, dict) or not {"ssh", "api"} <= set(value):
        errors.add(
            "allowed_networks",
            "give the networks SSH and the Kubernetes API are open to: "
            "{ssh: [203.0.113.7/32], api: [203.0.113.7/32]}",
        )
        return (), ()
    for key in sorted(set(value) - {"ssh", "api"}, key=str):
        errors.add(f"allowed_networks.{key}", "unknown field (fields: ssh, api)")
    return (
        _networks(value["ssh"], "allowed_networks.ssh", errors),
        _networks(value["api"], "allowed_networks.api", errors),
    )


def _networks(value: Any, where: str, errors: _Errors) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        errors.add(where, "give a list of networks in CIDR notation, e.g. [203.0.113.7/32]")
        return ()
    found = []
    for i, item in enumerate(value):
        try:
            found.append(str(ipaddress.ip_network(str(item), strict=True)))
        except ValueError:
            errors.add(f"{where}[{i}]", f"{item!r} is not a network like 203.0.113.0/24")
    return tuple(found)


def _private_network(value: Any, errors: _Errors) -> str | None:
    if value in (None, False, "none"):
        return None
    try:
        network = ipaddress.ip_network(str(value), strict=True)
    except ValueError:
        errors.add("private_network", f"{value!r} is not a network like 10.0.0.0/16 (or none)")
        return None
    if network.version != 4 or not network.is_private or not 8 <= network.prefixlen <= 24:
        errors.add(
            "private_network",
            f"{value} must be a private IPv4 range from /8 to /24 (e.g. 10.0.0.0/16)",
        )
        return None
    return str(network)


def _k3s_version(value: Any, errors: _Errors) -> str:
    if not isinstance(value, str) or not k3s.VERSION_PATTERN.fullmatch(value):
        errors.add("k3s_version", f"{value!r} is not a k3s release like {k3s.DEFAULT_K3S_VERSION}")
        return k3s.DEFAULT_K3S_VERSION
    return value


# -- the API token ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiToken:
    value: str = field(repr=False)
    source: str  # where it was read, for messages: "HCLOUD_TOKEN" or a file path


def read_token(environ: dict[str, str] | os._Environ[str], token_file: Path | None) -> ApiToken:
    """The token from HCLOUD_TOKEN, else from the file (which must be private)."""
    if environ.get(TOKEN_ENV):
        return _checked(environ[TOKEN_ENV].strip(), f"the environment variable {TOKEN_ENV}")
    if token_file is None:
        raise PrerequisiteError(
            f"No Hetzner Cloud API token: {TOKEN_ENV} is not set and no --token-file was given.",
            hint="Create a Read & Write token in the Hetzner console (project > Security > API "
            f"tokens), then `export {TOKEN_ENV}=...` or save it alone in a file with mode 0600 "
            "and pass --token-file FILE.",
        )
    try:
        mode = token_file.stat().st_mode
    except OSError as error:
        raise BadInputError(f"--token-file {token_file}: {error.strerror}.") from error
    try:
        text = yamlfile.read_text(token_file, what="token file", limit=MAX_KEY_BYTES).strip()
    except BadInputError as error:  # not UTF-8, a folder or a pipe
        raise BadInputError(f"--token-file {token_file}: {error.message}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadInputError(
            f"--token-file {token_file} can be read by other users (mode {mode & 0o777:o}).",
            hint=f"Make it private: chmod 600 {token_file}",
        )
    return _checked(text, f"the file {token_file}")


def _checked(value: str, source: str) -> ApiToken:
    if not TOKEN_PATTERN.fullmatch(value):
        raise BadInputError(
            f"The Hetzner Cloud API token in {source} is not a token (expected 64 letters and "
            "digits).",
            hint="Copy the token again from the Hetzner console; nothing else belongs there.",
        )
    return ApiToken(value, source)
