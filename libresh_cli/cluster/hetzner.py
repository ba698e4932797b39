"""`libresh cluster create|scale|status|destroy` on Hetzner Cloud: an HA k3s cluster (servers
with embedded etcd, agents) from a cluster file.

Every step looks first and makes only what is missing, found by the cluster's labels: a
re-run repairs, and a run cut off anywhere resumes. Cloud resources are made concurrently
where they do not depend on each other; k3s goes on the first server (`cluster-init`), then
every other server and agent joins at the same time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from libresh_cli.cluster import k3s, kubeconfig
from libresh_cli.cluster.bootstrap import (
    INSTALLER_TIMEOUT,
    InstallSource,
    fetch_kubeconfig,
    gather_facts,
    installer_script,
)
from libresh_cli.cluster.preflight import HostFacts, assess
from libresh_cli.cluster.spec import API_LOAD_BALANCER, ClusterSpec
from libresh_cli.concurrency import run_concurrently
from libresh_cli.errors import (
    BadInputError,
    LibreshError,
    OperationFailedError,
    PrerequisiteError,
    UnreachableError,
)
from libresh_cli.hetzner.cloud import (
    Catalog,
    Ensured,
    HetznerCloud,
    LoadBalancerInfo,
    Rule,
    ServerInfo,
    ServerRequest,
)
from libresh_cli.kube import nodes as kube_nodes
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.connection import KubeTarget
from libresh_cli.kube.readiness import node as node_readiness
from libresh_cli.progress import Reporter
from libresh_cli.remote.ssh import SshHost, SshTarget, forget_host
from libresh_cli.settings import Paths, make_private_dirs, write_private_file

ROLE = "libresh.org/role"
INDEX = "libresh.org/index"
SSH_WAIT = 300.0  # a new server's sshd comes up within a minute or two
NODES_READY_TIMEOUT = kube_nodes.NODES_READY_TIMEOUT
ETCD_ROLE = "node-role.kubernetes.io/etcd"
EVERYWHERE = ("0.0.0.0/0", "::/0")

# cloud-init for every node: what k3s needs on a fresh image, and nothing that waits for us.
CLOUD_INIT = """#cloud-config
# Written by libresh (`libresh cluster create`).
package_update: true
packages: [curl, wireguard-tools, open-iscsi, nfs-common]
write_files:
  - path: /etc/sysctl.d/90-libresh-k3s.conf
    content: |
      fs.inotify.max_user_instances = 1024
      fs.inotify.max_user_watches = 1048576
runcmd:
  - [sysctl, --system]
"""


@dataclass(frozen=True)
class CreateOptions:
    source: InstallSource = field(default_factory=InstallSource)
    concurrent_joins: bool = True  # False only to measure what concurrency saves


@dataclass
class CreateReport:
    cluster: str
    created: list[str] = field(default_factory=list)  # cloud resources made by this run
    servers: list[ServerInfo] = field(default_factory=list)
    trusted_keys: dict[str, list[str]] = field(default_factory=dict)  # server -> fingerprints
    k3s: dict[str, str] = field(default_factory=dict)  # node -> what was done
    kubeconfig: str = ""
    network: str | None = None  # the private network's name (the hcloud charts need it)
    context: str = ""
    api_server: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "created": self.created,
            "servers": [s.to_dict() for s in self.servers],
            "trusted_host_keys": self.trusted_keys,
            "k3s": self.k3s,
            "kubeconfig": self.kubeconfig,
            "context": self.context,
            "api_server": self.api_server,
            "warnings": self.warnings,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


@dataclass(frozen=True)
class CloudParts:
    ssh_key_id: int
    network_id: int | None
    network_name: str | None
    placement_group_id: int
    load_balancer: LoadBalancerInfo | None  # only with api_access: public_load_balancer


@dataclass(frozen=True)
class ApiEndpoint:
    """Where kubectl and libresh reach the Kubernetes API, and the addresses its certificate
    names (k3s `tls-san`)."""

    address: str
    names: tuple[str, ...]
    via: str  # "the load balancer" | "the first server"


def api_endpoint(parts: CloudParts, servers: list[ServerInfo]) -> ApiEndpoint:
    """The load balancer when there is one; else the first server's public address, every
    server's public address on the certificate (an admin may point kubectl at another)."""
    balancer = parts.load_balancer
    if balancer is not None and balancer.public_ipv4:
        names = tuple(a for a in (balancer.public_ipv4, balancer.private_ipv4) if a)
        return ApiEndpoint(balancer.public_ipv4, names, "the load balancer")
    public = [s.public_ipv4 for s in servers if s.role == "server" and s.public_ipv4]
    if not public:
        raise OperationFailedError("The cluster's servers have no public IPv4 address.")
    return ApiEndpoint(public[0], tuple(public), "the first server")


def cluster_dir(paths: Paths, name: str) -> Path:
    return paths.config / "clusters" / name


def kubeconfig_destination(paths: Paths, name: str) -> kubeconfig.Destination:
    return kubeconfig.Destination.choose(paths, name, None, merge=False)


# -- checking the file against the project --------------------------------------------------


def check_against_catalog(cloud: HetznerCloud, spec: ClusterSpec) -> Catalog:
    """Locations, server types and the image as Hetzner knows them."""
    catalog = cloud.catalog()
    problems = _unknown_names(spec, catalog)
    if spec.private_network is not None:
        zones = {catalog.locations[loc] for loc in spec.locations if loc in catalog.locations}
        if len(zones) > 1:
            problems.append(
                f"locations: {', '.join(spec.locations)} are in different network zones "
                f"({', '.join(sorted(zones))}); a private network spans one zone. Pick "
                "locations of one zone, or set private_network: none."
            )
    if problems:
        lines = "\n".join(f"- {p}" for p in problems)
        raise BadInputError(f"{spec.source} does not fit this Hetzner project:\n{lines}")
    for group in (spec.servers, spec.agents):
        architecture = catalog.server_types[group.server_type].architecture if group.count else ""
        if group.count and not cloud.image_exists(spec.image, architecture):
            raise BadInputError(
                f"{spec.source}: image: {spec.image} does not exist for "
                f"{architecture} servers ({group.server_type}).",
                hint="Use a system image name such as debian-12 or ubuntu-24.04.",
            )
    return catalog


def _unknown_names(spec: ClusterSpec, catalog: Catalog) -> list[str]:
    """Locations that do not exist; server types that do not exist, or are not offered (any
    more, or for now) in a location where this file puts one of its nodes. Server types are
    offered per location since 2025 (hetzner/cloud.py ServerTypeOffer); CX Gen 2 and CPX Gen 1
    were withdrawn from the EU at the end of 2025 (terraform-provider-hcloud#1233)."""
    problems = []
    for i, location in enumerate(spec.locations):
        if location not in catalog.locations:
            valid = ", ".join(sorted(catalog.locations))
            problems.append(f"locations[{i}]: {location!r} is not a location (valid: {valid})")
    offered = {
        name: offer
        for name, offer in catalog.server_types.items()
        if "available" in offer.locations.values()
    }
    for role, where, group in (
        ("server", "servers", spec.servers),
        ("agent", "agents", spec.agents),
    ):
        if not group.count:
            continue
        offer = catalog.server_types.get(group.server_type)
        if offer is None or group.server_type not in offered:
            valid = ", ".join(sorted(offered))
            problems.append(
                f"{where}.type: {group.server_type!r} is not a server type Hetzner offers "
                f"(valid: {valid})"
            )
            continue
        places = sorted({spec.location_of(role, i) for i in range(1, group.count + 1)})
        for place in (p for p in places if p in catalog.locations):
            state = offer.locations.get(place, "not offered")
            if state == "available":
                continue
            here = sorted(
                n
                for n, o in offered.items()
                if o.available_in(place) and o.architecture == offer.architecture
            )
            elsewhere = sorted(p for p, st in offer.locations.items() if st == "available")
            problems.append(
                f"{where}.type: {group.server_type} is {state} in {place}"
                f"{' (Hetzner no longer creates it there)' if state == 'deprecated' else ''}"
                f"{' for now' if state == 'sold out' else ''}; "
                f"{offer.architecture} types available in {place}: {', '.join(here) or 'none'}; "
                f"{group.server_type} is available in: {', '.join(elsewhere) or 'no location'}"
            )
    return problems


# -- the cloud half -----------------------------------------------------------------------


def firewall_rules(spec: ClusterSpec, servers: Iterable[ServerInfo]) -> list[Rule]:
    """Inbound rules. Hetzner firewalls filter public interfaces only: traffic between nodes
    on the private network needs no rule. Without a private network, the nodes reach each
    other on their public addresses, and only there: etcd, the API, kubelet, WireGuard."""
    rules = [
        Rule("SSH (administrators)", "tcp", "22", spec.ssh_from),
        Rule("Kubernetes API (administrators)", "tcp", "6443", spec.api_from),
        Rule("HTTP (Let's Encrypt, redirects)", "tcp", "80", EVERYWHERE),
        Rule("HTTPS", "tcp", "443", EVERYWHERE),
        Rule("ICMP (path MTU, ping)", "icmp", None, EVERYWHERE),
    ]
    if spec.private_network is None:
        nodes = tuple(sorted(f"{s.public_ipv4}/32" for s in servers if s.public_ipv4))
        if nodes:
            rules += [
                Rule("k3s API and etcd between nodes", "tcp", "2379-2380", nodes),
                Rule("k3s API between nodes", "tcp", "6443", nodes),
                Rule("kubelet between nodes", "tcp", "10250", nodes),
                Rule("flannel WireGuard between nodes", "udp", "51820-51821", nodes),
            ]
    return rules


def ensure_cloud(
    cloud: HetznerCloud, spec: ClusterSpec, zone: str, report: CreateReport, reporter: Reporter
) -> CloudParts:
    """SSH key, network, placement group and firewall at the same time; then, with
    `api_access: public_load_balancer` only, the API's load balancer, which joins the network.
    With `api_access: firewall`, a load balancer an earlier run made is deleted: it would keep
    6443 open to the whole internet (Hetzner Cloud Firewalls do not apply to load balancers:
    docs.hetzner.com/cloud/firewalls/faq "Can Firewalls be applied to my Hetzner Cloud Load
    Balancers?"; hetzner-k3s docs/Creating_a_cluster.md says the API "would be exposed to the
    public internet regardless of the allowed networks configuration")."""
    reporter.step("Checking the cluster's cloud resources (SSH key, network, firewall, ...)")
    labels = spec.labels
    servers_only = {**labels, ROLE: "server"}
    tasks: dict[str, Callable[[], Ensured]] = {
        "ssh_key": lambda: cloud.ensure_ssh_key(spec.name, spec.ssh_public_key, labels),
        "placement": lambda: cloud.ensure_placement_group(spec.name, labels),
        "firewall": lambda: cloud.ensure_firewall(
            spec.name, firewall_rules(spec, cloud.servers(labels)), labels, labels
        ),
    }
    if spec.private_network is not None and spec.subnet is not None:
        tasks["network"] = partial(
            cloud.ensure_network, spec.name, spec.private_network, spec.subnet, zone, labels
        )
    done = run_concurrently(tasks)
    network = done.get("network")
    info: LoadBalancerInfo | None = None
    ensured_all = list(done.values())
    if spec.api_access == API_LOAD_BALANCER:
        ensured_all.append(
            cloud.ensure_load_balancer(
                f"{spec.name}-api",
                spec.locations[0],
                network.id if network else None,
                labels,
                servers_only,
            )
        )
        info = cloud.load_balancer(labels)
        if info is None or info.public_ipv4 is None:
            raise OperationFailedError(
                f"The load balancer {spec.name}-api has no public address yet.",
                hint="Run the same command again in a minute.",
            )
    else:
        for removed in cloud.delete_load_balancers(labels):
            reporter.warn(
                f"Deleted the {removed}: api_access is {spec.api_access}, and a Hetzner load "
                "balancer's port 6443 is open to the whole internet."
            )
    for ensured in ensured_all:
        if ensured.created:
            report.created.append(f"{ensured.kind} {ensured.name}")
    made = ", ".join(report.created) if report.created else "all there already"
    reporter.done(f"Cloud resources: {made}")
    return CloudParts(
        done["ssh_key"].id,
        network.id if network else None,
        network.name if network else None,
        done["placement"].id,
        info,
    )


def wanted_nodes(spec: ClusterSpec, agents: int | None = None) -> list[tuple[str, int, str]]:
    """(role, index, name) of every node the file asks for."""
    count = spec.agents.count if agents is None else agents
    return [("server", i, n) for i, n in enumerate(spec.node_names("server"), 1)] + [
        ("agent", i, f"{spec.name}-agent-{i}") for i in range(1, count + 1)
    ]


def ensure_servers(
    cloud: HetznerCloud,
    spec: ClusterSpec,
    parts: CloudParts,
    report: CreateReport,
    reporter: Reporter,
    agents: int | None = None,
    trusted: frozenset[str] = frozenset(),
) -> list[ServerInfo]:
    """Every node's server, made if missing, running. `trusted`: the servers libresh has
    reached before (they may hold cluster data, so they are never replaced here)."""
    existing = {s.name: s for s in cloud.servers(spec.labels)}
    existing = _started(cloud, existing, trusted, reporter)
    missing = [n for n in wanted_nodes(spec, agents) if n[2] not in existing]
    if missing:
        names = ", ".join(name for _, _, name in missing)
        reporter.step(f"Creating {len(missing)} server(s): {names}")

        def create(role: str, index: int, name: str) -> ServerInfo:
            group = spec.servers if role == "server" else spec.agents
            return cloud.create_server(
                ServerRequest(
                    name=name,
                    server_type=group.server_type,
                    image=spec.image,
                    location=spec.location_of(role, index),
                    labels={**spec.labels, ROLE: role, INDEX: str(index)},
                    user_data=CLOUD_INIT,
                    ssh_key_id=parts.ssh_key_id,
                    network_id=parts.network_id,
                    placement_group_id=parts.placement_group_id if role == "server" else None,
                )
            )

        made = run_concurrently({m[2]: partial(create, *m) for m in missing})
        report.created += [f"server {name}" for name in made]
        # A server whose start failed is off: powered on, or (it holds nothing) made again.
        made = _started(cloud, made, frozenset(), reporter)
        again = [m for m in missing if m[2] not in made]
        if again:
            made.update(run_concurrently({m[2]: partial(create, *m) for m in again}))
            made = _started(cloud, made, frozenset(made), reporter)
        existing.update(made)
        reporter.done(f"{len(made)} server(s) created")
    wanted = {name for _, _, name in wanted_nodes(spec, agents)}
    return sorted(
        (s for s in existing.values() if s.name in wanted),
        key=lambda s: (s.role != "server", s.index),
    )


def _started(
    cloud: HetznerCloud,
    servers: dict[str, ServerInfo],
    trusted: frozenset[str],
    reporter: Reporter,
) -> dict[str, ServerInfo]:
    """The servers, each running: one that is off is powered on (hetzner-k3s does the same,
    src/hetzner/instance/create.cr); one that will not start is deleted when libresh never
    reached it (it holds nothing; it is left out of the result, to be made again), else the
    run stops with what to do."""
    result = dict(servers)
    for name, server in servers.items():
        if server.status != "off":
            continue
        reporter.step(f"Starting {name}, which is off")
        if cloud.power_on(server.id, name):
            result[name] = replace(server, status="running")
            continue
        if name in trusted:
            raise OperationFailedError(
                f"Hetzner could not start the server {name}, which is off.",
                hint="Start it in the Hetzner console (or `hcloud server poweron "
                f"{name}`); if it cannot start, delete it there, then run the same command "
                "again: it is made anew and joins the cluster.",
            )
        reporter.warn(f"{name} would not start; it holds nothing yet: deleting it, to make it anew")
        cloud.delete_server(server.id, name)
        del result[name]
    return result


# -- the k3s half ---------------------------------------------------------------------------


@dataclass
class Node:
    server: ServerInfo
    host: SshHost
    facts: HostFacts | None = None
    private_interface: str | None = None


def connect_nodes(
    servers: list[ServerInfo],
    spec: ClusterSpec,
    paths: Paths,
    ssh_config: Path | None,
    new_names: set[str],
    reporter: Reporter,
) -> dict[str, Node]:
    """One SSH master connection per server, all at once. Host keys: the cluster's own
    known_hosts; a server's key is trusted on first use (shown, kept) only when this run
    created the server or libresh never trusted a key of it before (a run cut off between
    creating and connecting); a changed key is refused, and so is an unknown key of a server
    trusted before (its known_hosts entry was lost: the key must be checked by a person)."""
    known = cluster_dir(paths, spec.name) / "known_hosts"
    make_private_dirs(known.parent)
    record = known.parent / TRUSTED_SERVERS
    trusted_before = set(record.read_text().split()) if record.exists() else set()
    reporter.step(f"Connecting to {len(servers)} server(s) over SSH")
    opened: list[SshHost] = []

    def connect(server: ServerInfo) -> Node:
        if server.public_ipv4 is None:
            raise OperationFailedError(f"The server {server.name} has no public IPv4 address.")
        target = SshTarget(
            f"root@{server.public_ipv4}",
            identity=spec.ssh_identity,
            config_file=ssh_config,
            known_hosts=known,
        )
        host = SshHost(target)
        host.label = server.name
        opened.append(host)
        first_contact = server.name in new_names or server.name not in trusted_before
        _connect_waiting(
            host, server.name, new=server.name in new_names, tofu=first_contact, known_hosts=known
        )
        return Node(server, host)

    try:
        nodes = run_concurrently({s.name: partial(connect, s) for s in servers})
    except LibreshError:
        for host in opened:  # the connections that did open are not left behind
            host.close()
        raise
    write_private_file(record, "\n".join(sorted(trusted_before | set(nodes))) + "\n")
    reporter.done(f"Connected to {len(nodes)} server(s)")
    return nodes


# The servers whose host key libresh has trusted once (cluster folder): an unknown key of one
# of them means known_hosts lost it, not a first contact.
TRUSTED_SERVERS = "trusted-servers"


def _connect_waiting(host: SshHost, name: str, *, new: bool, tofu: bool, known_hosts: Path) -> None:
    deadline = time.monotonic() + (SSH_WAIT if new else 0)
    while True:
        try:
            host.connect(None, accept_new=tofu)
            return
        except BadInputError as error:
            if tofu or "host key" not in error.message:
                raise
            raise BadInputError(
                f"{name}: {error.message} libresh trusted a key of this server before, so "
                "the cluster's known_hosts has lost it: a new key is not trusted blindly.",
                hint="Check the fingerprint on the server's console in Hetzner's Cloud Console "
                "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), add the key to "
                f"{known_hosts} (`ssh-keyscan -t ed25519 ADDRESS`, once it matches), then run "
                "the same command again.",
            ) from error
        except UnreachableError as error:
            if time.monotonic() > deadline:
                raise UnreachableError(
                    f"{name}: {error.message}", hint=error.hint or "Run the same command again."
                ) from error
            time.sleep(3)


PREPARE_SCRIPT = """\
if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1 || true; fi
ip -o -4 addr show 2>/dev/null || true
"""


def prepare_nodes(nodes: dict[str, Node], reporter: Reporter) -> None:
    """Wait for cloud-init, learn each node's private interface, run the preflight."""
    reporter.step("Waiting for cloud-init and checking the servers")

    def prepare(node: Node) -> None:
        result = node.host.run(PREPARE_SCRIPT, timeout=900)
        if node.server.private_ipv4:
            node.private_interface = interface_of(result.stdout, node.server.private_ipv4)
        node.facts = gather_facts(node.host)
        node.host.privilege = node.facts.privilege
        failures = assess(node.facts, needs_download=True).failures(force=False)
        if failures:
            raise PrerequisiteError(
                f"{node.server.name} is not ready for k3s: "
                + "; ".join(f"{c.name}: {c.message}" for c in failures)
            )

    run_concurrently({name: partial(prepare, n) for name, n in nodes.items()})
    reporter.done("Servers ready for k3s")


def interface_of(ip_output: str, address: str) -> str | None:
    """The interface holding `address`, from `ip -o -4 addr show`."""
    for line in ip_output.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet" and parts[3].split("/")[0] == address:
            return parts[1].split("@")[0]
    return None


def cluster_token(first: Node, paths: Paths, name: str) -> str:
    """The secret every node joins with: what the first server already has, else the one
    kept here, else a new one (kept here, 0600, before any node gets it)."""
    current = k3s.read_host_config(first.facts.k3s_config if first.facts else None)
    kept = cluster_dir(paths, name) / "token"
    token = current.get("token") if isinstance(current, dict) else None
    if not token and kept.exists():
        token = kept.read_text().strip()
    token = str(token or secrets.token_hex(32))
    if not kept.exists() or kept.read_text().strip() != token:
        write_private_file(kept, token + "\n")
    return token


def node_settings(
    spec: ClusterSpec, node: Node, first: Node, api: ApiEndpoint, token: str
) -> dict[str, Any]:
    server = node.server
    own_ip = server.private_ipv4 or server.public_ipv4
    settings: dict[str, Any] = {
        "node-name": server.name,
        "token": token,
        "node-ip": own_ip,
        "node-external-ip": server.public_ipv4,
        "kubelet-arg": ["cloud-provider=external"],
    }
    if node.private_interface:
        settings["flannel-iface"] = node.private_interface
    if node is not first:
        # k3s agents learn every server from the first one, so it is only the way in.
        first_ip = first.server.private_ipv4 or first.server.public_ipv4
        settings["server"] = kubeconfig.server_url(str(first_ip))
    if server.role != "server":
        return settings
    sans = list(api.names)
    settings = {
        **k3s.profile_settings("ha"),
        "write-kubeconfig-mode": "0600",
        **settings,
        "advertise-address": own_ip,
        "tls-san": sans,
        "flannel-backend": "vxlan" if spec.private_network else "wireguard-native",
    }
    if node is first:
        settings["cluster-init"] = True
    return settings


def install_node(
    node: Node,
    settings: dict[str, Any],
    spec: ClusterSpec,
    source: InstallSource,
    running: bool | None = None,
) -> str:
    """Config and installer on one node: what was done. `running`: whether its k3s runs, when
    known better than the preflight can tell (a joined node is Ready in the cluster)."""
    facts = node.facts
    if facts is None:
        raise OperationFailedError(f"{node.server.name} was not checked before installing k3s.")
    config = k3s.plan_config(facts.k3s_config, settings)
    plan = k3s.plan_install(
        installed=facts.k3s_version,
        running=facts.k3s_running if running is None else running,
        config_changed=config.changed,
        # A running cluster keeps its version here: `libresh cluster upgrade` moves it.
        version=None if facts.k3s_version else spec.k3s_version,
        channel=None,
    )
    if not plan.runs_installer:
        return "nothing"
    install_exec = "agent" if node.server.role == "agent" else None
    script = installer_script(plan, config, source, install_exec)
    result = node.host.run(script, privileged=True, timeout=INSTALLER_TIMEOUT)
    if not result.ok:
        raise OperationFailedError(
            f"The k3s installer failed on {node.server.name} (exit {result.exit_code}); the "
            f"last lines:\n{result.stderr_tail(15)}",
            hint="Fix the cause, then run the same command again: it picks up from here.",
        )
    return str(plan.action)


def install_k3s(
    nodes: dict[str, Node],
    spec: ClusterSpec,
    api: ApiEndpoint,
    token: str,
    options: CreateOptions,
    report: CreateReport,
    reporter: Reporter,
    after_first: Callable[[], set[str]],
) -> None:
    """The first server, then (`after_first` gives the nodes already Ready) the others."""
    ordered = sorted(nodes.values(), key=lambda n: (n.server.role != "server", n.server.index))
    first, others = ordered[0], ordered[1:]
    reporter.step(f"k3s on the first server, {first.server.name} (cluster-init)")
    started = time.monotonic()
    report.k3s[first.server.name] = install_node(
        first, node_settings(spec, first, first, api, token), spec, options.source
    )
    report.seconds["first_server"] = time.monotonic() - started
    reporter.done(f"{first.server.name}: {report.k3s[first.server.name]}")
    joined = after_first()
    if not others:
        return
    how = "at the same time" if options.concurrent_joins else "one after another"
    reporter.step(f"Joining {len(others)} node(s) {how}")
    started = time.monotonic()
    jobs = {
        n.server.name: partial(
            install_node,
            n,
            node_settings(spec, n, first, api, token),
            spec,
            options.source,
            running=n.server.name in joined,
        )
        for n in others
    }
    report.k3s.update(run_concurrently(jobs, workers=None if options.concurrent_joins else 1))
    report.seconds["joins"] = time.monotonic() - started
    reporter.done(f"{len(others)} node(s) joined")


def connect_here(
    first: Node,
    spec: ClusterSpec,
    api: ApiEndpoint,
    paths: Paths,
    report: CreateReport,
    reporter: Reporter,
) -> Path:
    """The kubeconfig from the first server, pointing at the API endpoint."""
    server = kubeconfig.server_url(api.address)
    destination = kubeconfig_destination(paths, spec.name)
    document = kubeconfig.from_k3s(
        fetch_kubeconfig(first.host, reporter), context=spec.name, server=server
    )
    kubeconfig.write(destination, document, spec.name)
    report.kubeconfig, report.context, report.api_server = (
        str(destination.path),
        spec.name,
        server,
    )
    return destination.path


def ready_node_names(path: Path, context: str) -> set[str]:
    """The nodes Ready now, through the API endpoint (none while it does not answer yet)."""
    with KubeClient.connect(KubeTarget(path, context), timeout=10.0) as kube:
        return kube_nodes.ready_node_names(kube)


def wait_nodes_ready(
    path: Path, context: str, names: list[str], reporter: Reporter, via: str = "the API"
) -> None:
    reporter.step(f"Waiting for {len(names)} node(s) to be Ready (through {via})")
    with KubeClient.connect(KubeTarget(path, context), timeout=10.0) as kube:
        # The load balancer marks the servers healthy within seconds: unreachable is waited for.
        kube_nodes.wait_nodes_ready(kube, names, timeout=NODES_READY_TIMEOUT)
    reporter.done(f"{len(names)} node(s) Ready")


def create(
    cloud: HetznerCloud,
    spec: ClusterSpec,
    paths: Paths,
    reporter: Reporter,
    options: CreateOptions,
    ssh_config: Path | None = None,
) -> CreateReport:
    """The whole cluster, from whatever part of it exists."""
    started = time.monotonic()
    report = CreateReport(cluster=spec.name)
    zone = check_against_catalog(cloud, spec).locations[spec.locations[0]]
    report.warnings = spec.warnings()
    for warning in report.warnings:
        reporter.warn(warning)
    parts = ensure_cloud(cloud, spec, zone, report, reporter)
    report.network = parts.network_name
    record = cluster_dir(paths, spec.name) / TRUSTED_SERVERS
    trusted = frozenset(record.read_text().split()) if record.exists() else frozenset()
    report.servers = ensure_servers(cloud, spec, parts, report, reporter, trusted=trusted)
    if spec.private_network is None:
        # The nodes' public addresses are known now: open the node-to-node ports to them.
        cloud.ensure_firewall(
            spec.name, firewall_rules(spec, report.servers), spec.labels, spec.labels
        )
    api = api_endpoint(parts, report.servers)
    report.seconds["cloud"] = time.monotonic() - started
    new_names = {r.split(" ", 1)[1] for r in report.created if r.startswith("server ")}
    nodes = connect_nodes(report.servers, spec, paths, ssh_config, new_names, reporter)
    try:
        report.trusted_keys = {
            n: node.host.trusted_fingerprints
            for n, node in nodes.items()
            if node.host.trusted_fingerprints
        }
        for name, prints in report.trusted_keys.items():
            reporter.done(f"Host key of {name} trusted on first use: {', '.join(prints)}")
        prepare_nodes(nodes, reporter)
        first = nodes[report.servers[0].name]
        token = cluster_token(first, paths, spec.name)
        k3s_started = time.monotonic()
        kubeconfig_path: list[Path] = []

        def after_first() -> set[str]:
            kubeconfig_path.append(connect_here(first, spec, api, paths, report, reporter))
            return ready_node_names(kubeconfig_path[0], spec.name)

        install_k3s(nodes, spec, api, token, options, report, reporter, after_first)
        report.seconds["k3s"] = time.monotonic() - k3s_started
        path = kubeconfig_path[0]
    finally:
        for node in nodes.values():
            node.host.close()
    wait_nodes_ready(path, spec.name, [s.name for s in report.servers], reporter, api.via)
    report.seconds["total"] = time.monotonic() - started
    return report


# -- status, scale, destroy ---------------------------------------------------------------


def status(
    cloud: HetznerCloud,
    name: str,
    labels: dict[str, str],
    kube: KubeClient | None,
    api_access: str = API_LOAD_BALANCER,
) -> dict[str, Any]:
    servers = cloud.servers(labels)
    balancer = cloud.load_balancer(labels)
    names = {s.id: s.name for s in servers}
    data: dict[str, Any] = {
        "cluster": name,
        "servers": [s.to_dict() for s in servers],
        "api_access": api_access,
        "load_balancer": None,
        "nodes": [],
        "etcd_members": [],
        "healthy": True,
    }
    if balancer is not None:
        health = {names.get(i, str(i)): h for i, h in balancer.health.items()}
        data["load_balancer"] = {
            "name": balancer.name,
            "address": balancer.public_ipv4,
            "targets": health,
        }
        data["healthy"] &= bool(health) and all(h == "healthy" for h in health.values())
    elif api_access == API_LOAD_BALANCER:
        data["healthy"] = False
    if kube is not None:
        nodes = kube.list("v1", "Node")
        data["nodes"] = [_node_row(n) for n in nodes]
        data["etcd_members"] = sorted(
            n["metadata"]["name"]
            for n in nodes
            if n["metadata"].get("labels", {}).get(ETCD_ROLE) == "true"
        )
        data["healthy"] &= all(n["ready"] for n in data["nodes"])
        wanted_servers = [s.name for s in servers if s.role == "server"]
        data["healthy"] &= len(data["etcd_members"]) >= len(wanted_servers)
    data["healthy"] &= bool(servers) and all(s.status == "running" for s in servers)
    return data


def _node_row(node: dict[str, Any]) -> dict[str, Any]:
    labels = node["metadata"].get("labels", {})
    roles = sorted(
        k.split("/", 1)[1] for k, v in labels.items() if k.startswith("node-role.kubernetes.io/")
    )
    return {
        "name": node["metadata"]["name"],
        "ready": node_readiness(node).ready,
        "roles": roles or ["agent"],
        "version": node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""),
        "schedulable": not node.get("spec", {}).get("unschedulable", False),
    }


def agents_to_remove(servers: list[ServerInfo], count: int) -> list[ServerInfo]:
    """The highest-numbered agents beyond `count`, last first."""
    agents = sorted((s for s in servers if s.role == "agent"), key=lambda s: s.index)
    return list(reversed(agents[count:]))


def remove_agent(
    cloud: HetznerCloud,
    kube: KubeClient,
    server: ServerInfo,
    paths: Paths,
    cluster: str,
    reporter: Reporter,
) -> None:
    if kube.get("v1", "Node", server.name) is not None:
        reporter.step(f"Draining {server.name}")
        kube_nodes.drain(kube, server.name)
        reporter.done(f"{server.name} drained")
        kube.delete("v1", "Node", server.name)
    reporter.step(f"Deleting the server {server.name}")
    cloud.delete_server(server.id, server.name)
    forget_host_key(paths, cluster, server.public_ipv4)
    reporter.done(f"Server {server.name} deleted")


def forget_host_key(paths: Paths, cluster: str, address: str | None) -> None:
    """Hetzner hands a deleted server's address to someone else: its key must not be trusted
    for whatever answers there next."""
    if address is not None:
        forget_host(cluster_dir(paths, cluster) / "known_hosts", address)


def destroy(
    cloud: HetznerCloud, name: str, labels: dict[str, str], paths: Paths, reporter: Reporter
) -> list[str]:
    """Everything carrying the cluster's labels: servers first (all at once), then what they
    used. Volumes made by the CSI driver are not labelled by libresh and are kept."""
    deleted = []
    servers = cloud.servers(labels)
    if servers:
        reporter.step(f"Deleting {len(servers)} server(s)")
        run_concurrently({s.name: partial(cloud.delete_server, s.id, s.name) for s in servers})
        deleted += [f"server {s.name}" for s in servers]
    reporter.step("Deleting the load balancer, firewall, placement group, network and SSH key")
    deleted += cloud.delete_labelled(labels)
    directory = cluster_dir(paths, name)
    for leftover in (directory / "known_hosts", directory / "token", directory / TRUSTED_SERVERS):
        leftover.unlink(missing_ok=True)
    kubeconfig_destination(paths, name).path.unlink(missing_ok=True)
    reporter.done(f"{len(deleted)} resource(s) deleted")
    return deleted
