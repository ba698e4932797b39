"""The cluster file and the pure parts of `cluster create`: no network, no hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from libresh_cli.cluster.hetzner.hosts import Node, interface_of
from libresh_cli.cluster.hetzner.install import node_settings
from libresh_cli.cluster.hetzner.resources import CloudParts, api_endpoint, firewall_rules
from libresh_cli.cluster.hetzner.servers import agents_to_remove
from libresh_cli.cluster.spec import ApiToken, load_spec, parse_spec, read_token
from libresh_cli.concurrency import run_concurrently
from libresh_cli.errors import (
    BadInputError,
    LibreshError,
    OperationFailedError,
    PrerequisiteError,
    UnreachableError,
)
from libresh_cli.hetzner.cloud import LoadBalancerInfo, ServerInfo


@pytest.fixture
def key(tmp_path: Path) -> Path:
    (tmp_path / "id_ed25519").write_text("private")
    public = tmp_path / "id_ed25519.pub"
    public.write_text("ssh-ed25519 AAAAC3Nza me@here\n")
    return public


def document(key: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "coop",
        "locations": ["fsn1", "nbg1"],
        "ssh_key": str(key),
        "servers": {"type": "cx23", "count": 3},
        "agents": {"type": "cx33", "count": 2},
        "allowed_networks": {"ssh": ["203.0.113.7/32"], "api": ["203.0.113.0/24"]},
    }
    data.update(changes)
    return data


def test_a_complete_file(key: Path) -> None:
    spec = parse_spec(document(key), Path("c.yaml"))
    assert spec.ssh_identity == key.with_suffix("")
    assert spec.private_network == "10.0.0.0/16" and spec.subnet == "10.0.0.0/24"
    assert spec.k3s_version == "v1.34.4+k3s1"
    assert [spec.location_of("server", i) for i in (1, 2, 3)] == ["fsn1", "nbg1", "fsn1"]
    assert spec.labels == {"libresh.org/cluster": "coop"}
    assert spec.warnings() == []


def test_every_error_is_named_by_its_field(key: Path) -> None:
    bad = document(
        key,
        name="Coop!",
        servers={"type": "cx22", "count": 0, "size": 1},
        allowed_networks={"ssh": ["300.1.1.1/32"], "api": ["10.0.0.1/8"]},
        private_network="8.8.0.0/16",
        k3s_version="1.34",
        colour="blue",
    )
    with pytest.raises(BadInputError) as raised:
        parse_spec(bad, Path("c.yaml"))
    message = raised.value.message
    for field in (
        "colour: unknown field",
        "name: 'Coop!' is not a cluster name",
        "servers.size: unknown field",
        "servers.count: 0 is not a number from 1 to 10",
        "allowed_networks.ssh[0]: '300.1.1.1/32'",
        "allowed_networks.api[0]: '10.0.0.1/8'",
        "private_network: 8.8.0.0/16 must be a private IPv4 range",
        "k3s_version: '1.34' is not a k3s release",
    ):
        assert field in message, field
    assert "A complete example" in str(raised.value)


def test_ssh_key_must_be_a_readable_public_key(key: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="ssh_key: cannot read"):
        parse_spec(document(key, ssh_key=str(tmp_path / "nope.pub")), Path("c.yaml"))
    with pytest.raises(BadInputError, match="not an OpenSSH public key"):
        parse_spec(document(key, ssh_key=str(key.with_suffix(""))), Path("c.yaml"))


def test_even_servers_and_ssh_from_everywhere_are_warned(key: Path) -> None:
    spec = parse_spec(
        document(
            key,
            servers={"type": "cx22", "count": 4},
            allowed_networks={"ssh": ["0.0.0.0/0"], "api": ["0.0.0.0/0"]},
        ),
        Path("c.yaml"),
    )
    warnings = " ".join(spec.warnings())
    assert "servers.count is 4" in warnings and "odd number" in warnings
    assert "open to the whole internet" in warnings


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "c.yaml"
    broken.write_text("name: [")
    with pytest.raises(BadInputError, match="not valid YAML"):
        load_spec(broken)
    with pytest.raises(BadInputError, match="Cannot read the cluster file"):
        load_spec(tmp_path / "missing.yaml")


def test_token_sources(tmp_path: Path) -> None:
    good = "a" * 64
    assert read_token({"HCLOUD_TOKEN": good}, None) == ApiToken(
        good, "the environment variable HCLOUD_TOKEN"
    )
    assert good not in repr(read_token({"HCLOUD_TOKEN": good}, None))
    with pytest.raises(PrerequisiteError, match="HCLOUD_TOKEN is not set"):
        read_token({}, None)
    path = tmp_path / "t"
    path.write_text(good + "\n")
    path.chmod(0o640)
    with pytest.raises(BadInputError, match="chmod 600"):
        read_token({}, path)
    path.chmod(0o600)
    assert read_token({}, path).source == f"the file {path}"
    path.write_text("not a token")
    with pytest.raises(BadInputError, match=f"the file {path} is not a token"):
        read_token({}, path)


def server(name: str, role: str, index: int, public: str, private: str | None) -> ServerInfo:
    labels = {"libresh.org/role": role, "libresh.org/index": str(index)}
    return ServerInfo(index, name, labels, "running", "fsn1", "cx23", public, private)


def test_firewall_without_a_private_network_opens_node_ports_to_the_nodes_only(key: Path) -> None:
    spec = parse_spec(document(key, private_network="none"), Path("c.yaml"))
    nodes = [
        server("a", "server", 1, "198.51.100.1", None),
        server("b", "agent", 1, "198.51.100.2", None),
    ]
    rules = {(r.protocol, r.port): r.sources for r in firewall_rules(spec, nodes)}
    assert rules[("tcp", "22")] == ("203.0.113.7/32",)
    assert rules[("udp", "51820-51821")] == ("198.51.100.1/32", "198.51.100.2/32")
    assert rules[("tcp", "2379-2380")] == ("198.51.100.1/32", "198.51.100.2/32")
    private = parse_spec(document(key), Path("c.yaml"))
    assert {r.port for r in firewall_rules(private, nodes)} == {"22", "6443", "80", "443", None}


def test_node_settings(key: Path) -> None:
    spec = parse_spec(document(key), Path("c.yaml"))
    balancer = LoadBalancerInfo(1, "coop-api", "203.0.113.50", "10.0.0.254")
    through_balancer = CloudParts(1, 2, "coop", 3, balancer)
    no_host: Any = None  # node_settings never reaches the host
    first = Node(
        server("coop-server-1", "server", 1, "198.51.100.1", "10.0.0.2"),
        no_host,
        private_interface="enp7s0",
    )
    agent = Node(server("coop-agent-1", "agent", 1, "198.51.100.5", "10.0.0.6"), no_host)
    api = api_endpoint(through_balancer, [first.server, agent.server])
    own = node_settings(spec, first, first, api, "t0ken")
    assert own["cluster-init"] is True and "server" not in own
    assert own["tls-san"] == ["203.0.113.50", "10.0.0.254"]
    assert own["flannel-backend"] == "vxlan" and own["flannel-iface"] == "enp7s0"
    assert own["disable"] == ["servicelb", "local-storage"]
    joining = node_settings(spec, agent, first, api, "t0ken")
    assert joining["server"] == "https://10.0.0.2:6443"
    assert joining["node-ip"] == "10.0.0.6" and joining["node-external-ip"] == "198.51.100.5"
    assert "tls-san" not in joining and "disable" not in joining and "cluster-init" not in joining
    # No load balancer (api_access: firewall): the first server's public address, every
    # server's public address on the certificate.
    second = server("coop-server-2", "server", 2, "198.51.100.2", "10.0.0.3")
    direct = api_endpoint(CloudParts(1, 2, "coop", 3, None), [first.server, second, agent.server])
    assert (direct.address, direct.names) == ("198.51.100.1", ("198.51.100.1", "198.51.100.2"))
    assert node_settings(spec, first, first, direct, "t0ken")["tls-san"] == list(direct.names)


def test_api_access_is_a_choice_whose_exposure_is_said(key: Path) -> None:
    assert parse_spec(document(key), Path("c.yaml")).api_access == "firewall"
    public = parse_spec(document(key, api_access="public_load_balancer"), Path("c.yaml"))
    [warning] = [w for w in public.warnings() if "api_access" in w]
    assert "open to the whole internet" in warning and "do not apply to load balancers" in warning
    with pytest.raises(BadInputError, match="api_access: 'private' is not one of firewall"):
        parse_spec(document(key, api_access="private"), Path("c.yaml"))


def test_interface_of_and_agents_to_remove() -> None:
    output = (
        "1: lo    inet 127.0.0.1/8 scope host lo\n"
        "3: enp7s0    inet 10.0.0.3/32 brd 10.0.0.3 scope global dynamic enp7s0\n"
    )
    assert interface_of(output, "10.0.0.3") == "enp7s0"
    assert interface_of(output, "10.0.0.9") is None
    servers = [server(f"a{i}", "agent", i, "x", None) for i in (1, 2, 3)]
    assert [s.name for s in agents_to_remove(servers, 1)] == ["a3", "a2"]
    assert agents_to_remove(servers, 3) == []


def test_run_concurrently_finishes_everything_and_names_every_failure() -> None:
    done: list[str] = []

    def ok() -> int:
        done.append("ok")
        return 1

    def fails(name: str) -> int:
        raise OperationFailedError(f"{name} broke")

    with pytest.raises(LibreshError) as raised:
        run_concurrently({"a": lambda: fails("a"), "b": ok, "c": lambda: fails("c")})
    assert done == ["ok"] and raised.value.exit_code == 1
    assert "2 steps failed" in raised.value.message
    assert "- a: a broke" in raised.value.message and "- c: c broke" in raised.value.message
    assert run_concurrently({"x": ok}) == {"x": 1}

    def lost() -> int:
        raise UnreachableError("connection lost")

    with pytest.raises(LibreshError) as two_lost:
        run_concurrently({"a": lost, "b": lost})
    assert two_lost.value.exit_code == 3  # the first failure's code stands for all


def test_a_deleted_servers_host_key_is_forgotten_even_when_hashed(tmp_path: Path) -> None:
    import subprocess

    from libresh_cli.cluster.hetzner.local import forget_host_key
    from libresh_cli.settings import Paths

    paths = Paths(
        config=tmp_path / "c", data=tmp_path / "d", state=tmp_path / "s", cache=tmp_path / "k"
    )
    known = paths.config / "clusters" / "coop" / "known_hosts"
    known.parent.mkdir(parents=True)
    known.write_text(
        "198.51.100.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLd1\n"
        "198.51.100.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLd2\n"
    )
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], capture_output=True, check=True)
    assert "198.51.100.1" not in known.read_text()  # hashed now
    forget_host_key(paths, "coop", "198.51.100.1")
    lines = known.read_text().splitlines()
    assert len(lines) == 1
    found = subprocess.run(
        ["ssh-keygen", "-F", "198.51.100.2", "-f", str(known)], capture_output=True
    )
    assert found.returncode == 0  # the other server's key is kept
    assert not list(known.parent.glob("*.old"))
