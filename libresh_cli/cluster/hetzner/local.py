"""What libresh keeps on this machine for a cluster: its folder (known_hosts, the join
token, the servers trusted before) and its kubeconfig."""

from __future__ import annotations

from pathlib import Path

from libresh_cli.cluster import kubeconfig
from libresh_cli.remote.ssh import forget_host
from libresh_cli.settings import Paths, write_private_file


def cluster_dir(paths: Paths, name: str) -> Path:
    return paths.config / "clusters" / name


def kubeconfig_destination(paths: Paths, name: str) -> kubeconfig.Destination:
    return kubeconfig.Destination.choose(paths, name, None, merge=False)


# The servers whose host key libresh has trusted once (cluster folder): an unknown key of one
# of them means known_hosts lost it, not a first contact.
TRUSTED_SERVERS = "trusted-servers"


def forget_host_key(paths: Paths, cluster: str, address: str | None) -> None:
    """Hetzner hands a deleted server's address to someone else: its key must not be trusted
    for whatever answers there next."""
    if address is not None:
        forget_host(cluster_dir(paths, cluster) / "known_hosts", address)


def trusted_servers(paths: Paths, cluster: str) -> frozenset[str]:
    """The servers whose host key libresh has trusted once."""
    record = cluster_dir(paths, cluster) / TRUSTED_SERVERS
    return frozenset(record.read_text().split()) if record.exists() else frozenset()


def remember_trusted(paths: Paths, cluster: str, servers: set[str] | frozenset[str]) -> None:
    record = cluster_dir(paths, cluster) / TRUSTED_SERVERS
    write_private_file(record, "\n".join(sorted(servers)) + "\n")
