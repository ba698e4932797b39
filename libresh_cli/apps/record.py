"""The instance record: what is installed, kept in the cluster so every admin (and the cron job
on the server) sees the same truth. A ConfigMap in the instance's namespace, labelled so that
one list call finds every instance. It never holds secret values, only their key names."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from libresh_cli.apps.instance import INSTANCE, MANAGED_BY
from libresh_cli.errors import ConflictError, NotFoundError, OperationFailedError

if TYPE_CHECKING:
    from libresh_cli.kube.client import KubeClient

RECORD_NAME = "libresh-instance"
RECORD_LABEL = "libresh.dev/record"
RECORD_SELECTOR = f"{RECORD_LABEL}=instance"
MAX_HISTORY = 100

Ref = tuple[str, str, str]  # apiVersion, kind, name (all in the instance's namespace)


class Status(StrEnum):
    """What libresh last did to an instance (its record's status). Records store the text:
    a status a newer libresh adds is read as text, not refused."""

    INSTALLING = "installing"
    INSTALLED = "installed"
    UPGRADING = "upgrading"
    FAILED = "failed"
    UNINSTALLED = "uninstalled"


class Action(StrEnum):
    """What a history entry records."""

    INSTALL = "install"
    UPGRADE = "upgrade"
    UNINSTALL = "uninstall"
    BACKUP = "backup"
    RESTORE = "restore"


class Result(StrEnum):
    OK = "ok"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"


@dataclass
class HistoryEntry:
    action: str  # an Action
    version_from: str | None
    version_to: str
    result: str  # a Result
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
    status: str = Status.INSTALLING  # a Status
    services: dict[str, str] = field(default_factory=dict)  # kind -> provider, pinned
    last_error: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    # The upgrade step under way: {"from", "to", "backup"} (the backup taken before it, or
    # None with --no-backup). Set before the step changes anything, cleared when it ends
    # (done or rolled back): still set at the next run means the step was interrupted, and
    # that run restores this backup before anything else (libresh_cli/apps/upgrade.py).
    pending_upgrade: dict[str, Any] | None = None
    # role -> instance: the other instances this one uses (app.yaml `uses`), kept so that
    # upgrades, restores and clones wire the same ones (libresh_cli/apps/links.py).
    uses: dict[str, str] = field(default_factory=dict)
    # The ConfigMap's resourceVersion this record was read from or last written as: the
    # next write is refused (409) if someone else wrote in between. Not stored in the data.
    resource_version: str | None = field(default=None, compare=False, repr=False)

    def add_history(self, entry: HistoryEntry) -> None:
        self.history = [*self.history, entry][-MAX_HISTORY:]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["resource_version"]
        return data

    def to_configmap(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": RECORD_NAME,
            "namespace": self.name,
            "labels": {MANAGED_BY: "libresh", INSTANCE: self.name, RECORD_LABEL: "instance"},
        }
        if self.resource_version:
            # Server-side apply takes it as a precondition: compare and swap.
            metadata["resourceVersion"] = self.resource_version
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": {"record.json": json.dumps(self.to_dict(), indent=1, sort_keys=True)},
        }

    @classmethod
    def from_configmap(cls, configmap: dict[str, Any]) -> InstanceRecord:
        """Read tolerantly: fields a newer libresh added are ignored; a record that is not
        what libresh writes (edited by hand, cut short) is refused by name, field included,
        so one bad record never stops the others from being listed or upgraded."""
        namespace = str((configmap.get("metadata") or {}).get("namespace", "?"))
        try:
            data = json.loads((configmap.get("data") or {}).get("record.json", ""))
            record = cls._from_dict(data)
        except (ValueError, TypeError, KeyError) as error:
            raise RecordUnreadableError(namespace, str(error)) from error
        version = (configmap.get("metadata") or {}).get("resourceVersion")
        record.resource_version = str(version) if version else None
        return record

    @classmethod
    def _from_dict(cls, data: Any) -> InstanceRecord:
        if not isinstance(data, dict):
            raise TypeError("the record is not a JSON object")
        known = _known(cls, data)
        for key in ("name", "app", "version"):
            if not isinstance(known.get(key), str):
                raise TypeError(f"{key} is missing or not text")
        if not isinstance(known.get("pending_upgrade") or {}, dict):
            raise TypeError("pending_upgrade is not an object")
        known.pop("resource_version", None)
        for key, kind in (
            ("params", dict),
            ("secret_keys", list),
            ("services", dict),
            ("uses", dict),
        ):
            if not isinstance(known.get(key, kind()), kind):
                raise TypeError(f"{key} is not a {kind.__name__}")
        known["inventory"] = [_ref(ref) for ref in _list(known.get("inventory", []), "inventory")]
        known["history"] = [
            HistoryEntry(**_known(HistoryEntry, entry))
            for entry in _list(known.get("history", []), "history")
        ]
        return cls(**known)


class RecordUnreadableError(OperationFailedError):
    def __init__(self, namespace: str, reason: str) -> None:
        super().__init__(
            f"The record of {namespace} (ConfigMap {RECORD_NAME}) cannot be read: {reason}.",
            hint=f"Look at it with kubectl -n {namespace} get configmap {RECORD_NAME} -o yaml; "
            "libresh writes it again at the next install or upgrade of that instance.",
        )
        self.namespace = namespace


def _known(kind: type, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"an entry of {kind.__name__} is not a JSON object")
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in data.items() if k in names}


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{key} is not a list")
    return value


def _ref(value: Any) -> Ref:
    if not (isinstance(value, list | tuple) and len(value) == 3):
        raise TypeError("an inventory entry is not [apiVersion, kind, name]")
    if not all(isinstance(part, str) for part in value):
        raise TypeError("an inventory entry is not [apiVersion, kind, name]")
    return (value[0], value[1], value[2])


def refs_of(objects: list[dict[str, Any]]) -> list[Ref]:
    return [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects]


# -- kept in the cluster: a ConfigMap in the instance's namespace ------------------------


def read_record(kube: KubeClient, name: str) -> InstanceRecord | None:
    configmap = kube.get("v1", "ConfigMap", RECORD_NAME, name)
    return InstanceRecord.from_configmap(configmap) if configmap else None


def save_record(kube: KubeClient, record: InstanceRecord) -> None:
    """Write the record if nobody wrote it since it was read (compare and swap on its
    resourceVersion); the record then carries the new one, for its next write."""
    from libresh_cli.kube.client import KubeApiError  # the adapter, when a record is written

    try:
        written = kube.apply(record.to_configmap())
    except KubeApiError as error:
        if error.status != 409:
            raise
        raise ConflictError(
            f"The record of {record.name} was changed by someone else while this run worked "
            "on it; this run's view of it is out of date, so it was not written.",
            hint=f"See the instance as it is now: libresh status {record.name}",
        ) from error
    record.resource_version = str(written["metadata"]["resourceVersion"])


def require_record(kube: KubeClient, name: str) -> InstanceRecord:
    record = read_record(kube, name)
    if record is None:
        raise NotFoundError(
            f"No instance named '{name}' on this cluster.",
            hint="`libresh list` shows the installed instances.",
        )
    return record
