"""The servers: one a node the file asks for, made when missing, each running."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from libresh_cli.cluster.hetzner.report import CreateReport
from libresh_cli.cluster.hetzner.resources import INDEX, ROLE, CloudParts
from libresh_cli.cluster.spec import ClusterSpec
from libresh_cli.concurrency import run_concurrently
from libresh_cli.errors import OperationFailedError
from libresh_cli.hetzner.cloud import HetznerCloud, ServerInfo, ServerRequest
from libresh_cli.progress import Reporter

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


def wanted_nodes(spec: ClusterSpec, agents: int | None = None) -> list[tuple[str, int, str]]:
    """(role, index, name) of every node the file asks for."""
    count = spec.agents.count if agents is None else agents
    return [("server", i, n) for i, n in enumerate(spec.node_names("server"), 1)] + [
        ("agent", i, f"{spec.name}-agent-{i}") for i in range(1, count + 1)
    ]


def agents_to_remove(servers: list[ServerInfo], count: int) -> list[ServerInfo]:
    """The highest-numbered agents beyond `count`, last first."""
    agents = sorted((s for s in servers if s.role == "agent"), key=lambda s: s.index)
    return list(reversed(agents[count:]))


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
        report.new_servers.update(made)
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
