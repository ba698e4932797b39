"""`libresh cluster create`: the whole cluster, from whatever part of it exists (also what
`scale` runs to add agents)."""

from __future__ import annotations

import time
from pathlib import Path

from libresh_cli.cluster import kubeconfig
from libresh_cli.cluster.bootstrap import fetch_kubeconfig
from libresh_cli.cluster.hetzner.catalog import check_against_catalog
from libresh_cli.cluster.hetzner.hosts import Node, connect_nodes, prepare_nodes
from libresh_cli.cluster.hetzner.install import cluster_token, install_k3s
from libresh_cli.cluster.hetzner.local import kubeconfig_destination, trusted_servers
from libresh_cli.cluster.hetzner.report import CreateOptions, CreateReport
from libresh_cli.cluster.hetzner.resources import (
    ApiEndpoint,
    api_endpoint,
    ensure_cloud,
    firewall_rules,
)
from libresh_cli.cluster.hetzner.servers import ensure_servers
from libresh_cli.cluster.spec import ClusterSpec
from libresh_cli.hetzner.cloud import HetznerCloud
from libresh_cli.kube import nodes as kube_nodes
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.connection import KubeTarget
from libresh_cli.progress import Reporter
from libresh_cli.settings import Paths

NODES_READY_TIMEOUT = kube_nodes.NODES_READY_TIMEOUT


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
    trusted = trusted_servers(paths, spec.name)
    report.servers = ensure_servers(cloud, spec, parts, report, reporter, trusted=trusted)
    if spec.private_network is None:
        # The nodes' public addresses are known now: open the node-to-node ports to them.
        cloud.ensure_firewall(
            spec.name, firewall_rules(spec, report.servers), spec.labels, spec.labels
        )
    api = api_endpoint(parts, report.servers)
    report.seconds["cloud"] = time.monotonic() - started
    nodes = connect_nodes(report.servers, spec, paths, ssh_config, report.new_servers, reporter)
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
