"""What is installed: list, status, diff, and uninstall."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from libresh_cli.apps import links
from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.health import HOPELESS
from libresh_cli.apps.instance import INSTANCE, MANAGED_BY
from libresh_cli.apps.lifecycle import instance_for, never_installed, prepare
from libresh_cli.apps.model import App
from libresh_cli.apps.plan import Plan, upgrade_path
from libresh_cli.apps.record import (
    RECORD_SELECTOR,
    Action,
    HistoryEntry,
    InstanceRecord,
    RecordUnreadableError,
    Result,
    Status,
    require_record,
    save_record,
)
from libresh_cli.apps.sso import forget as forget_oidc_client
from libresh_cli.errors import LibreshError
from libresh_cli.kube import readiness
from libresh_cli.kube.client import KubeClient
from libresh_cli.progress import Reporter

Manifest = dict[str, Any]
MANAGED = f"{MANAGED_BY}=libresh"
# Kept by `uninstall` without --purge-data: the data, and the passwords it was created with.
KEPT_ON_UNINSTALL = {"PersistentVolumeClaim", "Secret", "Namespace"}
# Not kept: the backup schedule, a CronJob and its Secret (libresh_cli/backup/jobs.py
# SCHEDULE_NAME, backup/storage.py SCHEDULE_SECRET), which would fail every night.
BACKUP_SCHEDULE = ("libresh-backup", "libresh-backup-schedule")


@dataclass
class InstanceSummary:
    name: str
    app: str
    version: str
    status: str
    url: str | None
    upgrade: str | None = None
    workloads: dict[str, str] = field(default_factory=dict)
    # False when upstream no longer maintains the installed version's series (no security
    # fixes): the catalog's `maintained_until`. None when the catalog does not say.
    maintained: bool | None = None
    # "healthy", "unhealthy" (problems say why), or "-" when nothing should run
    # (uninstalled, never installed, an unreadable record).
    health: str = "-"
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_instances(kube: KubeClient, catalog: Catalog) -> list[InstanceSummary]:
    """Four API calls whatever the number of instances: records, Deployments, StatefulSets,
    and the pods libresh manages."""
    records, unreadable = [], []
    for configmap in kube.list("v1", "ConfigMap", label_selector=RECORD_SELECTOR):
        try:
            records.append(InstanceRecord.from_configmap(configmap))
        except RecordUnreadableError as error:
            unreadable.append(_unreadable(error))
    workloads = _workload_states(kube, namespace=None)
    pods = _pods_by_instance(kube, namespace=None)
    latest = _latest_versions(catalog, {r.app for r in records})
    summaries = [
        _summary(r, workloads.get(r.name, {}), latest.get(r.app), pods.get(r.name, []))
        for r in records
    ]
    return sorted([*summaries, *unreadable], key=lambda s: s.name)


def _pods_by_instance(kube: KubeClient, namespace: str | None) -> dict[str, list[Manifest]]:
    pods: dict[str, list[Manifest]] = {}
    for pod in kube.list("v1", "Pod", namespace, label_selector=INSTANCE):
        owner = pod["metadata"].get("labels", {}).get(INSTANCE, "")
        pods.setdefault(owner, []).append(pod)
    return pods


def health_of(
    record: InstanceRecord, workloads: dict[str, readiness.Readiness], pods: list[Manifest]
) -> tuple[str, list[str]]:
    """Whether what the instance should run runs: every Deployment and StatefulSet of its
    inventory exists with its replicas available, and no pod of it crash-loops. The record's
    status says what libresh last did; this says how the instance is now (someone deleted a
    Deployment, a node died, a pod crashes since last night)."""
    if record.status == Status.UNINSTALLED or never_installed(record):
        return "-", []
    problems = []
    for _, kind, name in record.inventory:
        if kind not in ("Deployment", "StatefulSet"):
            continue
        state = workloads.get(f"{kind}/{name}")
        if state is None:
            problems.append(f"{kind}/{name} is missing")
        elif not state.ready:
            problems.append(f"{kind}/{name}: {state.reason}")
    problems += crash_looping(pods)
    return ("unhealthy" if problems else "healthy"), problems


def crash_looping(pods: list[Manifest]) -> list[str]:
    found = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in HOPELESS:
                found.append(
                    f"pod {pod['metadata']['name']}: {container.get('name')} is in "
                    f"{waiting['reason']} ({container.get('restartCount', 0)} restarts)"
                )
    return found


def _unreadable(error: RecordUnreadableError) -> InstanceSummary:
    """Listed, named and marked, so `list` shows it and `upgrade --all` reports it as failed
    while the other instances go on."""
    return InstanceSummary(error.namespace, "?", "?", "unreadable record", None)


def _workload_states(
    kube: KubeClient, namespace: str | None
) -> dict[str, dict[str, readiness.Readiness]]:
    """Readiness of libresh's Deployments and StatefulSets by instance: two list calls, in one
    namespace or (namespace None) across the cluster."""
    workloads: dict[str, dict[str, readiness.Readiness]] = {}
    for kind in ("Deployment", "StatefulSet"):
        for item in kube.list("apps/v1", kind, namespace, label_selector=MANAGED):
            owner = item["metadata"].get("labels", {}).get(INSTANCE, "")
            workloads.setdefault(owner, {})[f"{kind}/{item['metadata']['name']}"] = (
                readiness.readiness(item)
            )
    return workloads


def _latest_versions(catalog: Catalog, apps: set[str]) -> dict[str, App]:
    found = {}
    for name in apps:
        try:
            found[name] = catalog.load(name)
        except LibreshError:
            continue  # an app gone from the catalog: listed, without upgrade information
    return found


def _summary(
    record: InstanceRecord,
    workloads: dict[str, readiness.Readiness],
    app: App | None,
    pods: list[Manifest],
) -> InstanceSummary:
    status = record.status
    if record.pending_upgrade:
        pending = record.pending_upgrade
        status = f"interrupted upgrade {pending.get('from')} -> {pending.get('to')}"
    health, problems = health_of(record, workloads, pods)
    upgrade = None
    if app is not None and record.status != Status.UNINSTALLED:
        try:
            path = upgrade_path(app, record.version)
        except LibreshError:
            path = []
        upgrade = path[-1].version if path else None
    domain = record.params.get("domain")
    installed = app.version(record.version) if app is not None else None
    maintained = (
        installed.maintained_on(date.today())
        if installed is not None and installed.maintained_until is not None
        else None
    )
    return InstanceSummary(
        name=record.name,
        app=record.app,
        version=record.version,
        status=status,
        url=f"https://{domain}" if domain else None,
        upgrade=upgrade,
        workloads={k: ("ready" if r.ready else r.reason) for k, r in workloads.items()},
        maintained=maintained,
        health=health,
        problems=problems,
    )


def instance_status(kube: KubeClient, catalog: Catalog, name: str) -> dict[str, Any]:
    record = require_record(kube, name)
    workloads = _workload_states(kube, namespace=name).get(name, {})
    pods = _pods_by_instance(kube, namespace=name).get(name, [])
    app = _latest_versions(catalog, {record.app}).get(record.app)
    objects = kube.get_many(record.inventory, name)
    return {
        **_summary(record, workloads, app, pods).to_dict(),
        "pending_upgrade": record.pending_upgrade,
        "settings": dict(record.params),
        "objects": [
            {
                "kind": ref[1],
                "name": ref[2],
                "exists": obj is not None,
                "state": readiness.readiness(obj).reason if obj else "missing",
            }
            for ref, obj in zip(record.inventory, objects, strict=True)
        ],
        "last_error": record.last_error,
        "last_backup": last_backup(record),
        # The instances it uses (role -> instance) and those that use it.
        "uses": dict(record.uses),
        "used_by": [
            {"instance": user.name, "app": user.app, "role": role}
            for user, role in links.users_of(links.installed_records(kube), name)
        ],
        "history": [asdict(h) for h in record.history],
    }


def last_backup(record: InstanceRecord) -> dict[str, str] | None:
    """When and which: the newest backup that worked, from the history (the repository may
    hold newer scheduled ones: `libresh backups list`)."""
    for entry in reversed(record.history):
        if entry.action == Action.BACKUP and entry.result == Result.OK:
            return {"at": entry.at, "backup": entry.message.split(" ")[0]}
    return None


def diff_instance(kube: KubeClient, catalog: Catalog, name: str) -> Plan:
    """What applying the installed version again would change (drift, catalog changes)."""
    record = require_record(kube, name)
    app = catalog.load(record.app)
    version = app.running_version(name, record.version)
    return prepare(kube, instance_for(kube, record, app, version), record, record.version).plan


def uninstall(
    kube: KubeClient,
    name: str,
    purge_data: bool,
    reporter: Reporter,
    force: bool = False,
    catalog: Catalog | None = None,
) -> str:
    """Remove an instance; refused while other instances use it (links.check_not_used)
    unless `force`. The instances it used are applied again (they stop allowing it)."""
    record = require_record(kube, name)
    if not force:
        links.check_not_used(kube, name)
    try:
        result = _uninstall(kube, record, purge_data, reporter)
        forget_oidc_client(kube, name, reporter)
        return result
    finally:
        if catalog is not None and record.uses:
            links.rewire(kube, catalog, set(record.uses.values()), reporter)


def _uninstall(
    kube: KubeClient, record: InstanceRecord, purge_data: bool, reporter: Reporter
) -> str:
    name = record.name
    if purge_data:
        reporter.step(f"Deleting namespace {name} with everything in it")
        kube.delete_and_wait("v1", "Namespace", name, None, timeout=300)
        return "purged"
    kept = [ref for ref in record.inventory if ref[1] in KEPT_ON_UNINSTALL]
    for api_version, kind, obj_name in reversed(record.inventory):
        if kind not in KEPT_ON_UNINSTALL:
            reporter.step(f"Deleting {kind}/{obj_name}")
            kube.delete(api_version, kind, obj_name, name)
    record.status, record.inventory = Status.UNINSTALLED, kept
    record.add_history(
        HistoryEntry(Action.UNINSTALL, record.version, record.version, Result.OK, "data kept")
    )
    save_record(kube, record)
    return "uninstalled, data kept" + _remove_backup_schedule(kube, name, reporter)


def _remove_backup_schedule(kube: KubeClient, name: str, reporter: Reporter) -> str:
    cronjob_name, secret_name = BACKUP_SCHEDULE
    cronjob = kube.get("batch/v1", "CronJob", cronjob_name, name)
    if cronjob is None:
        return ""
    reporter.step(f"Deleting the backup schedule CronJob/{cronjob_name}")
    kube.delete("batch/v1", "CronJob", cronjob_name, name)
    kube.delete("v1", "Secret", secret_name, name)
    cron = cronjob["spec"]["schedule"]
    return (
        f"; its backup schedule ({cron}) is removed too, and installing it again does not "
        f'bring it back: libresh backup schedule {name} --cron "{cron}"'
    )
