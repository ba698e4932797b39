"""The cloud half's shared resources: SSH key, private network, placement group, firewall and
(with api_access: public_load_balancer) the API's load balancer; where the API is reached."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from libresh_cli.cluster.hetzner.report import CreateReport
from libresh_cli.cluster.spec import API_LOAD_BALANCER, ClusterSpec
from libresh_cli.concurrency import run_concurrently
from libresh_cli.errors import OperationFailedError
from libresh_cli.hetzner.cloud import Ensured, HetznerCloud, LoadBalancerInfo, Rule, ServerInfo
from libresh_cli.progress import Reporter

ROLE = "libresh.org/role"


INDEX = "libresh.org/index"


EVERYWHERE = ("0.0.0.0/0", "::/0")


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
