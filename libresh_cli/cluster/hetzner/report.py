"""What `cluster create` (and `scale`, which runs it) is asked, and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from libresh_cli.cluster.bootstrap import InstallSource
from libresh_cli.hetzner.cloud import ServerInfo


@dataclass(frozen=True)
class CreateOptions:
    source: InstallSource = field(default_factory=InstallSource)
    concurrent_joins: bool = True  # False only to measure what concurrency saves


@dataclass
class CreateReport:
    cluster: str
    created: list[str] = field(default_factory=list)  # cloud resources made by this run
    servers: list[ServerInfo] = field(default_factory=list)
    trusted_keys: dict[str, list[str]] = field(default_factory=dict)  # server -> fingerprints
    k3s: dict[str, str] = field(default_factory=dict)  # node -> what was done
    kubeconfig: str = ""
    network: str | None = None  # the private network's name (the hcloud charts need it)
    context: str = ""
    api_server: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    # The servers this run made (their sshd may not be up yet); not in the report's document.
    new_servers: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "created": self.created,
            "servers": [s.to_dict() for s in self.servers],
            "trusted_host_keys": self.trusted_keys,
            "k3s": self.k3s,
            "kubeconfig": self.kubeconfig,
            "context": self.context,
            "api_server": self.api_server,
            "warnings": self.warnings,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }
