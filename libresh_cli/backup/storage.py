"""Where backups go: S3-compatible storage or a path on one node, set once (`libresh backup
storage set`) and kept in the namespace libresh-system: the ConfigMap libresh-backup (where)
and the Secret libresh-backup (the cluster's repository key, made here, and the S3 keys).

Each instance has a restic repository of its own, `<prefix>/<instance>` in the bucket or
`<path>/<instance>` on the node, encrypted with a key of its own derived from the cluster's
(instance_password): `libresh backup key export` (the one cluster key) still opens every
instance's backups after the cluster is lost, and an app namespace only ever sees its own
instance's key. Next to them `<prefix>/libresh-system` (STORAGE_CHECK), a repository holding
nothing, made by `storage set`: it proves the storage works and was made with this cluster's
key, and (for a path) that the disk is mounted, before an instance's repository is made.

What a runner Job needs to reach a repository (restic's environment: the repository_env) is
a Secret made just before that Job and deleted when it ends, owned by it (so the garbage
collector removes it if libresh stops first); an instance's backup schedule alone keeps one,
libresh-backup-schedule, with that instance's key (and the S3 keys, which are bucket-wide:
per-instance S3 credentials are not made). For a node path a namespace gets a
PersistentVolume onto its own instance's directory only, bound to a claim of that namespace
(the Pod Security `baseline` of app namespaces forbids hostPath volumes in pods, not
PersistentVolumes an admin tool made); libresh-system's is onto the whole path: it makes the
instances' repositories and reads those of instances this cluster does not have."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets as random_secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from libresh_cli.errors import BadInputError, ConflictError, PrerequisiteError
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.store import SYSTEM_NAMESPACE, SettingsStore, secret_manifest

Manifest = dict[str, Any]
SETTINGS_NAME = "libresh-backup"
SCHEDULE_SECRET = "libresh-backup-schedule"  # noqa: S105 - a name
REPOSITORY_CLAIM = "libresh-backup-repository"
REPOSITORY_MOUNT = "/repository"
PASSWORD_KEY = "restic_password"  # noqa: S105 - a key name
KEY_CONTEXT = "libresh-backup/v1/"
STORAGE_CHECK = SYSTEM_NAMESPACE  # a reserved name: never an instance's
REPOSITORY_LABEL = "libresh.dev/backup-repository"  # on restic's Secrets: whose repository
LABELS = {"app.kubernetes.io/managed-by": "libresh"}
SETTINGS = SettingsStore(SETTINGS_NAME, "storage.json", SETTINGS_NAME)
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

    def repository(self, instance: str, *, whole_storage: bool = False) -> str:
        """RESTIC_REPOSITORY of the instance's repository as a runner sees it: for a node
        path, the volume of the namespace is that directory, or (`whole_storage`, in
        libresh-system) the whole path."""
        if self.kind == "s3":
            return f"s3:{self.endpoint.rstrip('/')}/{self.bucket}/{self.prefix}/{instance}"
        return f"{REPOSITORY_MOUNT}/{instance}" if whole_storage else REPOSITORY_MOUNT

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
    document, secret_values = SETTINGS.read(kube)
    if document is None:
        return None, {}
    return BackupStorage(**document), secret_values


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
    SETTINGS.write_secrets(kube, values)


def save_storage(kube: KubeClient, storage: BackupStorage, values: Mapping[str, str]) -> None:
    # The key first: a reader never finds storage set without it.
    SETTINGS.write(kube, storage.to_dict(), values)


def instance_password(cluster_key: str, instance: str) -> str:
    """The key of one instance's repository: HMAC-SHA256 of the cluster key over
    "libresh-backup/v1/INSTANCE", URL-safe base64. Anyone with the cluster key can compute
    it; nobody can go back from it to the cluster key or to another instance's."""
    digest = hmac.new(
        cluster_key.encode(), (KEY_CONTEXT + instance).encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def repository_env(
    storage: BackupStorage,
    secret_values: Mapping[str, str],
    instance: str,
    *,
    whole_storage: bool = False,
) -> dict[str, str]:
    """restic's environment for the repository of `instance`, and nothing that opens another:
    its location, its own key, the S3 keys; LIBRESH_REPOSITORY_OF names whose it is (the
    runner refuses to work on another instance's backups with it)."""
    env = {
        "RESTIC_REPOSITORY": storage.repository(instance, whole_storage=whole_storage),
        "RESTIC_PASSWORD": instance_password(secret_values[PASSWORD_KEY], instance),
        "LIBRESH_REPOSITORY_OF": instance,
    }
    if storage.kind == "s3":
        env |= {
            "AWS_ACCESS_KEY_ID": secret_values.get("aws_access_key_id", ""),
            "AWS_SECRET_ACCESS_KEY": secret_values.get("aws_secret_access_key", ""),
        }
    return env


REPOSITORIES_NAME = "libresh-backup-repositories"


def made_repositories(kube: KubeClient) -> dict[str, str]:
    """The instances whose repository libresh made (or found) on the current storage, with
    when: a ConfigMap of libresh-system, emptied when the storage changes."""
    configmap = kube.get("v1", "ConfigMap", REPOSITORIES_NAME, SYSTEM_NAMESPACE)
    return dict((configmap or {}).get("data") or {})


def save_made_repositories(kube: KubeClient, made: Mapping[str, str]) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": REPOSITORIES_NAME,
                "namespace": SYSTEM_NAMESPACE,
                "labels": LABELS,
            },
            "data": dict(sorted(made.items())),
        }
    )


def repository_secret(
    name: str, namespace: str, env: Mapping[str, str], owner: Mapping[str, Any] | None = None
) -> Manifest:
    """The Secret a runner reads restic's environment from; owned by its Job (or the
    schedule's CronJob) when given, so it goes with it."""
    secret = _secret(name, namespace, env)
    secret["metadata"]["labels"] = {**LABELS, REPOSITORY_LABEL: env["LIBRESH_REPOSITORY_OF"]}
    if owner is not None:
        secret["metadata"]["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    return secret


def repository_volume(
    storage: BackupStorage, namespace: str, instance: str | None, claim: str = REPOSITORY_CLAIM
) -> list[Manifest]:
    """For a node path: the PersistentVolume and claim that give `namespace` the directory of
    `instance`'s repository, or (None) the whole path; nothing for S3."""
    if storage.kind != "path":
        return []
    path = storage.path.rstrip("/") + (f"/{instance}" if instance else "")
    suffix = "" if claim == REPOSITORY_CLAIM else "-" + claim.removeprefix("libresh-backup-")
    return _node_path_volume(storage, namespace, path, f"libresh-backup-{namespace}{suffix}", claim)


def _node_path_volume(
    storage: BackupStorage, namespace: str, path: str, volume: str, claim: str
) -> list[Manifest]:
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
                "hostPath": {"path": path, "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": namespace, "name": claim},
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
            "metadata": {"name": claim, "namespace": namespace, "labels": LABELS},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Ti"}},
            },
        },
    ]


def _secret(name: str, namespace: str, values: Mapping[str, str]) -> Manifest:
    return secret_manifest(name, namespace, values, LABELS)


def ensure_node_exists(kube: KubeClient, node: str) -> None:
    if kube.get("v1", "Node", node) is None:
        names = ", ".join(n["metadata"]["name"] for n in kube.list("v1", "Node"))
        raise BadInputError(
            f"--node {node!r} is not a node of this cluster.", hint=f"Nodes: {names}."
        )
