"""`libresh cluster scale`: agents removed (drained, their pods moved, then deleted), then the
cluster made as the file says with the new count (new agents join)."""

from __future__ import annotations

from libresh_cli.cluster.hetzner.local import forget_host_key
from libresh_cli.hetzner.cloud import HetznerCloud, ServerInfo
from libresh_cli.kube import nodes as kube_nodes
from libresh_cli.kube.client import KubeClient
from libresh_cli.progress import Reporter
from libresh_cli.settings import Paths


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
