"""`libresh cluster destroy`: everything carrying the cluster's labels."""

from __future__ import annotations

from functools import partial

from libresh_cli.cluster.hetzner.local import TRUSTED_SERVERS, cluster_dir, kubeconfig_destination
from libresh_cli.concurrency import run_concurrently
from libresh_cli.hetzner.cloud import HetznerCloud
from libresh_cli.progress import Reporter
from libresh_cli.settings import Paths


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
