"""The HA tests' lab: SSH test hosts on a shared private network playing Hetzner servers, and
the FAKE Hetzner API (tests/fakes/hetzner_api.py) handing them out as it creates servers.
Shared by tests/integration/test_cluster_hetzner.py and benchmarks/ha.py."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.hetzner_api import FakeHetzner, PoolAddress
from tests.integration.sshhosts import PrivateNetwork, TestHost, available

LIBRESH = str(Path(sys.executable).parent / "libresh")


@dataclass
class HaLab:
    hosts: list[TestHost]
    network: PrivateNetwork
    fake: FakeHetzner
    base: Path
    token: str

    @property
    def client_dir(self) -> Path:
        return self.hosts[0].client_dir

    @property
    def config_home(self) -> Path:
        return self.base / "config"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "LIBRESH_SSH_CONFIG": str(self.hosts[0].ssh_config),
            "XDG_CONFIG_HOME": str(self.config_home),
            "HCLOUD_TOKEN": self.token,
            "LIBRESH_HCLOUD_ENDPOINT": self.fake.endpoint,
            "NO_COLOR": "1",
            **extra,
        }
        return env

    def cluster_file(
        self, name: str, servers: int, agents: int, server_type: str = "cx23", **fields: Any
    ) -> Path:
        document = {
            "name": name,
            "provider": "hetzner",
            "locations": ["fsn1", "nbg1", "hel1"],
            "image": "debian-12",
            "ssh_key": str(self.client_dir / "id_ed25519.pub"),
            "servers": {"type": server_type, "count": servers},
            "agents": {"type": "cx33", "count": agents},
            "allowed_networks": {"ssh": ["10.77.0.0/16"], "api": ["10.77.0.0/16", "127.0.0.0/8"]},
            "private_network": f"{self.network.prefix}.0/24",
            "email": "admin@example.org",
            **fields,
        }
        path = self.base / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document))
        return path

    def run(
        self, *args: str, timeout: float = 400, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LIBRESH, *args],
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def create_command(self, cluster_file: Path, *extra: str) -> list[str]:
        return [
            LIBRESH, "-o", "json", "cluster", "create", "-f", str(cluster_file),
            "--install-script", str(self.hosts[0].standin_installer()), *extra,
        ]  # fmt: skip

    def create(self, cluster_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(*self.create_command(cluster_file, *extra)[1:])

    def host_of(self, server_name: str) -> TestHost:
        for server in self.fake.of_kind("servers"):
            if server["name"] == server_name:
                address = server["public_net"]["ipv4"]["ip"]
                return next(h for h in self.hosts if h.address == address)
        raise KeyError(server_name)

    def timeline(self, host: TestHost) -> list[tuple[str, float]]:
        path = host.var_lib / "rancher" / "standin-timeline"
        if not path.exists():
            return []
        return [(e, float(t)) for e, t in (line.split() for line in path.read_text().splitlines())]


@contextmanager
def ha_lab(indices: list[int], base: Path, **fake_options: Any) -> Iterator[HaLab]:
    problem = available()
    if problem:
        raise RuntimeError(f"Cannot make SSH test hosts: {problem}")
    # Each lab its own network and load balancer address: a module's lab may outlive a test's.
    network = PrivateNetwork(f"10.79.{indices[0]}", str(indices[0]))
    network.create()
    fake_options.setdefault("load_balancer_addresses", [f"127.0.0.{indices[0]}"])
    hosts: list[TestHost] = []
    fake: FakeHetzner | None = None
    try:
        for index in indices:
            host = TestHost(index, base / f"host{index}", base / "client")
            hosts.append(host)
            host.create()
            network.attach(host)
        pool = [PoolAddress(h.address, network.address_of(h)) for h in hosts]
        fake = FakeHetzner(secrets.token_hex(32), pool, **fake_options).start()
        yield HaLab(hosts, network, fake, base, fake.token)
    finally:
        if fake is not None:
            fake.stop()
        for host in hosts:
            host.destroy()
        network.destroy()
