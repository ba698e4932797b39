"""The instance record: what is installed, kept in the cluster so every admin (and the cron job
on the server) sees the same truth. A ConfigMap in the instance's namespace, labelled so that
one list call finds every instance. It never holds secret values, only their key names."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from libresh_cli.apps.render import INSTANCE, MANAGED_BY

RECORD_NAME = "libresh-instance"
RECORD_LABEL = "libresh.dev/record"
RECORD_SELECTOR = f"{RECORD_LABEL}=instance"
MAX_HISTORY = 100

Ref = tuple[str, str, str]  # apiVersion, kind, name (all in the instance's namespace)


@dataclass
class HistoryEntry:
    action: str  # install | upgrade | rollback | uninstall
    version_from: str | None
    version_to: str
    result: str  # ok | failed | rolled-back
    message: str = ""
    at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


@dataclass
class InstanceRecord:
    name: str
    app: str
    version: str
    params: dict[str, Any]
    secret_keys: list[str]
    inventory: list[Ref]
    status: str = "installing"  # installing | installed | upgrading | failed | uninstalled
    services: dict[str, str] = field(default_factory=dict)  # kind -> provider, pinned
    last_error: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)

    def add_history(self, entry: HistoryEntry) -> None:
        self.history = [*self.history, entry][-MAX_HISTORY:]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_configmap(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": RECORD_NAME,
                "namespace": self.name,
                "labels": {MANAGED_BY: "libresh", INSTANCE: self.name, RECORD_LABEL: "instance"},
            },
            "data": {"record.json": json.dumps(self.to_dict(), indent=1, sort_keys=True)},
        }

    @classmethod
    def from_configmap(cls, configmap: dict[str, Any]) -> InstanceRecord:
        data = json.loads(configmap["data"]["record.json"])
        data["inventory"] = [tuple(ref) for ref in data.get("inventory", [])]
        data["history"] = [HistoryEntry(**entry) for entry in data.get("history", [])]
        return cls(**data)


def refs_of(objects: list[dict[str, Any]]) -> list[Ref]:
    return [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects]
