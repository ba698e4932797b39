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
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from libresh_cli.apps import hooks
from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.lifecycle import (
    Prepared,
    Safeguard,
    apply_and_wait,
    instance_for,
    never_installed,
    prepare,
)
from libresh_cli.apps.model import App, Version
from libresh_cli.apps.plan import upgrade_path
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
from libresh_cli.apps.render import render
from libresh_cli.errors import InterruptedRunError, LibreshError, OperationFailedError
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
        # An interrupted step still to roll back is something to do.
        return not self.path and not self.record.pending_upgrade

    def describe(self) -> list[str]:
        steps = [self.record.version, *[v.version for v in self.path]]
        pending = self.record.pending_upgrade
        resume = (
            [f"roll back the interrupted {pending.get('from')} -> {pending.get('to')}"]
            if pending
            else []
        )
        return resume + [f"{a} -> {b}" for a, b in itertools.pairwise(steps)]

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
    if record.status == Status.UNINSTALLED:
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
    kube: KubeClient,
    plan: UpgradePlan,
    safeguard: Safeguard,
    reporter: Reporter,
    still_held: Callable[[], None] = lambda: None,
) -> InstanceRecord:
    """Every step of the plan. `still_held` raises when this run may no longer change the
    instance (its lease lost): checked before each step."""
    record = plan.record
    if record.pending_upgrade:
        still_held()
        record = resume_interrupted(kube, record, plan.app, safeguard, reporter)
    for target in plan.path:
        still_held()
        current = plan.app.running_version(record.name, record.version)
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
    new = old.at_version(target)
    old_objects = render(old)  # only what the pre_upgrade hooks are made from
    step = prepare(kube, new, record, current.version)
    record.status = Status.UPGRADING
    # Written before anything changes: a run that dies from here on (killed, its machine
    # off) leaves the next run what it needs to bring the data back first.
    record.pending_upgrade = {"from": current.version, "to": target.version, "backup": token}
    save_record(kube, record)
    try:
        hooks.run_hooks(kube, "pre_upgrade", old, old_objects, reporter)
        apply_and_wait(kube, step, reporter)
        hooks.run_hooks(kube, "post_upgrade", new, step.objects, reporter)
    except LibreshError as error:
        _roll_back(kube, record, old, step, token, safeguard, error, reporter)
        raise  # not reached: _roll_back raises UpgradeFailedError
    except KeyboardInterrupt as interrupt:
        _roll_back_interrupted(kube, record, old, step, token, safeguard, reporter)
        raise AssertionError("not reached: _roll_back_interrupted raises") from interrupt
    record.version, record.inventory = target.version, refs_of(step.objects)
    record.status, record.last_error, record.pending_upgrade = Status.INSTALLED, None, None
    record.add_history(HistoryEntry(Action.UPGRADE, current.version, target.version, Result.OK))
    save_record(kube, record)
    reporter.done(f"{record.name} upgraded to {target.version}")
    return record


def resume_interrupted(
    kube: KubeClient, record: InstanceRecord, app: App, safeguard: Safeguard, reporter: Reporter
) -> InstanceRecord:
    """The last upgrade step did not end (the run was killed, or its rollback failed): its
    data may be half-migrated, so a new backup of it would be worthless. Bring back the backup
    taken before that step and the version it ran, exactly as a rollback does, before any
    new step."""
    pending = record.pending_upgrade or {}
    version_from, version_to = str(pending.get("from")), str(pending.get("to"))
    token = pending.get("backup")
    previous, failed = app.version(version_from), app.version(version_to)
    if not isinstance(token, str) or not token:
        raise OperationFailedError(
            f"The last upgrade of {record.name} ({version_from} -> {version_to}) did not "
            "finish, and no backup was taken before it (--no-backup): its data may be "
            "half-migrated, so libresh will not upgrade it further.",
            hint=_after_failed_rollback(record.name, None),
        )
    if previous is None or failed is None:
        raise OperationFailedError(
            f"The last upgrade of {record.name} ({version_from} -> {version_to}) did not "
            "finish, and the catalog no longer has those versions to roll back with.",
            hint=_after_failed_rollback(record.name, token),
        )
    reporter.warn(
        f"The last upgrade of {record.name} ({version_from} -> {version_to}) did not finish: "
        f"restoring the backup {token} taken before it, and {version_from}, first."
    )
    old = _instance(kube, record, app, previous)
    step = prepare(kube, old.at_version(failed), record, version_from)
    outcome, _ = _bring_back(kube, record, old, step, token, safeguard, reporter)
    cause = LibreshError(f"the run upgrading to {version_to} was interrupted")
    _record_rollback(kube, record, old, version_to, cause, outcome)
    if outcome != "rolled back":
        raise UpgradeFailedError(
            f"Rolling back the interrupted upgrade of {record.name} to {version_to} failed: "
            f"{outcome}.",
            hint=_after_failed_rollback(record.name, token),
        )
    return require_record(kube, record.name)


def _bring_back(
    kube: KubeClient,
    record: InstanceRecord,
    old: Instance,
    failed: Prepared,
    token: str | None,
    safeguard: Safeguard,
    reporter: Reporter,
) -> tuple[str, str]:
    """Data first, then the previous version: the new version may already have changed the
    volume (Nextcloud's new image copies its code there before migrating), and the old image
    refuses to start on it (nextcloud/docker docker-entrypoint.sh: "version of the data is
    higher than the docker image version"). The restore brings the files and the database of
    the backup taken before the step back, and starts the version the backup was taken with;
    the previous version's objects are then applied again, pruning what the new one added.
    Returns (outcome, what was restored)."""
    target = failed.instance.version.version
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
    return outcome, restored


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
    target = failed.instance.version.version
    reporter.warn(
        f"Upgrade to {target} failed: {cause.message} Rolling back to {old.version.version}"
        + (f": restoring the backup {token} taken before the step first." if token else ".")
    )
    outcome, restored = _bring_back(kube, record, old, failed, token, safeguard, reporter)
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


def _roll_back_interrupted(
    kube: KubeClient,
    record: InstanceRecord,
    old: Instance,
    failed: Prepared,
    token: str | None,
    safeguard: Safeguard,
    reporter: Reporter,
) -> NoReturn:
    """Ctrl-C (or SIGTERM) in a step: the step is rolled back as a failure is, then the run
    ends (exit 130) saying how it went. Interrupted again, the rollback stops where it is; the
    record still names the step and its backup, and the next `libresh upgrade` finishes the
    rollback."""
    target = failed.instance.version.version
    reporter.warn(
        f"Interrupted: rolling back {record.name} to {old.version.version}"
        + (f" (restoring the backup {token} taken before the step)" if token else "")
        + ". Interrupt again to stop at once; the next `libresh upgrade "
        + f"{record.name}` then finishes the rollback."
    )
    outcome, restored = _bring_back(kube, record, old, failed, token, safeguard, reporter)
    cause = LibreshError(f"interrupted while upgrading to {target}")
    _record_rollback(kube, record, old, target, cause, outcome)
    if outcome == "rolled back":
        raise InterruptedRunError(
            f"Upgrading {record.name} to {target} was interrupted; it was rolled back to "
            f"{old.version.version}{restored}."
        )
    raise InterruptedRunError(
        f"Upgrading {record.name} to {target} was interrupted, and the {outcome}.",
        hint=(
            f"The next `libresh upgrade {record.name}` restores the backup {token} taken "
            f"before the step first (or by hand: libresh restore {record.name} --snapshot "
            f"{token})."
            if token
            else _after_failed_rollback(record.name, None)
        ),
    )


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
    record.status = Status.INSTALLED if outcome == "rolled back" else Status.FAILED
    if outcome == "rolled back":
        # Back on the previous version's data: nothing left to resume. After a failed
        # rollback the step stays recorded, and the next run tries it again.
        record.pending_upgrade = None
    record.last_error = f"upgrade to {target} failed: {cause.message}"
    record.add_history(
        HistoryEntry(
            "upgrade",
            old.version.version,
            target,
            Result.ROLLED_BACK if outcome == "rolled back" else Result.FAILED,
            cause.message,
        )
    )
    save_record(kube, record)
