"""Backup, restore, clone and schedules of instances, each done by a runner Job in the
instance's namespace; and the safeguard that takes a backup before every upgrade step.

A backup runs the app's pre_backup hooks (maintenance mode on), the runner, then its
post_backup hooks whatever happened. A restore first checks that the repository answers and
the backup exists (the app still running), takes a safety backup of the present state, stops
the app's workloads that use the volumes, runs the runner, starts them again, waits for
health and runs the post_restore hooks.
"""

from __future__ import annotations

import base64
import re
import secrets as random_secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from libresh_cli.apps import hooks, links
from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.lifecycle import (
    apply_and_wait,
    existing_secret_values,
    install,
    instance_for,
    never_installed,
    prepare,
    stored_params,
)
from libresh_cli.apps.model import App, Version
from libresh_cli.apps.params import GivenValues, resolve, validate_instance_name
from libresh_cli.apps.placement import claims_of, place_with_volumes
from libresh_cli.apps.providers import read_settings, services_for
from libresh_cli.apps.record import (
    Action,
    HistoryEntry,
    InstanceRecord,
    Result,
    Status,
    read_record,
    refs_of,
    require_record,
    save_record,
)
from libresh_cli.apps.relay import mail_for
from libresh_cli.apps.render import CREDENTIALS_SECRET, render
from libresh_cli.backup.jobs import (
    SCHEDULE_NAME,
    Retention,
    ScheduledStep,
    Target,
    job_name,
    retention_of,
    runner_configmap,
    runner_job,
    schedule_cronjob,
)
from libresh_cli.backup.runner import (
    BackupEntry,
    BackupMeta,
    RunnerResult,
    decode_meta,
    parse_backups,
    parse_result,
)
from libresh_cli.backup.storage import (
    REPOSITORY_CLAIM,
    SCHEDULE_SECRET,
    STORAGE_CHECK,
    BackupStorage,
    S3Keys,
    made_repositories,
    read_storage,
    repository_env,
    repository_secret,
    repository_volume,
    require_storage,
    save_made_repositories,
    save_secret_values,
    save_storage,
    storage_values,
)
from libresh_cli.errors import (
    BadInputError,
    ConflictError,
    InterruptedRunError,
    LibreshError,
    NotFoundError,
    OperationFailedError,
)
from libresh_cli.kube import readiness
from libresh_cli.kube.client import KubeClient, WaitTimeoutError, wait_for
from libresh_cli.kube.store import SYSTEM_NAMESPACE
from libresh_cli.progress import Reporter, SilentReporter

Manifest = dict[str, Any]
PAD_SIZE = 2048  # the runner hands over at most 1900 bytes
BACKUP_TIMEOUT = 6 * 3600  # a first backup of a large Nextcloud over a slow uplink
QUICK_TIMEOUT = 600  # listing, retention, creating the repository
NO_REPOSITORY = 10  # the runner's exit code (bootstrap/backup-runner.sh)
CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?-]+$")


MetaReader = Callable[[KubeClient, str, BackupEntry, Reporter], BackupMeta]


class BackupFailedError(OperationFailedError):
    # The runner's exit code (bootstrap/backup-runner.sh), when it left a result.
    runner_code: int | None = None


# Runner codes of a restore that failed before it changed anything: the repository could not
# be opened, read or locked, the backup is not there, or the database load rolled back as a
# whole.
RESTORE_CHANGED_NOTHING = {2, 10, 11, 12, 14, 15, 17}


class RestoreFailedError(OperationFailedError):
    pass


@dataclass
class BackupResult:
    instance: str
    backup: str
    reason: str
    version: str
    files: int | None = None
    bytes: int | None = None
    added: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RestoreResult:
    instance: str
    backup: str
    version: str
    safety_backup: str | None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def new_backup_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + random_secrets.token_hex(2)


# -- running the runner -----------------------------------------------------------------------


def prepare_namespace(
    kube: KubeClient,
    namespace: str,
    storage: BackupStorage,
    instance: str | None,
    claim: str = REPOSITORY_CLAIM,
) -> None:
    """The runner script in the namespace the Job runs in and, for a node path, the volume
    of `instance`'s repository directory (None: the whole path, libresh-system only). No
    key: run_runner brings the Job its own."""
    objects = [runner_configmap(namespace), *repository_volume(storage, namespace, instance, claim)]
    for manifest in objects:
        if manifest["kind"] == "PersistentVolume":
            _release_stale_volume(kube, manifest)
    kube.apply_all(objects)
    if storage.kind == "path":
        _wait_bound(kube, namespace, storage, claim)


def _wait_bound(kube: KubeClient, namespace: str, storage: BackupStorage, claim: str) -> None:
    # A pod whose claim is not bound yet is unschedulable, and the scheduler only retries it
    # after a back-off (~15 s): waiting here for the binding (well under a second) is faster.
    def bound() -> bool | None:
        current = kube.get("v1", "PersistentVolumeClaim", claim, namespace) or {}
        return True if current.get("status", {}).get("phase") == "Bound" else None

    try:
        wait_for("the backup volume to bind", bound, timeout=60, interval=0.1, max_interval=1.0)
    except WaitTimeoutError as error:
        raise BackupFailedError(
            f"The backup volume ({storage.describe()}) did not bind in {namespace}.",
            hint=f"kubectl -n {namespace} describe pvc {claim}",
        ) from error


def _release_stale_volume(kube: KubeClient, wanted: Manifest) -> None:
    # A claim deleted with its namespace leaves the volume Released, bound to the old claim's
    # uid: it would never bind again. A volume onto another directory (the storage was set
    # anew) cannot be changed: its claim and it are made again. Deleting a Retain volume
    # keeps the files on the node.
    name = wanted["metadata"]["name"]
    current = kube.get("v1", "PersistentVolume", name)
    if not current:
        return
    moved = (
        current["spec"].get("hostPath") != wanted["spec"]["hostPath"]
        or current["spec"].get("nodeAffinity") != wanted["spec"]["nodeAffinity"]
    )
    if moved:
        claim = wanted["spec"]["claimRef"]
        _remove_finished_pods_of(kube, claim["namespace"], claim["name"])
        kube.delete_and_wait("v1", "PersistentVolumeClaim", claim["name"], claim["namespace"])
    if moved or current.get("status", {}).get("phase") == "Released":
        kube.delete_and_wait("v1", "PersistentVolume", name, None)


def _remove_finished_pods_of(kube: KubeClient, namespace: str, claim: str) -> None:
    """Delete the finished pods (earlier runner Jobs') that name the claim: Kubernetes keeps a
    claim while any scheduled pod names it, finished or not (kube-controller-manager's
    pvc-protection controller, podUsesPVC, k8s.io/kubernetes v1.34), and runner Jobs keep
    theirs for a week, so moving the storage waited for the claim until it timed out. A pod
    still running (a backup under way) is left: the claim goes once it ends."""
    for pod in kube.list("v1", "Pod", namespace):
        volumes = pod.get("spec", {}).get("volumes") or []
        names_it = any(
            (volume.get("persistentVolumeClaim") or {}).get("claimName") == claim
            for volume in volumes
        )
        if names_it and pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            kube.delete("v1", "Pod", pod["metadata"]["name"], namespace)


def _drop_volume(
    kube: KubeClient, job: Manifest, storage: BackupStorage, instance: str, claim: str
) -> None:
    """Remove a temporary repository volume (a clone's view of its source's backups), once
    the pods of the Job that used it are gone (a claim is kept while a pod names it); the
    files stay (Retain). The Job stays, with its status."""
    namespace = job["metadata"]["namespace"]
    selector = f"job-name={job['metadata']['name']}"
    for pod in kube.list("v1", "Pod", namespace, label_selector=selector):
        kube.delete("v1", "Pod", pod["metadata"]["name"], namespace)
    for manifest in repository_volume(storage, namespace, instance, claim):
        kube.delete(
            manifest["apiVersion"],
            manifest["kind"],
            manifest["metadata"]["name"],
            manifest["metadata"].get("namespace"),
        )


def _placed(kube: KubeClient, job: Manifest) -> Manifest:
    """A runner that writes to a directory of one node (path storage) must run on that node,
    which its repository volume's node affinity already says: pinning it to the app's node
    too could make it unschedulable. With S3 storage it goes where the app's volumes are."""
    if any(c.startswith("libresh-backup-") for c in claims_of(job["spec"]["template"]["spec"])):
        return job
    return place_with_volumes(kube, job)


def run_runner(
    kube: KubeClient,
    job: Manifest,
    reporter: Reporter,
    what: str,
    timeout: int,
    repository: dict[str, str],
) -> RunnerResult | None:
    """Run one runner Job to its end; its result, or None when it left none. A failed Job
    raises with what the runner said. restic's environment (`repository`, one instance's)
    reaches it in a Secret made once the Job exists, owned by it, and deleted when it ends,
    however it ends: its pod waits for it (ContainerCreating) meanwhile."""
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    kube.delete_and_wait("batch/v1", "Job", name, namespace)
    made = kube.apply(_placed(kube, job))
    try:
        kube.apply(repository_secret(name, namespace, repository, owner=made))
        return _wait_runner(kube, name, namespace, reporter, what, timeout)
    finally:
        kube.delete("v1", "Secret", name, namespace)


def _wait_runner(
    kube: KubeClient, name: str, namespace: str, reporter: Reporter, what: str, timeout: int
) -> RunnerResult | None:
    reporter.step(f"{what} (Job {name})")
    started = time.monotonic()

    def finished() -> readiness.Readiness | None:
        current = kube.get("batch/v1", "Job", name, namespace)
        state = readiness.job(current) if current else readiness.Readiness(False, "")
        return state if state.ready or state.failed else None

    try:
        state = wait_for(what, finished, timeout=timeout + 120, interval=0.5, max_interval=5.0)
    except WaitTimeoutError as error:
        raise BackupFailedError(
            f"{what} did not finish in {timeout}s.",
            hint=f"Its log: kubectl -n {namespace} logs job/{name}",
        ) from error
    result = _result_of(kube, name, namespace)
    if state.failed or (result is not None and not result.ok):
        detail = result.error if result and result.error else f"its Job failed ({state.reason})"
        failed = BackupFailedError(
            f"{what} failed: {detail}.",
            hint=(result.hint if result and result.hint else None)
            or f"Its log: kubectl -n {namespace} logs job/{name}",
        )
        failed.runner_code = result.code if result is not None else None
        raise failed
    reporter.done(f"{what}: done in {time.monotonic() - started:.0f}s")
    return result


def _result_of(kube: KubeClient, job: str, namespace: str) -> RunnerResult | None:
    for pod in kube.list("v1", "Pod", namespace, label_selector=f"job-name={job}"):
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if status.get("name") == "runner" and terminated.get("message"):
                return parse_result(terminated["message"])
    return None


def _int(result: RunnerResult | None, key: str) -> int | None:
    value = (result.data or {}).get(key) if result else None
    return int(str(value)) if value is not None else None


# -- backup -----------------------------------------------------------------------------------


def _installed(
    kube: KubeClient, catalog: Catalog, name: str
) -> tuple[InstanceRecord, App, Version]:
    record = require_record(kube, name)
    if record.status == Status.UNINSTALLED or never_installed(record):
        raise OperationFailedError(
            f"{name} is {record.status}: there is nothing running to back up or restore into.",
            hint=(
                f"Install it again first (libresh install {record.app} --name {name}, its "
                f"kept data is used), then restore; or restore into a new instance: libresh "
                f"restore {name} --as NEW --domain DOMAIN."
                if record.status == Status.UNINSTALLED
                else f"`libresh status {name}` shows its state."
            ),
        )
    app = catalog.load(record.app)
    return record, app, app.running_version(name, record.version)


def take_backup(
    kube: KubeClient, catalog: Catalog, name: str, reason: str, reporter: Reporter
) -> BackupResult:
    """Back the instance up now, its hooks around the runner; recorded in its history."""
    record, app, version = _installed(kube, catalog, name)
    storage, secret_values = require_storage(kube)
    backup_id = new_backup_id()
    instance = instance_for(kube, record, app, version)
    objects = render(instance)
    env = {"LIBRESH_BACKUP_ID": backup_id, "LIBRESH_REASON": reason}
    job = runner_job(
        Target.of(name, app, version.version), storage, "backup", backup_id, env, BACKUP_TIMEOUT
    )
    try:
        ensure_repository(kube, storage, secret_values, name, reporter)
        prepare_namespace(kube, name, storage, name)
        hooks.run_hooks(kube, "pre_backup", instance, objects, reporter)
        try:
            result = run_runner(
                kube,
                job,
                reporter,
                f"Backing up {name}",
                BACKUP_TIMEOUT,
                repository_env(storage, secret_values, name),
            )
        finally:
            hooks.run_hooks(kube, "post_backup", instance, objects, reporter)
    except OperationFailedError as error:
        _add_history(
            kube,
            name,
            HistoryEntry(Action.BACKUP, None, version.version, Result.FAILED, error.message),
        )
        raise
    _add_history(
        kube,
        name,
        HistoryEntry(Action.BACKUP, None, version.version, Result.OK, f"{backup_id} ({reason})"),
    )
    return BackupResult(
        name,
        backup_id,
        reason,
        version.version,
        _int(result, "files"),
        _int(result, "bytes"),
        _int(result, "added"),
    )


def _add_history(kube: KubeClient, name: str, entry: HistoryEntry) -> None:
    record = read_record(kube, name)  # fresh: never write back an older copy
    if record is not None:
        record.add_history(entry)
        save_record(kube, record)


def list_backups(kube: KubeClient, name: str, reporter: Reporter) -> list[BackupEntry]:
    """The complete backups of `name` in the repository, oldest first. A Job reads them: in
    the instance's namespace (the app is not touched), or in libresh-system for an instance
    this cluster does not have (its backups came from another cluster)."""
    record = read_record(kube, name)
    storage, secret_values = require_storage(kube)
    where = name if record is not None else SYSTEM_NAMESPACE
    here = where == name
    prepare_namespace(kube, where, storage, name if here else None)
    run_id = new_backup_id()
    target = Target(where, record.app, record.version) if record else Target(where)
    env = {"LIBRESH_INSTANCE": name}
    job = runner_job(target, storage, "snapshots", run_id, env, QUICK_TIMEOUT)
    try:
        result = run_runner(
            kube,
            job,
            reporter,
            f"Reading the backups of {name}",
            QUICK_TIMEOUT,
            repository_env(storage, secret_values, name, whole_storage=not here),
        )
    except BackupFailedError as error:
        # No repository: never backed up, unless libresh made it on this storage (then it
        # is missing, e.g. the disk is not mounted, which must not pass for "no backups").
        if error.runner_code == NO_REPOSITORY and name not in made_repositories(kube):
            return []
        raise
    if result is None:
        raise BackupFailedError(
            f"The Job listing the backups of {name} left no listing.",
            hint=f"Its log: kubectl -n {where} logs job/{job_name('snapshots', run_id)}",
        )
    return parse_backups(str((result.data or {}).get("backups", "")))


def find_backup(backups: list[BackupEntry], wanted: str | None, name: str) -> BackupEntry:
    if not backups:
        raise NotFoundError(
            f"There is no backup of {name} in the repository.",
            hint=f"Take one: libresh backup {name}",
        )
    if wanted is None:
        return backups[-1]
    for entry in backups:
        if entry.backup == wanted:
            return entry
    raise NotFoundError(
        f"There is no backup {wanted} of {name}.",
        hint=f"`libresh backups list {name}` shows the {len(backups)} there are.",
    )


# -- restore ----------------------------------------------------------------------------------


def _data_workloads(objects: list[Manifest], volumes: tuple[str, ...]) -> list[Manifest]:
    """The Deployments and StatefulSets whose pods mount one of the backed-up volumes: they
    stop while their files are replaced. The database keeps running (its restore is SQL)."""
    found = []
    for manifest in objects:
        if manifest["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod_volumes = manifest["spec"]["template"]["spec"].get("volumes", []) or []
        claims = {v.get("persistentVolumeClaim", {}).get("claimName") for v in pod_volumes}
        if claims & set(volumes):
            found.append(manifest)
    return found


def _volume_users(objects: list[Manifest], volumes: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The selector labels of the first workload that mounts the volumes (an app's volumes
    are used by one workload: they are ReadWriteOnce)."""
    for workload in _data_workloads(objects, volumes):
        labels = workload["spec"].get("selector", {}).get("matchLabels", {}) or {}
        if labels:
            return tuple(sorted((str(k), str(v)) for k, v in labels.items()))
    return ()


def _stop(
    kube: KubeClient, instance: Instance, objects: list[Manifest], reporter: Reporter
) -> None:
    """Stop the workloads that use the volumes (the database keeps running)."""
    workloads = _data_workloads(objects, instance.app.backup_volumes)
    for manifest in workloads:
        reporter.step(f"Stopping {manifest['kind']} {manifest['metadata']['name']}")
        kube.scale(
            manifest["apiVersion"],
            manifest["kind"],
            manifest["metadata"]["name"],
            instance.namespace,
            0,
        )
    for manifest in workloads:
        _wait_stopped(kube, manifest, instance.namespace)


def _start(
    kube: KubeClient, instance: Instance, record: InstanceRecord, reporter: Reporter
) -> None:
    """Apply the instance at its version the way install does (which restores the replicas,
    makes Jobs whose pod template changed anew, prunes what this version does not have) and
    wait for health."""
    reporter.step(f"Starting {instance.name} ({instance.version.version})")
    apply_and_wait(kube, prepare(kube, instance, record, record.version), reporter)


def _wait_stopped(kube: KubeClient, manifest: Manifest, namespace: str) -> None:
    name = manifest["metadata"]["name"]

    def stopped() -> bool | None:
        current = kube.get(manifest["apiVersion"], manifest["kind"], name, namespace) or {}
        return True if int(current.get("status", {}).get("replicas", 0) or 0) == 0 else None

    wait_for(f"{manifest['kind']} {name} to stop", stopped, timeout=300, interval=0.5)


def restore_backup(
    kube: KubeClient,
    catalog: Catalog,
    name: str,
    backup: BackupEntry,
    reporter: Reporter,
    *,
    safety_backup: bool = True,
    source: str | None = None,
) -> RestoreResult:
    """Restore `backup` (of `source`, default this instance) into the instance `name`, at the
    version the backup was taken with."""
    record, app, current = _installed(kube, catalog, name)
    storage, secret_values = require_storage(kube)
    version = app.version(backup.version)
    if version is None:
        raise NotFoundError(
            f"Backup {backup.backup} was taken with {app.name} {backup.version}, which the "
            "catalog no longer has."
        )
    safety = (
        take_backup(kube, catalog, name, "pre-restore", reporter).backup if safety_backup else None
    )
    running = instance_for(kube, record, app, current)
    running_objects = render(running)
    instance = instance_for(kube, record, app, version)
    objects = render(instance)
    # The backups of `origin` only (its repository, its key): a clone reads its source's
    # through a volume claim and a Secret of this run alone.
    backups_of = source or name
    claim = REPOSITORY_CLAIM if backups_of == name else f"libresh-backup-from-{backups_of}"
    env = {"LIBRESH_BACKUP_ID": backup.backup, "LIBRESH_INSTANCE": backups_of}
    job = runner_job(
        Target.of(name, app, version.version),
        storage,
        "restore",
        new_backup_id(),
        env,
        BACKUP_TIMEOUT,
        claim,
    )
    prepare_namespace(kube, name, storage, backups_of, claim)
    _stop(kube, running, running_objects, reporter)
    stopped = True
    try:
        try:
            try:
                run_runner(
                    kube,
                    job,
                    reporter,
                    f"Restoring {backup.backup} into {name}",
                    BACKUP_TIMEOUT,
                    repository_env(storage, secret_values, backups_of),
                )
            finally:
                if claim != REPOSITORY_CLAIM:
                    _drop_volume(kube, job, storage, backups_of, claim)
        except BackupFailedError as failed:
            if failed.runner_code in RESTORE_CHANGED_NOTHING:
                stopped = False
                _start(kube, running, record, reporter)  # as it was, at its version
            raise
        # While the app is still stopped: the restored files may not let it start as they
        # are (Nextcloud's config.php names the database the backup came from), and its
        # volumes are free for the hook Jobs.
        hooks.run_hooks(kube, "post_restore", instance, objects, reporter)
        stopped = False
        _start(kube, instance, record, reporter)
    except LibreshError as error:
        _add_history(
            kube,
            name,
            HistoryEntry(
                Action.RESTORE, current.version, current.version, Result.FAILED, error.message
            ),
        )
        raise RestoreFailedError(
            f"Restoring {name} failed: {error.message}"
            + (
                f" {name} is left stopped: its data may be partly restored, and starting it on "
                "that could damage it further."
                if stopped
                else ""
            ),
            hint=_after_failed_restore(name, backup.backup, safety, stopped, error.hint),
        ) from error
    except KeyboardInterrupt as interrupt:
        # The workloads are at 0 replicas and the data may be half restored: say so, and
        # how to finish, instead of a bare "interrupted".
        raise InterruptedRunError(
            f"Restoring {name} was interrupted."
            + (f" {name} is left stopped: its data may be partly restored." if stopped else ""),
            hint=_after_failed_restore(name, backup.backup, safety, stopped, None),
        ) from interrupt
    fresh = require_record(kube, name)
    fresh.version, fresh.status, fresh.last_error = version.version, Status.INSTALLED, None
    fresh.pending_upgrade = None  # the data is a backup's again: no upgrade step to resume
    fresh.inventory = refs_of(objects)
    origin = f" of {source}" if source else ""
    fresh.add_history(
        HistoryEntry(
            Action.RESTORE, current.version, version.version, Result.OK, f"{backup.backup}{origin}"
        )
    )
    save_record(kube, fresh)
    refresh_schedule(kube, catalog, name, reporter)  # the version may be another one now
    return RestoreResult(name, backup.backup, version.version, safety, source)


def _after_failed_restore(
    name: str, backup: str, safety: str | None, stopped: bool, cause_hint: str | None
) -> str | None:
    again = (
        f"Run the restore again once the cause is fixed: libresh restore {name} --snapshot {backup}"
    )
    before = (
        f"What was there before is in backup {safety}: libresh restore {name} --snapshot {safety}"
    )
    if stopped:
        return (
            f"{again}. "
            + (f"{before}." if safety else "")
            + (f" ({cause_hint})" if cause_hint else "")
        )
    return before if safety else cause_hint


def read_backup_meta(
    kube: KubeClient, source: str, backup: BackupEntry, reporter: Reporter
) -> BackupMeta:
    """The record and Secrets stored in a backup, read by a Job in libresh-system. They come
    back in its termination message, encrypted with a one-time pad kept in a Secret for the
    Job's lifetime only."""
    storage, secret_values = require_storage(kube)
    prepare_namespace(kube, SYSTEM_NAMESPACE, storage, None)
    run_id = new_backup_id()
    pad = random_secrets.token_bytes(PAD_SIZE)
    pad_secret = f"libresh-pad-{run_id.lower()}"
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": pad_secret, "namespace": SYSTEM_NAMESPACE},
            "type": "Opaque",
            "data": {"pad": base64.b64encode(pad).decode()},
        }
    )
    env = {
        "LIBRESH_INSTANCE": source,
        "LIBRESH_BACKUP_ID": backup.backup,
        "LIBRESH_PAD_FILE": "/pad/pad",
    }
    job = runner_job(Target(SYSTEM_NAMESPACE), storage, "meta", run_id, env, QUICK_TIMEOUT)
    pod = job["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "pad", "secret": {"secretName": pad_secret}})
    pod["containers"][0]["volumeMounts"].append(
        {"name": "pad", "mountPath": "/pad", "readOnly": True}
    )
    try:
        result = run_runner(
            kube,
            job,
            reporter,
            f"Reading backup {backup.backup}",
            QUICK_TIMEOUT,
            repository_env(storage, secret_values, source, whole_storage=True),
        )
    finally:
        kube.delete("v1", "Secret", pad_secret, SYSTEM_NAMESPACE)
    sealed = str((result.data or {}).get("meta", "")) if result else ""
    try:
        return decode_meta(sealed, pad)
    except ValueError as error:
        raise BackupFailedError(f"Backup {backup.backup} of {source}: {error}.") from error


def restore_as(
    kube: KubeClient,
    catalog: Catalog,
    source: str,
    new_name: str,
    domain: str | None,
    backup: BackupEntry,
    reporter: Reporter,
    read_meta: MetaReader = read_backup_meta,
) -> RestoreResult:
    """A new instance `new_name` made from a backup of `source`: installed at the backup's
    version with the source's settings and credentials (its files hold them, e.g. Nextcloud's
    database password in config.php), then restored into. It gets its own namespace, volumes
    and (embedded) database. The settings and credentials come from `source` when this cluster
    has it (a clone), else from the backup itself (a migration from another cluster sharing
    the repository)."""
    validate_instance_name(new_name)
    check_clone_target_free(kube, new_name)
    record = read_record(kube, source)
    if record is not None:
        app = catalog.load(record.app)
        if record.status != Status.UNINSTALLED:
            refuse_second_identity(app, source, record.params)
        secret_values = existing_secret_values(kube, source)
        origin = Origin(source, record.params, record.services, secret_values, record.uses)
    else:
        meta = read_meta(kube, source, backup, reporter)
        app = catalog.load(str(meta.record.get("app", backup.app)))
        origin = Origin(
            source,
            dict(meta.record.get("params", {})),
            dict(meta.record.get("services") or {}),
            meta.secrets.get(CREDENTIALS_SECRET, {}),
            dict(meta.record.get("uses") or {}),
        )
    return _copy(kube, catalog, app, origin, new_name, domain, backup, reporter)


@dataclass(frozen=True)
class Origin:
    """Where a copy's settings and credentials come from."""

    name: str
    params: dict[str, Any]
    services: dict[str, str]
    secret_values: dict[str, str] = field(repr=False)
    # role -> instance it uses: the copy uses the same ones when they are on this cluster
    uses: dict[str, str] = field(default_factory=dict)


def _copy(
    kube: KubeClient,
    catalog: Catalog,
    app: App,
    origin: Origin,
    new_name: str,
    domain: str | None,
    backup: BackupEntry,
    reporter: Reporter,
) -> RestoreResult:
    """Install `new_name` at the backup's version with the origin's settings and
    credentials, then restore the backup into it."""
    version = _version_of_backup(app, backup)
    plain = _params_for_copy(app, origin.name, origin.params, domain)
    settings, passwords = read_settings(kube)
    pinned = origin.services or {kind: "embedded" for kind in app.requires}
    services, service_secrets = services_for(pinned, settings, passwords)
    instance = Instance(
        new_name,
        app,
        version,
        plain,
        origin.secret_values,
        services,
        service_secrets,
        mail=mail_for(kube, app),  # the cluster's relay, as any install (not the origin's)
    )
    reporter.step(f"Installing {new_name} ({app.name} {version.version}) to restore into")
    # The copy keeps the source's links (Collabora then allows the copy's domain too); a used
    # instance this cluster does not have is dropped: `install --use` links another one.
    instance = replace(instance, links=links.links_for(kube, new_name, origin.uses))
    prepared = prepare(kube, instance, None, None)
    prepared.catalog = catalog
    install(kube, prepared, reporter)
    return restore_backup(
        kube, catalog, new_name, backup, reporter, safety_backup=False, source=origin.name
    )


def _version_of_backup(app: App, backup: BackupEntry) -> Version:
    version = app.version(backup.version)
    if version is None:
        raise NotFoundError(
            f"Backup {backup.backup} was taken with {app.name} {backup.version}, which the "
            "catalog no longer has."
        )
    return version


def refuse_second_identity(app: App, source: str, params: dict[str, Any]) -> None:
    """An app with a parameter that cannot change once installed (GoToSocial's domain,
    Synapse's server_name) has it in every ID its data holds: a copy restored beside the
    running source would be a second server with the same identity (same fediverse or Matrix
    name, and for GoToSocial a domain the source already serves). Such a copy can only
    replace the original."""
    fixed = [p.name for p in app.parameters if p.immutable and params.get(p.name) is not None]
    if not fixed:
        return
    shown = ", ".join(f"{name} {params[name]!r}" for name in fixed)
    raise BadInputError(
        f"A copy of {source} cannot run beside it: {app.name} keeps its {shown} for good "
        f"(in every ID its data holds), so a {app.name} clone would be a second server with "
        f"the same identity. A {app.name} backup can only replace the original.",
        hint=f"Restore into {source} itself: libresh restore {source} (it backs up the "
        f"present data first). A copy under another name can take its place once {source} is "
        f"uninstalled (libresh uninstall {source}; the copy keeps the same values).",
    )


def _params_for_copy(
    app: App, source: str, params: dict[str, Any], domain: str | None
) -> dict[str, Any]:
    given = GivenValues()
    domain_parameter = app.parameter("domain")
    if domain_parameter is not None and domain_parameter.immutable and params.get("domain"):
        # The source is not running here (another cluster's, or uninstalled): the copy takes
        # its place under the domain its data was made with.
        kept = params["domain"]
        if domain is not None and domain != kept:
            raise BadInputError(
                f"--domain: a copy of {source} keeps its domain {kept!r} ({app.name}'s domain "
                "cannot change once installed: it is in every ID its data holds).",
                hint=f"Leave out --domain, or give --domain {kept}.",
            )
        domain = kept
    if domain is not None:
        given.add("domain", domain, "--domain")
    elif app.parameter("domain") is not None:
        raise BadInputError(
            f"The copy needs its own domain: {source} answers at {params.get('domain')}.",
            hint="Give it with --domain.",
        )
    plain, _ = resolve(app, given, stored_params(app, params, f"the backup of {source}"), None)
    return plain


def check_clone_target_free(kube: KubeClient, new_name: str) -> None:
    existing = read_record(kube, new_name)
    if existing is not None and existing.status != Status.UNINSTALLED:
        raise ConflictError(
            f"An instance named {new_name} exists already ({existing.app} {existing.version}).",
            hint=f"Choose another name for --as, or restore into it: libresh restore {new_name}",
        )
    if existing is not None:
        # Uninstalled with its data kept: a clone there would empty those volumes, with no
        # question and no backup of them.
        raise ConflictError(
            f"{new_name} was uninstalled, but its data ({existing.app} {existing.version}) is "
            "kept: restoring into that name would replace it.",
            hint=f"Choose another name for --as, or install {new_name} again "
            f"(libresh install {existing.app} --name {new_name}) and restore into it "
            f"(libresh restore {new_name}, which backs its data up first), or delete that "
            f"data for good (libresh uninstall {new_name} --purge-data).",
        )


# -- the safeguard of upgrades ----------------------------------------------------------------


class BackupSafeguard:
    """Before each upgrade step a backup (its failure stops the upgrade before anything is
    touched); after a failed step, its restore."""

    def __init__(self, kube: KubeClient, catalog: Catalog, reporter: Reporter) -> None:
        self.kube, self.catalog, self.reporter = kube, catalog, reporter
        self._taken: dict[str, BackupEntry] = {}

    def before_step(self, instance: str, version_from: str, version_to: str) -> str | None:
        try:
            result = take_backup(self.kube, self.catalog, instance, "pre-upgrade", self.reporter)
        except OperationFailedError as error:
            raise BackupFailedError(
                f"The backup before upgrading {instance} to {version_to} failed, so the upgrade "
                f"did not start: {error.message}",
                hint=error.hint,
            ) from error
        self._taken[result.backup] = BackupEntry(result.backup, "", version_from, "pre-upgrade")
        return result.backup

    def restore(self, instance: str, token: str) -> None:
        restore_backup(
            self.kube,
            self.catalog,
            instance,
            self._taken[token],
            self.reporter,
            safety_backup=False,
        )


# -- schedules --------------------------------------------------------------------------------


def check_cron(expression: str) -> str:
    fields = expression.split()
    macro = expression.strip().startswith("@")
    if not macro and (len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields)):
        raise BadInputError(
            f"--cron {expression!r} is not a cron schedule of five fields.",
            hint='For example --cron "30 3 * * *" (every night at 03:30), or @daily.',
        )
    return expression.strip()


def set_schedule(
    kube: KubeClient,
    catalog: Catalog,
    name: str,
    cron: str,
    retention: Retention,
    reporter: Reporter | None = None,
) -> Manifest:
    record, app, version = _installed(kube, catalog, name)
    storage, secret_values = require_storage(kube)
    for value, flag in (
        (retention.daily, "daily"),
        (retention.weekly, "weekly"),
        (retention.monthly, "monthly"),
    ):
        if value < 0:
            raise BadInputError(f"--keep-{flag} {value} must be 0 or more.")
    if retention.daily + retention.weekly + retention.monthly == 0:
        raise BadInputError(
            "Keeping no backup at all would delete every scheduled backup.",
            hint="Give at least one of --keep-daily, --keep-weekly, --keep-monthly above 0.",
        )
    ensure_repository(kube, storage, secret_values, name, reporter or SilentReporter())
    return _apply_schedule(
        kube, record, app, version, storage, secret_values, check_cron(cron), retention
    )


def _apply_schedule(
    kube: KubeClient,
    record: InstanceRecord,
    app: App,
    version: Version,
    storage: BackupStorage,
    secret_values: dict[str, str],
    cron: str,
    retention: Retention,
) -> Manifest:
    """The CronJob as the running version renders it: the runner, and before it the app's
    scheduled pre_backup steps with that version's image and environment."""
    name = record.name
    prepare_namespace(kube, name, storage, name)
    instance = instance_for(kube, record, app, version)
    objects = render(instance)
    target = replace(
        Target.of(name, app, version.version),
        volume_users=_volume_users(objects, app.backup_volumes),
    )
    steps = tuple(
        ScheduledStep(step.name, hooks.hook_pod_spec(step, instance, objects))
        for step in hooks.scheduled_steps(instance)
    )
    cronjob = schedule_cronjob(target, storage, cron, retention, BACKUP_TIMEOUT, steps)
    made = kube.apply(cronjob)
    # The one repository Secret an app namespace keeps: its own instance's key, owned by the
    # CronJob (it goes with it).
    env = repository_env(storage, secret_values, name)
    kube.apply(repository_secret(SCHEDULE_SECRET, name, env, owner=made))
    return made


def refresh_schedule(kube: KubeClient, catalog: Catalog, name: str, reporter: Reporter) -> bool:
    """Render the instance's backup schedule again, if it has one, keeping its cron and
    retention: after its version changed (an upgrade, a restore at a backup's version), its
    scheduled steps must run the image of the version that now runs. A failure is a warning:
    the change itself is done. True when there was a schedule to render."""
    try:
        existing = kube.get("batch/v1", "CronJob", SCHEDULE_NAME, name)
        if existing is None:
            return False
        record, app, version = _installed(kube, catalog, name)
        storage, secret_values = require_storage(kube)
        _apply_schedule(
            kube,
            record,
            app,
            version,
            storage,
            secret_values,
            str(existing["spec"]["schedule"]),
            retention_of(existing),
        )
    except LibreshError as error:
        reporter.warn(
            f"The backup schedule of {name} could not be brought to its running version: "
            f"{error.message} Set it again: libresh backup schedule {name} --cron CRON."
        )
        return False
    return True


def schedule_of(kube: KubeClient, name: str) -> str | None:
    """The instance's backup schedule (cron), if it has one."""
    cronjob = kube.get("batch/v1", "CronJob", SCHEDULE_NAME, name)
    return str(cronjob["spec"]["schedule"]) if cronjob else None


def remove_schedule(kube: KubeClient, name: str) -> bool:
    require_record(kube, name)
    removed = kube.delete("batch/v1", "CronJob", SCHEDULE_NAME, name)
    kube.delete("v1", "Secret", SCHEDULE_SECRET, name)
    return removed


def configure_storage(
    kube: KubeClient,
    storage: BackupStorage,
    keys: S3Keys | None,
    imported_password: str | None,
    reporter: Reporter,
) -> bool:
    """Open (or create) the storage's own repository (STORAGE_CHECK) with these settings, then
    keep them: settings that cannot reach and write the storage, or whose key is not the one
    the storage was set up with, are never saved. True when a new key was made. The
    instances' repositories are made on their first backup (ensure_repository)."""
    values, made = storage_values(kube, storage, keys, imported_password)
    if made:  # the key the repository is about to be made with is kept before, never lost
        save_secret_values(kube, values)
    else:
        kube.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}}
        )
    previous, _ = read_storage(kube)
    prepare_namespace(kube, SYSTEM_NAMESPACE, storage, None)
    job = runner_job(Target(SYSTEM_NAMESPACE), storage, "init", new_backup_id(), {}, QUICK_TIMEOUT)
    env = repository_env(storage, values, STORAGE_CHECK, whole_storage=True)
    run_runner(kube, job, reporter, "Opening the backup storage", QUICK_TIMEOUT, env)
    if previous != storage:  # other storage: no instance's repository is made there yet
        save_made_repositories(kube, {})
    save_storage(kube, storage, values)
    return made


def ensure_repository(
    kube: KubeClient,
    storage: BackupStorage,
    secret_values: dict[str, str],
    instance: str,
    reporter: Reporter,
) -> None:
    """Make the instance's repository on its first use (or find it: backups another cluster
    made with the same key), by a Job in libresh-system: never in the app's namespace, and
    only once the storage's own repository shows the storage is there (a backup disk that is
    not mounted fails instead of filling the root disk). Remembered in libresh-system."""
    made = made_repositories(kube)
    if instance in made:
        return
    prepare_namespace(kube, SYSTEM_NAMESPACE, storage, None)
    run_id = new_backup_id()
    env = {}  # whose repository: LIBRESH_REPOSITORY_OF, in its Secret
    if storage.kind == "path":
        env["LIBRESH_STORAGE_CHECK"] = storage.repository(STORAGE_CHECK, whole_storage=True)
    job = runner_job(Target(SYSTEM_NAMESPACE), storage, "init", run_id, env, QUICK_TIMEOUT)
    repository = repository_env(storage, secret_values, instance, whole_storage=True)
    what = f"Making the backup repository of {instance}"
    run_runner(kube, job, reporter, what, QUICK_TIMEOUT, repository)
    save_made_repositories(kube, {**made_repositories(kube), instance: run_id})
