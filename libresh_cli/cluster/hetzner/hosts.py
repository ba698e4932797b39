"""The servers as SSH hosts: connected (host keys checked against the cluster's own
known_hosts), cloud-init waited for, the preflight run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from libresh_cli.cluster.bootstrap import gather_facts
from libresh_cli.cluster.hetzner.local import cluster_dir, remember_trusted, trusted_servers
from libresh_cli.cluster.preflight import HostFacts, assess
from libresh_cli.cluster.spec import ClusterSpec
from libresh_cli.concurrency import run_concurrently
from libresh_cli.errors import (
    BadInputError,
    LibreshError,
    OperationFailedError,
    PrerequisiteError,
    UnreachableError,
)
from libresh_cli.hetzner.cloud import ServerInfo
from libresh_cli.progress import Reporter
from libresh_cli.remote.ssh import SshHost, SshTarget, UnknownHostKeyError
from libresh_cli.settings import Paths, make_private_dirs

SSH_WAIT = 300.0  # a new server's sshd comes up within a minute or two


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
    trusted_before = trusted_servers(paths, spec.name)
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
    remember_trusted(paths, spec.name, trusted_before | set(nodes))
    reporter.done(f"Connected to {len(nodes)} server(s)")
    return nodes


def _connect_waiting(host: SshHost, name: str, *, new: bool, tofu: bool, known_hosts: Path) -> None:
    deadline = time.monotonic() + (SSH_WAIT if new else 0)
    while True:
        try:
            host.connect(None, accept_new=tofu)
            return
        except UnknownHostKeyError as error:
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
