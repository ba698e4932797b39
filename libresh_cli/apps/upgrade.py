"""Upgrades: one version step at a time along the declared path, each step guarded.

A step: safeguard (the pre-upgrade backup, from the backup service) -> pre_upgrade hooks with
the old image -> apply the new version, prune what it no longer has -> wait for health ->
post_upgrade hooks with the new image. If anything after the safeguard fails, the safeguard
restores its backup first (which stops the new version and starts the previous one on the
restored data), then the previous version's objects are applied again (what the new version
added is removed), the rollback hooks run with the old image (maintenance mode off), and the
record says what happened.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from libresh_cli.apps import hooks
from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.lifecycle import (
    Prepared,
    Safeguard,
    apply_and_wait,
    instance_for,
    never_installed,
    prepare,
    read_record,
    require_record,
    save_record,
)
from libresh_cli.apps.model import App, Version
from libresh_cli.apps.plan import upgrade_path
from libresh_cli.apps.record import HistoryEntry, InstanceRecord, refs_of
from libresh_cli.apps.render import Instance, render
from libresh_cli.errors import LibreshError, OperationFailedError
from libresh_cli.kube.client import KubeClient
from libresh_cli.progress import Reporter


class UpgradeFailedError(OperationFailedError):
    pass


@dataclass
class UpgradePlan:
    record: InstanceRecord
    app: App
    path: list[Version]

    @property
    def nothing_to_do(self) -> bool:
        return not self.path

    def describe(self) -> list[str]:
        steps = [self.record.version, *[v.version for v in self.path]]
        return [f"{a} -> {b}" for a, b in itertools.pairwise(steps)]

    def to_dict(self) -> dict[str, object]:
        return {
            "instance": self.record.name,
            "app": self.app.name,
            "from": self.record.version,
            "to": self.path[-1].version if self.path else self.record.version,
            "steps": self.describe(),
            "nothing_to_do": self.nothing_to_do,
        }


def plan_upgrade(kube: KubeClient, catalog: Catalog, name: str, to: str | None) -> UpgradePlan:
    record = require_record(kube, name)
    if record.status == "uninstalled":
        raise OperationFailedError(
            f"{name} is uninstalled (its data is kept).",
            hint=f"Install it again first: libresh install {record.app} --name {name}",
        )
    if never_installed(record):
        raise OperationFailedError(
            f"{name} was never installed completely ({record.status}): there is nothing to "
            "upgrade yet.",
            hint=f"Finish the install first: libresh install {record.app} --name {name}",
        )
    app = catalog.load(record.app)
    return UpgradePlan(record, app, upgrade_path(app, record.version, to))


def _instance(kube: KubeClient, record: InstanceRecord, app: App, version: Version) -> Instance:
    return instance_for(kube, record, app, version)


def upgrade(
    kube: KubeClient, plan: UpgradePlan, safeguard: Safeguard, reporter: Reporter
) -> InstanceRecord:
    record = plan.record
    for target in plan.path:
        current = plan.app.version(record.version)
        if current is None:
            raise OperationFailedError(
                f"The catalog no longer has {record.version}, the version {record.name} runs."
            )
        record = _step(kube, record, plan.app, current, target, safeguard, reporter)
    return record


def _step(
    kube: KubeClient,
    record: InstanceRecord,
    app: App,
    current: Version,
    target: Version,
    safeguard: Safeguard,
    reporter: Reporter,
) -> InstanceRecord:
    reporter.step(f"Upgrading {record.name}: {current.version} -> {target.version}")
    token = safeguard.before_step(record.name, current.version, target.version)
    record = read_record(kube, record.name) or record  # the backup wrote to its history
    old = _instance(kube, record, app, current)
    new = Instance(
        old.name, app, target, old.params, old.secret_values, old.services, old.service_secrets
    )
    old_objects = render(old)  # only what the pre_upgrade hooks are made from
    step = prepare(kube, new, record, current.version)
    record.status = "upgrading"
    save_record(kube, record)
    try:
        hooks.run_hooks(kube, "pre_upgrade", old, old_objects, reporter)
        apply_and_wait(kube, step, reporter)
        hooks.run_hooks(kube, "post_upgrade", new, step.objects, reporter)
    except LibreshError as error:
        _roll_back(kube, record, old, step, token, safeguard, error, reporter)
        raise  # not reached: _roll_back raises UpgradeFailedError
    record.version, record.inventory = target.version, refs_of(step.objects)
    record.status, record.last_error = "installed", None
    record.add_history(HistoryEntry("upgrade", current.version, target.version, "ok"))
    save_record(kube, record)
    reporter.done(f"{record.name} upgraded to {target.version}")
    return record


def _roll_back(
    kube: KubeClient,
    record: InstanceRecord,
    old: Instance,
    failed: Prepared,
    token: str | None,
    safeguard: Safeguard,
    cause: LibreshError,
    reporter: Reporter,
) -> None:
    """Data first, then the previous version: the new version may already have changed the
    volume (Nextcloud's new image copies its code there before migrating), and the old image
    refuses to start on it (nextcloud/docker docker-entrypoint.sh: "version of the data is
    higher than the docker image version"). The restore brings the files and the database of
    the backup taken before the step back, and starts the version the backup was taken with;
    the previous version's objects are then applied again, pruning what the new one added."""
    target = failed.instance.version.version
    reporter.warn(
        f"Upgrade to {target} failed: {cause.message} Rolling back to {old.version.version}"
        + (f": restoring the backup {token} taken before the step first." if token else ".")
    )
    rollback_record = InstanceRecord(**{**record.__dict__, "inventory": refs_of(failed.objects)})
    outcome, restored = "rolled back", ""
    try:
        if token is not None:
            safeguard.restore(record.name, token)
            restored = f", its data restored from the backup {token} taken before the step"
        back = prepare(kube, old, rollback_record, target)
        apply_and_wait(kube, back, reporter)
        # e.g. maintenance mode off again: pre_upgrade may have turned it on
        hooks.run_hooks(kube, "rollback", old, back.objects, reporter)
    except LibreshError as rollback_error:
        outcome = f"rollback failed too ({rollback_error.message})"
    _record_rollback(kube, record, old, target, cause, outcome)
    how = (
        f"It was {outcome} to {old.version.version}{restored}."
        if outcome == "rolled back"
        else f"The {outcome}: {_after_failed_rollback(record.name, token)}"
    )
    raise UpgradeFailedError(
        f"Upgrading {record.name} from {old.version.version} to {target} failed: "
        f"{cause.message} {how}",
        hint=cause.hint,
    ) from cause


def _after_failed_rollback(name: str, token: str | None) -> str:
    if token is None:
        return (
            "no backup was taken before the step (--no-backup), so the data may be at the new "
            f"version; restore a backup: libresh backups list {name}, then "
            f"libresh restore {name} --snapshot ID."
        )
    return f"restore the backup taken before the step: libresh restore {name} --snapshot {token}."


def _record_rollback(
    kube: KubeClient,
    record: InstanceRecord,
    old: Instance,
    target: str,
    cause: LibreshError,
    outcome: str,
) -> None:
    record = read_record(kube, record.name) or record  # the restore wrote to its history
    record.status = "installed" if outcome == "rolled back" else "failed"
    record.last_error = f"upgrade to {target} failed: {cause.message}"
    record.add_history(
        HistoryEntry(
            "upgrade",
            old.version.version,
            target,
            "rolled-back" if outcome == "rolled back" else "failed",
            cause.message,
        )
    )
    save_record(kube, record)
