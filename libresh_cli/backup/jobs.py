"""The Jobs and CronJobs that run the backup runner: pure functions from an instance to
manifests.

The runner needs a shell, pg_dump/psql and restic. The container is the PostgreSQL image the
embedded service runs (pg_dump of the same major, and already on the node); restic, a static
binary, is copied in from the official restic image by an init container."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libresh_cli.apps.instance import INSTANCE, MANAGED_BY
from libresh_cli.apps.model import App
from libresh_cli.apps.record import RECORD_NAME
from libresh_cli.apps.render import CREDENTIALS_SECRET
from libresh_cli.backup.runner import runner_script
from libresh_cli.backup.storage import (
    REPOSITORY_CLAIM,
    REPOSITORY_MOUNT,
    SCHEDULE_SECRET,
    BackupStorage,
)

Manifest = dict[str, Any]
RUNNER_IMAGE = "docker.io/library/postgres:16.6-alpine"  # as services/postgres-embedded.yaml
RESTIC_IMAGE = "docker.io/restic/restic:0.18.1"
RUNNER_CONFIGMAP = "libresh-backup-runner"
RUNNER_LABEL = "libresh.dev/backup-runner"  # its value: the action
KEEP_FINISHED_SECONDS = 7 * 24 * 3600
VOLUMES_DIR = "/data"
DATABASES_DIR = "/databases"
META_DIR = "/meta"
# Memory-backed volumes (they count as the pod's memory): the runner's own files, and the
# staged record and Secrets (a ConfigMap and Secrets, 1 MiB each at most).
WORK_SIZE = "64Mi"
META_STAGE_SIZE = "16Mi"


@dataclass(frozen=True)
class Target:
    """What one runner works on: an instance, or (for `init`) only the repository."""

    name: str  # the namespace the Job runs in
    app: str = ""
    version: str = ""
    volumes: tuple[str, ...] = ()  # PersistentVolumeClaims, in the app's backup.volumes
    databases: tuple[str, ...] = ()  # backing services dumped (backup.databases)
    services: tuple[str, ...] = ()  # every backing service: their Secrets are kept
    # Labels of the pods that mount the volumes while the app runs (a workload's selector):
    # a scheduled runner must go to their node (see libresh_cli/apps/placement.py).
    volume_users: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, name: str, app: App, version: str) -> Target:
        return cls(
            name,
            app.name,
            version,
            app.backup_volumes,
            tuple(d for d in app.backup_databases if d in app.requires),
            app.requires,
        )


@dataclass(frozen=True)
class Retention:
    daily: int = 7
    weekly: int = 4
    monthly: int = 6


def runner_configmap(namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": RUNNER_CONFIGMAP,
            "namespace": namespace,
            "labels": {MANAGED_BY: "libresh"},
        },
        "data": {"backup-runner.sh": runner_script().read_text()},
    }


def job_name(action: str, backup_id: str) -> str:
    return f"libresh-{action}-{backup_id.lower()}"[:63].rstrip("-")


def _env(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _labels(target: Target, action: str) -> dict[str, str]:
    return {MANAGED_BY: "libresh", INSTANCE: target.name, RUNNER_LABEL: action}


Mount = tuple[Manifest, Manifest]  # (the container's volumeMount, the pod's volume)
DATA_ACTIONS = ("backup", "restore", "scheduled")  # the runs that read or write the data
META_ACTIONS = ("backup", "scheduled")  # the runs that stage the record and Secrets


def runner_pod_spec(
    target: Target,
    storage: BackupStorage,
    action: str,
    env: dict[str, str],
    repository_secret: str,
    claim: str = REPOSITORY_CLAIM,
) -> Manifest:
    """The pod that runs `action` (backup, restore, snapshots, forget, scheduled, init),
    restic's environment from the Secret `repository_secret` and, for a node path, the
    repository's directory from the volume claim `claim`."""
    mounts = _runner_mounts() + _repository_mounts(storage, claim)
    if action in DATA_ACTIONS:
        mounts += _data_mounts(target)
    if action in META_ACTIONS:
        mounts += _meta_mounts(target)
    spec: Manifest = {
        "restartPolicy": "Never",
        # Nothing in this pod talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        "initContainers": [
            {
                "name": "restic",
                "image": RESTIC_IMAGE,
                "command": ["cp", "/usr/bin/restic", "/tools/restic"],
                "volumeMounts": [{"name": "tools", "mountPath": "/tools"}],
            }
        ],
        "containers": [
            {
                "name": "runner",
                "image": RUNNER_IMAGE,
                "command": ["sh", "/runner/backup-runner.sh"],
                "env": _env(_runner_env(target, action, env)),
                "envFrom": [{"secretRef": {"name": repository_secret}}],
                "volumeMounts": [mount for mount, _ in mounts],
                # root: it reads and restores every file of the volumes with its owner.
                "securityContext": {"runAsUser": 0},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ],
        "volumes": [volume for _, volume in mounts],
    }
    if action in DATA_ACTIONS and target.volumes and target.volume_users:
        spec["affinity"] = _with_the_volumes(target)
    return spec


def _mount(name: str, path: str, volume: Manifest, read_only: bool = False) -> Mount:
    mount: Manifest = {"name": name, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    return mount, {"name": name, **volume}


def _runner_mounts() -> list[Mount]:
    """/work (TMPDIR) holds what the runner itself writes, Secrets among them (the staged
    record and Secrets of a backup without volumes, a `meta` run's unpacked record): in
    memory, never on the node's disk. restic's cache (/work/cache) and its temporary pack
    files (the runner puts them in the cache's tmp/) can be large: a disk volume mounted
    inside it."""
    return [
        _mount("tools", "/tools", {"emptyDir": {}}),
        _mount("runner", "/runner", {"configMap": {"name": RUNNER_CONFIGMAP}}),
        _mount("work", "/work", {"emptyDir": {"medium": "Memory", "sizeLimit": WORK_SIZE}}),
        _mount("cache", "/work/cache", {"emptyDir": {}}),
    ]


def _repository_mounts(storage: BackupStorage, claim: str) -> list[Mount]:
    if storage.kind != "path":
        return []  # S3: reached over the network
    return [_mount("repository", REPOSITORY_MOUNT, {"persistentVolumeClaim": {"claimName": claim}})]


def _data_mounts(target: Target) -> list[Mount]:
    """The instance's volumes, and the connection Secrets of the databases it dumps."""
    volumes = [
        _mount(
            f"data-{volume}",
            f"{VOLUMES_DIR}/{volume}",
            {"persistentVolumeClaim": {"claimName": volume}},
        )
        for volume in target.volumes
    ]
    databases = [
        _mount(
            f"db-{database}",
            f"{DATABASES_DIR}/{database}",
            {"secret": {"secretName": f"libresh-{database}"}},
            read_only=True,
        )
        for database in target.databases
    ]
    return volumes + databases


def _meta_mounts(target: Target) -> list[Mount]:
    """The record and Secrets, staged beside the volumes (one snapshot holds both): that
    place is memory too, not the container's root filesystem."""
    stage = {"emptyDir": {"medium": "Memory", "sizeLimit": META_STAGE_SIZE}}
    mounts = [
        _mount("meta-stage", f"{VOLUMES_DIR}/.libresh-meta", stage),
        _mount(
            "record", f"{META_DIR}/record", {"configMap": {"name": RECORD_NAME}}, read_only=True
        ),
    ]
    for secret in (CREDENTIALS_SECRET, *(f"libresh-{kind}" for kind in target.services)):
        mounts.append(
            _mount(
                f"meta-{secret}",
                f"{META_DIR}/secrets/{secret}",
                {"secret": {"secretName": secret, "optional": True}},
                read_only=True,
            )
        )
    return mounts


def _runner_env(target: Target, action: str, env: dict[str, str]) -> dict[str, str]:
    return {
        "LIBRESH_ACTION": action,
        "LIBRESH_INSTANCE": target.name,
        "LIBRESH_APP": target.app,
        "LIBRESH_VERSION": target.version,
        "LIBRESH_VOLUMES_DIR": VOLUMES_DIR,
        "LIBRESH_VOLUMES": " ".join(target.volumes),
        "LIBRESH_DATABASES_DIR": DATABASES_DIR,
        "LIBRESH_DATABASES": " ".join(target.databases),
        "LIBRESH_RESULT_FILE": "/dev/termination-log",
        "PATH": "/tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TMPDIR": "/work",
        "RESTIC_CACHE_DIR": "/work/cache",
        **({"LIBRESH_META_DIR": META_DIR} if action in META_ACTIONS else {}),
        **env,
    }


def _with_the_volumes(target: Target) -> Manifest:
    """A ReadWriteOnce volume can only be mounted on the node that has it: go where the pods
    using it are. Required, not preferred: elsewhere the runner would wait in "Multi-Attach
    error" until its deadline. (One-off Jobs are pinned to that node by name when they are
    made: libresh_cli/apps/placement.py.)"""
    return {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": dict(target.volume_users)},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }


def runner_job(
    target: Target,
    storage: BackupStorage,
    action: str,
    run_id: str,
    env: dict[str, str],
    timeout: int,
    claim: str = REPOSITORY_CLAIM,
) -> Manifest:
    """A one-off runner Job. Its repository Secret has the Job's name: made by run_runner
    (libresh_cli/backup/service.py) once the Job exists, owned by it, deleted when it ends."""
    labels = _labels(target, action)
    name = job_name(action, run_id)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": target.name, "labels": labels},
        "spec": {
            "backoffLimit": 0,  # a retry is the next `libresh backup`, not a silent second run
            "activeDeadlineSeconds": timeout,
            "ttlSecondsAfterFinished": KEEP_FINISHED_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": runner_pod_spec(target, storage, action, env, name, claim),
            },
        },
    }


SCHEDULE_NAME = "libresh-backup"
HOOK_PREFIX = "hook-"  # the names of what scheduled steps add to the runner's pod
# Init containers have no probes, lifecycle handlers or restart policy of their own (one with
# restartPolicy would be a sidecar, left running beside the runner).
NOT_IN_INIT_CONTAINERS = ("lifecycle", "restartPolicy")
# Pod-level settings of the app's pod that an init container can hold itself.
CARRIED_POD_SECURITY = ("runAsUser", "runAsGroup", "runAsNonRoot")


@dataclass(frozen=True)
class ScheduledStep:
    """A pre_backup step run before each scheduled backup (`scheduled: true`): its name, and
    the pod it runs in as a hook Job (libresh_cli/apps/hooks.py hook_pod_spec)."""

    name: str
    pod: Manifest


def schedule_cronjob(
    target: Target,
    storage: BackupStorage,
    cron: str,
    retention: Retention,
    timeout: int,
    steps: Sequence[ScheduledStep] = (),
) -> Manifest:
    """The CronJob of `libresh backup schedule`: the runner, after the app's scheduled
    pre_backup steps (init containers, in order: a failing step stops the run before the
    runner starts). No post_backup step runs after it."""
    labels = _labels(target, "scheduled")
    env = {
        "LIBRESH_REASON": "scheduled",
        "LIBRESH_KEEP_DAILY": str(retention.daily),
        "LIBRESH_KEEP_WEEKLY": str(retention.weekly),
        "LIBRESH_KEEP_MONTHLY": str(retention.monthly),
    }
    pod = runner_pod_spec(target, storage, "scheduled", env, SCHEDULE_SECRET)
    for step in steps:
        _add_step(pod, step)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": SCHEDULE_NAME, "namespace": target.name, "labels": labels},
        "spec": {
            "schedule": cron,
            # In UTC whatever the node's clock zone says (CronJob timeZone, stable since
            # Kubernetes 1.27): what `libresh backup schedule` prints is what runs.
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",  # never two backups of one instance at once
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": timeout,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": pod,
                    },
                },
            },
        },
    }


def retention_of(cronjob: Manifest) -> Retention:
    """The retention a schedule was made with (its runner's environment)."""
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    runner = next(c for c in pod["containers"] if c["name"] == "runner")
    env = {e["name"]: e.get("value") for e in runner.get("env", [])}
    default = Retention()
    return Retention(
        int(env.get("LIBRESH_KEEP_DAILY") or default.daily),
        int(env.get("LIBRESH_KEEP_WEEKLY") or default.weekly),
        int(env.get("LIBRESH_KEEP_MONTHLY") or default.monthly),
    )


def scheduled_step_names(cronjob: Manifest) -> list[str]:
    """The app's steps a schedule runs before its backups, in order."""
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return [
        c["name"].removeprefix(HOOK_PREFIX)
        for c in pod.get("initContainers", [])
        if c["name"].startswith(HOOK_PREFIX)
    ]


def _add_step(pod: Manifest, step: ScheduledStep) -> None:
    """The step's container as an init container of the runner's pod, after those already
    there. A volume claim the runner mounts already keeps the runner's volume (a claim is
    mounted once per pod); the step's other volumes are added with the prefix hook-."""
    container = copy.deepcopy(step.pod["containers"][0])
    container["name"] = f"{HOOK_PREFIX}{step.name}"[:63]
    for field in NOT_IN_INIT_CONTAINERS:
        container.pop(field, None)
    claims = {
        volume["persistentVolumeClaim"]["claimName"]: volume["name"]
        for volume in pod["volumes"]
        if "persistentVolumeClaim" in volume
    }
    present = {volume["name"] for volume in pod["volumes"]}
    own = {volume["name"]: volume for volume in step.pod.get("volumes", []) or []}
    for mount in container.get("volumeMounts", []) or []:
        volume = own.get(mount["name"])
        claim = (volume or {}).get("persistentVolumeClaim", {}).get("claimName")
        if claim in claims:
            mount["name"] = claims[claim]
            continue
        mount["name"] = f"{HOOK_PREFIX}{mount['name']}"[:63]
        if volume is not None and mount["name"] not in present:
            pod["volumes"].append({**copy.deepcopy(volume), "name": mount["name"]})
            present.add(mount["name"])
            if claim:
                claims[claim] = mount["name"]
    pod_security = step.pod.get("securityContext") or {}
    carried = {k: pod_security[k] for k in CARRIED_POD_SECURITY if k in pod_security}
    if carried:
        security = container.setdefault("securityContext", {})
        for key, value in carried.items():
            security.setdefault(key, value)
    pod["initContainers"].append(container)
    for pull in step.pod.get("imagePullSecrets", []) or []:
        if pull not in pod.setdefault("imagePullSecrets", []):
            pod["imagePullSecrets"].append(pull)
