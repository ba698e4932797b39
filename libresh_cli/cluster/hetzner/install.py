"""k3s on the nodes: the join token, each node's config.yaml settings, the installer; the first
server (cluster-init), then every other node at the same time."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from libresh_cli.cluster import k3s, kubeconfig
from libresh_cli.cluster.bootstrap import INSTALLER_TIMEOUT, InstallSource, installer_script
from libresh_cli.cluster.hetzner.hosts import Node
from libresh_cli.cluster.hetzner.local import cluster_dir
from libresh_cli.cluster.hetzner.report import CreateOptions, CreateReport
from libresh_cli.cluster.hetzner.resources import ApiEndpoint
from libresh_cli.cluster.spec import ClusterSpec
from libresh_cli.concurrency import run_concurrently
from libresh_cli.errors import OperationFailedError
from libresh_cli.progress import Reporter
from libresh_cli.settings import Paths, write_private_file


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
