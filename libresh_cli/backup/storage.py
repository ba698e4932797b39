"""Where backups go: one restic repository per cluster, on S3-compatible storage or on a path of
one node. Set once (`libresh backup storage set`), kept in the namespace libresh-system: the
ConfigMap libresh-backup (where) and the Secret libresh-backup (the repository password, made
here, and the S3 keys).

Every namespace that runs backup Jobs gets what they need to reach the repository: the Secret
libresh-backup-repository (restic's environment) and, for a node path, a PersistentVolume
bound to a claim of that namespace (the Pod Security `baseline` of app namespaces forbids
hostPath volumes in pods, not PersistentVolumes an admin tool made)."""

from __future__ import annotations

import base64
import json
import re
import secrets as random_secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from libresh_cli.apps.providers import SYSTEM_NAMESPACE
from libresh_cli.errors import BadInputError, ConflictError, PrerequisiteError
from libresh_cli.kube.client import KubeClient

Manifest = dict[str, Any]
SETTINGS_NAME = "libresh-backup"
REPOSITORY_SECRET = "libresh-backup-repository"  # noqa: S105 - a name
REPOSITORY_CLAIM = "libresh-backup-repository"
REPOSITORY_MOUNT = "/repository"
PASSWORD_KEY = "restic_password"  # noqa: S105 - a key name
LABELS = {"app.kubernetes.io/managed-by": "libresh"}
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class BackupStorage:
    kind: str  # s3 | path
    endpoint: str = ""  # s3: https://s3.example.org
    bucket: str = ""
    prefix: str = "libresh"
    path: str = ""  # path: a directory on the node
    node: str = ""

    def to_dict(self) -> dict[str, str]:
        shown = {k: v for k, v in asdict(self).items() if v}
        if self.kind == "path":
            shown.pop("prefix", None)  # a folder in a bucket: S3 only
        return shown

    @property
    def repository(self) -> str:
        """RESTIC_REPOSITORY as the runner's container sees it."""
        if self.kind == "s3":
            return f"s3:{self.endpoint.rstrip('/')}/{self.bucket}/{self.prefix}"
        return REPOSITORY_MOUNT

    def describe(self) -> str:
        if self.kind == "s3":
            return f"s3 bucket {self.bucket} at {self.endpoint} (prefix {self.prefix})"
        return f"{self.path} on node {self.node}"


@dataclass(frozen=True)
class S3Keys:
    access_key_id: str
    secret_access_key: str


def check_storage(storage: BackupStorage) -> BackupStorage:
    if storage.kind == "s3":
        url = urlsplit(storage.endpoint)
        if url.scheme not in ("https", "http") or not url.netloc:
            raise BadInputError(
                f"--s3-endpoint {storage.endpoint!r} is not an http(s) URL.",
                hint="For example: --s3-endpoint https://s3.fr-par.scw.cloud",
            )
        if not BUCKET.match(storage.bucket):
            raise BadInputError(
                f"--bucket {storage.bucket!r} is not a bucket name (3-63 lowercase letters, "
                "digits, dots and dashes)."
            )
        return storage
    if not storage.path.startswith("/") or "\n" in storage.path or storage.path == "/":
        raise BadInputError(
            f"--path {storage.path!r} must be an absolute directory on the node, not /.",
            hint="For example: --path /var/backups/libresh",
        )
    if not NODE_NAME.match(storage.node):
        raise BadInputError(f"--node {storage.node!r} is not a node name.")
    return storage


def read_storage(kube: KubeClient) -> tuple[BackupStorage | None, dict[str, str]]:
    """(where, secret values); (None, {}) when backups were never set up."""
    configmap = kube.get("v1", "ConfigMap", SETTINGS_NAME, SYSTEM_NAMESPACE)
    if configmap is None:
        return None, {}
    storage = BackupStorage(**json.loads(configmap["data"]["storage.json"]))
    secret = kube.get("v1", "Secret", SETTINGS_NAME, SYSTEM_NAMESPACE)
    data = (secret or {}).get("data", {}) or {}
    return storage, {k: base64.b64decode(v).decode() for k, v in data.items()}


def require_storage(
    kube: KubeClient, hint_skip: str | None = None
) -> tuple[BackupStorage, dict[str, str]]:
    storage, secret_values = read_storage(kube)
    if storage is None or PASSWORD_KEY not in secret_values:
        skip = f", or pass {hint_skip} to go on without a backup" if hint_skip else ""
        raise PrerequisiteError(
            "Backups are not set up on this cluster.",
            hint=f"Set up where they go first (libresh backup storage set --help){skip}.",
        )
    return storage, secret_values


def storage_values(
    kube: KubeClient,
    storage: BackupStorage,
    keys: S3Keys | None,
    imported_password: str | None,
) -> tuple[dict[str, str], bool]:
    """The secret values the storage will be used with, and whether a new repository key was
    made. The key is made once and kept; an imported one (to reach a repository another
    cluster made) never replaces a different key this cluster has: its backups would become
    unreadable."""
    check_storage(storage)
    if storage.kind == "s3" and keys is None:
        raise BadInputError(
            "S3 storage needs its access keys.",
            hint="Give them with --access-key-id and --secret-key-file FILE.",
        )
    _, current = read_storage(kube)
    kept = current.get(PASSWORD_KEY)
    if imported_password and kept and imported_password != kept:
        raise ConflictError(
            "This cluster has a repository key already, and --password-file holds another: "
            "replacing it would make the backups made with it unreadable.",
            hint="Keep the current key (libresh backup key export --file FILE) and leave out "
            "--password-file, or delete the Secret libresh-backup in libresh-system first.",
        )
    values = {PASSWORD_KEY: imported_password or kept or ""}
    made = not values[PASSWORD_KEY]
    if made:
        values[PASSWORD_KEY] = random_secrets.token_urlsafe(32)
    if keys is not None:
        values |= {
            "aws_access_key_id": keys.access_key_id,
            "aws_secret_access_key": keys.secret_access_key,
        }
    return values, made


def save_secret_values(kube: KubeClient, values: Mapping[str, str]) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}})
    kube.apply(_secret(SETTINGS_NAME, SYSTEM_NAMESPACE, values))


def save_storage(kube: KubeClient, storage: BackupStorage, values: Mapping[str, str]) -> None:
    save_secret_values(kube, values)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": SETTINGS_NAME, "namespace": SYSTEM_NAMESPACE, "labels": LABELS},
            "data": {"storage.json": json.dumps(storage.to_dict(), sort_keys=True)},
        }
    )


def repository_objects(
    storage: BackupStorage, secret_values: Mapping[str, str], namespace: str
) -> list[Manifest]:
    """What a namespace needs for its backup Jobs to reach the repository."""
    env = {
        "RESTIC_REPOSITORY": storage.repository,
        "RESTIC_PASSWORD": secret_values[PASSWORD_KEY],
    }
    if storage.kind == "s3":
        env |= {
            "AWS_ACCESS_KEY_ID": secret_values.get("aws_access_key_id", ""),
            "AWS_SECRET_ACCESS_KEY": secret_values.get("aws_secret_access_key", ""),
        }
    objects = [_secret(REPOSITORY_SECRET, namespace, env)]
    if storage.kind == "path":
        objects += _node_path_volume(storage, namespace)
    return objects


def _node_path_volume(storage: BackupStorage, namespace: str) -> list[Manifest]:
    volume = f"libresh-backup-{namespace}"
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume, "labels": LABELS},
            "spec": {
                "capacity": {"storage": "1Ti"},  # not enforced for hostPath; required field
                "accessModes": ["ReadWriteOnce"],
                # The backups outlive the claim: deleting an instance never deletes them.
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": storage.path, "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": namespace, "name": REPOSITORY_CLAIM},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": [storage.node],
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": REPOSITORY_CLAIM, "namespace": namespace, "labels": LABELS},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Ti"}},
            },
        },
    ]


def _secret(name: str, namespace: str, values: Mapping[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }


def ensure_node_exists(kube: KubeClient, node: str) -> None:
    if kube.get("v1", "Node", node) is None:
        names = ", ".join(n["metadata"]["name"] for n in kube.list("v1", "Node"))
        raise BadInputError(
            f"--node {node!r} is not a node of this cluster.", hint=f"Nodes: {names}."
        )
