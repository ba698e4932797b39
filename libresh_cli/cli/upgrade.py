"""`libresh upgrade`: one instance or all of them (for cron), one version step at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from libresh_cli.cli.common import (
    DryRunOption,
    OutputOption,
    YesOption,
    app_context,
    catalog,
    confirm,
    kube_client,
)
from libresh_cli.cli.context import AppContext
from libresh_cli.cli.output import emit, rows_table
from libresh_cli.errors import BadInputError, ExitCode, InterruptedRunError, LibreshError

if TYPE_CHECKING:
    from libresh_cli.apps.catalog import Catalog
    from libresh_cli.apps.upgrade import UpgradePlan


def upgrade(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Instance name.")] = None,
    to: Annotated[str | None, typer.Option(help="Target version (default: the newest).")] = None,
    all_instances: Annotated[bool, typer.Option("--all", help="Upgrade every instance.")] = False,
    no_backup: Annotated[
        bool,
        typer.Option(
            "--no-backup",
            help="Do not take a backup before each step (a failed step then cannot bring "
            "the data back).",
        ),
    ] = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Upgrade along the app's path (never skipping a major it forbids skipping).

    Each step takes a backup first (a failed backup stops the upgrade before the app is
    touched), runs the app's hooks and waits for health; a failed step is rolled back to the
    version before it and the backup is restored. One run at a time per instance: an
    instance another run is working on is refused, naming that run. Ctrl-C rolls the step
    back (exit 130); a step that never ended (the run was killed) is rolled back by the next
    run first.

    Exit code 0 when everything is upgraded (or already was: nothing to do needs no backup
    storage), 1 when an upgrade failed (the others still ran) or was declined, 5 when an
    instance was busy with another run, 6 when an instance has an upgrade and backups are not
    set up (set them up, or pass --no-backup; --dry-run says so too), 130 when interrupted.

    \b
    Examples:
      libresh upgrade nextcloud
      libresh upgrade nextcloud --to 30.0.12 --dry-run
      libresh upgrade --all --yes -o json      # nightly, from cron
    """
    from libresh_cli.apps.inventory import list_instances

    app = app_context(ctx, output, dry_run, yes)
    if bool(name) == all_instances:
        raise BadInputError(
            "Name one instance or pass --all.",
            hint="libresh upgrade NAME, or libresh upgrade --all",
        )
    if all_instances and to:
        raise BadInputError("--to goes with one instance, not with --all.")
    apps = catalog(app)  # read once for every instance
    with kube_client(app) as kube:
        names = (
            [name]
            if name
            else [s.name for s in list_instances(kube, apps) if s.status != "uninstalled"]
        )
        planned = [_plan_one(app, kube, apps, n, to, keep_going=all_instances) for n in names]
        # Backups are needed only by the instances that will change: a nightly run with
        # nothing to upgrade succeeds on a cluster without backup storage.
        # A dry run says what the real run would: refused too (exit 6) without storage.
        if not no_backup and any(_has_steps(p) for p in planned):
            from libresh_cli.backup.storage import require_storage

            require_storage(kube, hint_skip="--no-backup")
        results = [
            _upgrade_one(app, kube, apps, p, no_backup, to, keep_going=all_instances)
            for p in planned
        ]
    emit(app, results, _results_table)
    # Declined at the question is "not done", as at `install`: exit 1.
    if any(r["result"] in ("failed", "skipped") for r in results):
        raise typer.Exit(1)
    if any(r["result"] == "busy" for r in results):
        raise typer.Exit(int(ExitCode.CONFLICT))


def _has_steps(planned: UpgradePlan | dict[str, Any]) -> bool:
    return not isinstance(planned, dict) and not planned.nothing_to_do


def _plan_one(
    app: AppContext, kube: Any, apps: Catalog, name: str, to: str | None, keep_going: bool
) -> UpgradePlan | dict[str, Any]:
    """The instance's plan; with keep_going (--all) a failure to plan is a result."""
    from libresh_cli.apps.upgrade import plan_upgrade

    try:
        return plan_upgrade(kube, apps, name, to)
    except LibreshError as error:
        if not keep_going:
            raise  # one instance asked for by name: its own message and exit code
        app.reporter().warn(f"{name}: {error}")
        return {
            "instance": name,
            "app": None,
            "from": None,
            "to": None,
            "steps": [],
            "nothing_to_do": False,
            "result": "failed",
            "message": error.message,
        }


def _upgrade_one(
    app: AppContext,
    kube: Any,
    apps: Catalog,
    plan: UpgradePlan | dict[str, Any],
    no_backup: bool,
    to: str | None,
    keep_going: bool,
) -> dict[str, Any]:
    from libresh_cli.apps.lifecycle import NoSafeguard, Safeguard
    from libresh_cli.apps.lock import InstanceBusyError, instance_lock
    from libresh_cli.apps.upgrade import plan_upgrade, upgrade
    from libresh_cli.backup.service import BackupSafeguard, refresh_schedule

    if isinstance(plan, dict):
        return plan  # could not even be planned
    name = plan.record.name
    result: dict[str, Any] = {**plan.to_dict(), "result": "up to date", "message": ""}
    if plan.nothing_to_do:
        return result
    if app.dry_run:
        return {**result, "result": "would upgrade"}
    if not confirm(app, f"Upgrade {name}: {', '.join(plan.describe())}?"):
        return {**result, "result": "skipped"}
    reporter = app.reporter()
    safeguard: Safeguard = (
        NoSafeguard(reporter) if no_backup else BackupSafeguard(kube, apps, reporter)
    )
    try:
        with instance_lock(kube, name, "upgrade") as lease, reporter.spinning(f"Upgrading {name}"):
            # Planned again now that the instance is this run's: another run may have
            # upgraded it since the plan shown.
            plan = plan_upgrade(kube, apps, name, to)
            if plan.nothing_to_do:
                return {**result, "to": plan.record.version}
            upgrade(kube, plan, safeguard, reporter, still_held=lease.check)
            # Its scheduled backup steps run the new version's image from now on.
            refresh_schedule(kube, apps, name, reporter)
    except InstanceBusyError as busy:
        if not keep_going:
            raise  # its own message, exit code 5
        reporter.warn(str(busy))
        return {**result, "result": "busy", "message": busy.message}
    except InterruptedRunError:
        raise  # Ctrl-C ends the whole run, not only this instance
    except LibreshError as error:
        reporter.warn(str(error))
        return {**result, "result": "failed", "message": error.message}
    return {**result, "result": "upgraded"}


def _results_table(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return "No instances."
    return rows_table(
        ["NAME", "FROM", "TO", "RESULT", "STEPS"],
        [[r["instance"], r["from"], r["to"], r["result"], ", ".join(r["steps"])] for r in rows],
    )
