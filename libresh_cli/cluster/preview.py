"""What `cluster create`, `scale` and `destroy` would do (their --dry-run): read from the
cloud by the cluster's labels, as the commands themselves find their parts, changing nothing.
Each returns the actions as lines, for a person or a script."""

from __future__ import annotations

from typing import TYPE_CHECKING

from libresh_cli.cluster.hetzner.catalog import check_against_catalog
from libresh_cli.cluster.hetzner.servers import agents_to_remove, wanted_nodes

if TYPE_CHECKING:
    from libresh_cli.cluster.spec import ClusterSpec
    from libresh_cli.hetzner.cloud import HetznerCloud


def create_actions(cloud: HetznerCloud, spec: ClusterSpec) -> list[str]:
    check_against_catalog(cloud, spec)  # the file's names as Hetzner knows them
    existing = {s.name for s in cloud.servers(spec.labels)}
    types = {"server": spec.servers.server_type, "agent": spec.agents.server_type}
    wanted = [(name, types[role]) for role, _, name in wanted_nodes(spec)]
    new = [f"{name} ({kind})" for name, kind in wanted if name not in existing]
    kept = [name for name, _ in wanted if name in existing]
    actions = [
        f"find or create the SSH key, network, firewall and placement group labelled "
        f"libresh.org/cluster={spec.name}"
    ]
    if new:
        actions.append(f"create {len(new)} server(s): {', '.join(new)}")
    if kept:
        actions.append(f"keep {len(kept)} server(s) that exist: {', '.join(kept)}")
    actions.append(
        f"install k3s {spec.k3s_version} over SSH where it is missing, write the kubeconfig, "
        "and install the ha infrastructure profile"
    )
    return actions


def scale_actions(cloud: HetznerCloud, spec: ClusterSpec, agents: int) -> list[str]:
    servers = cloud.servers(spec.labels)
    existing = {s.name for s in servers}
    removing = agents_to_remove(servers, agents)
    new = [
        name for role, _, name in wanted_nodes(spec, agents)
        if role == "agent" and name not in existing
    ]  # fmt: skip
    actions = [f"drain and delete agent {s.name}" for s in removing]
    if new:
        kind = spec.agents.server_type
        actions.append(f"create and join {len(new)} agent(s) ({kind}): {', '.join(new)}")
    return actions or [f"change nothing: cluster {spec.name} has {agents} agent(s)"]


def destroy_actions(cloud: HetznerCloud, labels: dict[str, str]) -> list[str]:
    found = [f"server {s.name}" for s in cloud.servers(labels)] + cloud.labelled(labels)
    return [f"delete {item}" for item in found]
