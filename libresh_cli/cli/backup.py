"""`libresh backup`, `libresh backups list` and `libresh restore`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click.core import Context as ClickContext  # the Context typer's groups take
from typer.core import TyperGroup

from libresh_cli.cli.common import (
    DryRunOption,
    OutputOption,
    YesOption,
    app_context,
    catalog,
    confirm,
    done,
    dry_run_said,
    kube_client,
    read_secret_file,
)
from libresh_cli.cli.context import OutputFormat
from libresh_cli.cli.output import emit, rows_table
from libresh_cli.errors import BadInputError

if TYPE_CHECKING:
    from libresh_cli.backup.service import RestoreResult
    from libresh_cli.backup.storage import BackupStorage, S3Keys
    from libresh_cli.cli.context import AppContext
    from libresh_cli.kube.client import KubeClient


class InstanceOrCommandGroup(TyperGroup):
    """`libresh backup NAME` backs NAME up; `libresh backup storage …` etc. stay commands."""

    default_command = "now"

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-")), None)
        if first is not None and first not in self.commands:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


backup_app = typer.Typer(
    cls=InstanceOrCommandGroup,
    help="""Back up instances: now, on a schedule; where backups go; the repository key.

Backups are encrypted restic snapshots: the instance's databases (pg_dump, streamed), the
files of its volumes, its record and credentials. `libresh upgrade` takes one before each
step.

\b
Examples:
  libresh backup storage set --path /var/backups/libresh --node node-1
  libresh backup storage set --s3-endpoint https://s3.example.org --bucket coop-backups \\
      --access-key-id AKIA… --secret-key-file s3.key
  libresh backup key export --file restic-key.txt     # keep it somewhere safe
  libresh backup nextcloud
  libresh backup list nextcloud                       # also: libresh backups list
  libresh backup schedule nextcloud --cron "30 3 * * *" --keep-daily 7 --keep-weekly 4
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)
storage_app = typer.Typer(
    help="Where backups go (one repository per instance, each with its own key).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
key_app = typer.Typer(
    help="The cluster's backup key: without it, backups cannot be read.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
backup_app.add_typer(storage_app, name="storage")
backup_app.add_typer(key_app, name="key")
backups_app = typer.Typer(
    help="The backups of an instance.", no_args_is_help=True, rich_markup_mode=None
)


@backup_app.command("now")
def backup_now(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance name.")],
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Back an instance up now (`libresh backup NAME` is the same).

    The app's pre_backup hooks run first (Nextcloud: maintenance mode on), its post_backup
    hooks after, even when the backup failed. It asks nothing: --yes is taken for scripts
    that pass it to every command.

    \b
    Examples:
      libresh backup nextcloud
      libresh backup nextcloud -o json
      libresh backup nextcloud --dry-run
    """
    from libresh_cli.apps.lock import instance_lock
    from libresh_cli.backup.service import take_backup

    app = app_context(ctx, output, dry_run, yes)
    reporter = app.reporter()
    with kube_client(app) as kube:
        _say_if_simulated(app, kube, name)
        if app.dry_run:
            _backup_dry_run(app, kube, name)
            return
        with reporter.spinning(f"Backing up {name}"), instance_lock(kube, name, "backup"):
            result = take_backup(kube, catalog(app), name, "manual", reporter)
    emit(app, result.to_dict(), _backup_text)


LAB_BACKUPS = (
    "! This cluster is a libresh lab: its nodes are simulated and run no container, so backups "
    "are simulated too. The lab's stand-in runner copies no data: `libresh backups list "
    "{name}` shows one made-up backup, lab-{name}, whether {name} was backed up or not, and a "
    "restore goes through its steps without restoring anything. On a k3s cluster, backups "
    "are real."
)


def _say_if_simulated(app: AppContext, kube: KubeClient, name: str) -> None:
    """kwok runs the backup runner's pods without containers (libresh_cli/lab/stages/
    libresh-backup-runner.yaml answers for them): say so before anything is believed."""
    from libresh_cli.kube.simulated import has_simulated_nodes

    if has_simulated_nodes(kube):
        app.err.print(LAB_BACKUPS.format(name=name))


def _backup_dry_run(app: AppContext, kube: KubeClient, name: str) -> None:
    """What `backup NAME` would do, from the instance's record, its app and the storage."""
    from libresh_cli.apps.record import require_record
    from libresh_cli.backup.storage import require_storage

    record = require_record(kube, name)
    storage, _ = require_storage(kube)
    hooks = catalog(app).load(record.app).hooks
    actions = [
        f"run {name}'s pre_backup hooks: {_step_names(hooks, 'pre_backup')}",
        f"back up {name} ({record.app} {record.version}) to {storage.describe()}",
        f"run {name}'s post_backup hooks: {_step_names(hooks, 'post_backup')}",
    ]
    dry_run_said(app, actions, instance=name, version=record.version)


def _step_names(hooks: dict[str, Any], phase: str) -> str:
    return ", ".join(step.name for step in hooks.get(phase, [])) or "none"


def _backup_text(result: dict[str, Any]) -> str:
    size = f", {result['bytes'] / 1e6:.1f} MB read" if result.get("bytes") is not None else ""
    return f"✓ Backup {result['backup']} of {result['instance']} ({result['version']}){size}."


@backup_app.command("schedule")
def schedule(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance name.")],
    cron: Annotated[str | None, typer.Option(help='When, as cron: "30 3 * * *", @daily.')] = None,
    keep_daily: Annotated[int, typer.Option(min=0, help="Daily backups kept.")] = 7,
    keep_weekly: Annotated[int, typer.Option(min=0, help="Weekly backups kept.")] = 4,
    keep_monthly: Annotated[int, typer.Option(min=0, help="Monthly backups kept.")] = 6,
    remove: Annotated[bool, typer.Option("--remove", help="Stop the scheduled backups.")] = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Back an instance up on a schedule (a CronJob), then apply the retention
    (`restic forget --prune`). Before each scheduled backup only the app's pre_backup steps
    marked `scheduled: true` run (Vaultwarden: a consistent copy of its database); no other
    hook runs (Nextcloud is not put in maintenance mode) and no post_backup hook runs after.

    \b
    Examples:
      libresh backup schedule nextcloud --cron "30 3 * * *" --keep-daily 7 --keep-weekly 4
      libresh backup schedule nextcloud --remove
      libresh backup schedule nextcloud --cron @daily --dry-run
    """
    from libresh_cli.backup.jobs import Retention, scheduled_step_names
    from libresh_cli.backup.service import check_cron, remove_schedule, schedule_of, set_schedule

    app = app_context(ctx, output, dry_run, yes)
    if cron is not None and not remove:
        check_cron(cron)  # before connecting
    if cron is None and not remove:
        raise BadInputError("Say when with --cron, or stop the schedule with --remove.")
    keep = {"daily": keep_daily, "weekly": keep_weekly, "monthly": keep_monthly}
    wanted = (
        f"at {cron!r} (UTC), keeping {keep_daily} daily, {keep_weekly} weekly and "
        f"{keep_monthly} monthly backups"
    )
    with kube_client(app) as kube:
        if remove:
            if app.dry_run:
                now = schedule_of(kube, name)
                said = f"remove {name}'s backup schedule ({now})" if now else "change nothing"
                dry_run_said(app, [said if now else f"{said}: {name} has no schedule"])
                return
            gone = remove_schedule(kube, name)
            said = "schedule removed" if gone else "had no schedule"
            done(app, {"instance": name, "removed": gone}, f"{name}: {said}.")
            return
        _say_if_simulated(app, kube, name)
        if app.dry_run:
            from libresh_cli.apps.record import require_record

            record = require_record(kube, name)
            now = schedule_of(kube, name)
            steps = [
                step.name
                for step in catalog(app).load(record.app).hooks.get("pre_backup", ())
                if step.scheduled
            ]
            dry_run_said(
                app,
                [
                    f"back {name} up {wanted}" + (f" (now: {now!r})" if now else ""),
                    f"before each, run {name}'s scheduled pre_backup steps: "
                    + (", ".join(steps) or "none"),
                ],
                instance=name,
                cron=cron,
                keep=keep,
                steps=steps,
            )
            return
        made = set_schedule(
            kube, catalog(app), name, str(cron), Retention(keep_daily, keep_weekly, keep_monthly)
        )
    steps = scheduled_step_names(made)
    before = f" Before each: {', '.join(steps)}." if steps else ""
    done(
        app,
        {"instance": name, "cron": cron, "keep": keep, "steps": steps},
        f"{name} is backed up {wanted}.{before}",
    )


@storage_app.command("set")
def storage_set(
    ctx: typer.Context,
    s3_endpoint: Annotated[str | None, typer.Option(help="S3-compatible endpoint URL.")] = None,
    bucket: Annotated[str | None, typer.Option(help="S3 bucket.")] = None,
    prefix: Annotated[str, typer.Option(help="Folder in the bucket.")] = "libresh",
    access_key_id: Annotated[str | None, typer.Option(help="S3 access key id.")] = None,
    secret_key_file: Annotated[
        Path | None,
        typer.Option(help="File holding the S3 secret key (never on the command line)."),
    ] = None,
    path: Annotated[str | None, typer.Option(help="A directory on one node.")] = None,
    node: Annotated[str | None, typer.Option(help="The node that has --path.")] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="The key of storage another cluster set up (from `backup key export` there); "
            "by default a new key is made once and kept."
        ),
    ] = None,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Set where backups go, and check that the storage can be reached and written.

    Each instance's encrypted repository is made there on its first backup, with a key of
    its own derived from the cluster's key.

    \b
    Examples:
      libresh backup storage set --path /var/backups/libresh --node node-1
      libresh backup storage set --s3-endpoint https://s3.fr-par.scw.cloud --bucket coop \\
          --access-key-id SCW123 --secret-key-file s3.key
      libresh backup storage set --path /srv/backups --node node-1 --dry-run
    """
    from libresh_cli.backup.service import configure_storage
    from libresh_cli.backup.storage import BackupStorage, S3Keys, check_storage, ensure_node_exists

    app = app_context(ctx, output, dry_run, yes)
    if (s3_endpoint is None) == (path is None):
        raise BadInputError(
            "Give either --s3-endpoint (with --bucket) or --path (with --node).",
            hint="libresh backup storage set --help",
        )
    keys = None
    if s3_endpoint is not None:
        if not bucket or not access_key_id or secret_key_file is None:
            raise BadInputError(
                "--s3-endpoint needs --bucket, --access-key-id and --secret-key-file."
            )
        storage = BackupStorage("s3", endpoint=s3_endpoint, bucket=bucket, prefix=prefix)
        keys = S3Keys(access_key_id, read_secret_file(app, secret_key_file, "--secret-key-file"))
    else:
        if not node:
            raise BadInputError("--path needs --node: the node whose disk holds the backups.")
        storage = BackupStorage("path", path=str(path), node=node)
    check_storage(storage)
    imported = read_secret_file(app, password_file, "--password-file") if password_file else None
    reporter = app.reporter()
    with kube_client(app) as kube:
        if storage.kind == "path":
            ensure_node_exists(kube, storage.node)
        if app.dry_run:
            _storage_dry_run(app, kube, storage, keys, imported)
            return
        with reporter.spinning("Opening the backup storage"):
            made = configure_storage(kube, storage, keys, imported, reporter)
    done(
        app,
        {"storage": storage.to_dict(), "new_key": made},
        f"Backups go to {storage.describe()}.",
    )
    if made:
        app.err.print(
            "! A new repository key was made. Without it the backups cannot be read: "
            "export it now and keep it off this cluster: libresh backup key export --file KEYFILE"
        )


def _storage_dry_run(
    app: AppContext,
    kube: KubeClient,
    storage: BackupStorage,
    keys: S3Keys | None,
    imported: str | None,
) -> None:
    from libresh_cli.backup.storage import read_storage, storage_values

    previous, _ = read_storage(kube)
    _, made = storage_values(kube, storage, keys, imported)  # refuses a conflicting key too
    where = storage.describe()
    actions = [
        f"check that {where} can be reached and written (a runner Job in libresh-system)",
        f"send backups to {where}"
        + (f" instead of {previous.describe()}" if previous and previous != storage else ""),
    ]
    if made:
        actions.append("make a new repository key (then: libresh backup key export --file FILE)")
    dry_run_said(app, actions, storage=storage.to_dict(), new_key=made)


@storage_app.command("show")
def storage_show(ctx: typer.Context, output: OutputOption = None) -> None:
    """Show where backups go (never the keys).

    \b
    Example:
      libresh backup storage show -o json
    """
    from libresh_cli.backup.storage import read_storage

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        storage, _ = read_storage(kube)
    shown = storage.to_dict() if storage else {"kind": "none"}
    emit(app, shown, lambda s: "Backups are not set up." if storage is None else storage.describe())


@key_app.command("export")
def key_export(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option(help="Write it to this file (mode 0600) instead of stdout.")
    ] = None,
    output: OutputOption = None,
) -> None:
    """Print (or write) the cluster's backup key, to keep somewhere safe off this cluster.

    Without it the backups are unreadable, for example after losing the cluster: every
    instance's repository key is derived from it.

    \b
    Examples:
      libresh backup key export --file ~/coop-restic-key.txt
      libresh backup key export | pass insert -m libresh/restic
      libresh backup key export -o json | jq -r .key
    """
    from libresh_cli.backup.storage import PASSWORD_KEY, require_storage
    from libresh_cli.settings import write_private_file

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        _, values = require_storage(kube)
    app.err.print(
        "! Keep this key off the cluster: without it the backups cannot be read, and with it "
        "anyone who reaches the storage can read them."
    )
    if file is None:  # asked for by name: the one command whose data is a secret
        if app.output is OutputFormat.table:
            typer.echo(values[PASSWORD_KEY])  # as it is, for a pipe
        else:
            emit(app, {"key": values[PASSWORD_KEY]}, str)
        return
    write_private_file(file, values[PASSWORD_KEY] + "\n")
    done(app, {"file": str(file)}, f"Written to {file} (mode 0600).")


@backups_app.command("list")
def backups_list(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance name.")],
    output: OutputOption = None,
) -> None:
    """List an instance's backups in the repository, oldest first.

    \b
    Examples:
      libresh backups list nextcloud
      libresh backups list nextcloud -o json
    """
    from libresh_cli.backup.service import list_backups

    app = app_context(ctx, output)
    reporter = app.reporter()
    with kube_client(app) as kube:
        _say_if_simulated(app, kube, name)
        with reporter.spinning(f"Reading the backups of {name}"):
            entries = list_backups(kube, name, reporter)
    emit(app, [e.to_dict() for e in entries], _backups_table)


# `libresh backup list NAME` is what people type first: the same command as `backups list`.
backup_app.command("list")(backups_list)


def _backups_table(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return "No backups."
    return rows_table(
        ["BACKUP", "TIME", "VERSION", "REASON"],
        [[r["backup"], r["time"], r["version"], r["reason"]] for r in rows],
    )


def restore(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance whose backup is restored.")],
    snapshot: Annotated[
        str | None,
        typer.Option(
            "--snapshot",
            "--backup",
            help="Backup to restore, as `libresh backups list` names it (default: the newest).",
        ),
    ] = None,
    as_name: Annotated[
        str | None, typer.Option("--as", help="Restore into a new instance of this name (clone).")
    ] = None,
    domain: Annotated[
        str | None, typer.Option(help="The new instance's domain (with --as).")
    ] = None,
    no_backup: Annotated[
        bool,
        typer.Option(
            "--no-backup", help="Do not back up the present state before restoring over it."
        ),
    ] = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Restore a backup into its instance, or into a new one (--as).

    Restoring over an instance asks first (or --yes), backs up its present state (unless
    --no-backup), stops the app while its files are replaced, then checks its health.
    The repository and the backup are checked before anything is stopped. With --as, NAME
    may be an instance of another cluster that backs up to the same storage (set this
    cluster's storage with that cluster's key): its settings and credentials come from
    the backup.

    \b
    Examples:
      libresh restore nextcloud                         # the newest backup
      libresh restore nextcloud --snapshot 20261122T031500Z-3fa2
      libresh restore nextcloud --as nextcloud-test --domain test.example.org
    """
    from libresh_cli.apps.lock import instance_lock
    from libresh_cli.apps.record import require_record
    from libresh_cli.backup.service import (
        check_clone_target_free,
        find_backup,
        list_backups,
        restore_as,
        restore_backup,
    )

    app = app_context(ctx, output, dry_run, yes)
    if as_name is not None:
        from libresh_cli.apps.params import validate_instance_name

        validate_instance_name(as_name, "--as")  # before connecting
    if domain and not as_name:
        raise BadInputError("--domain goes with --as (the new instance's domain).")
    reporter = app.reporter()
    with kube_client(app) as kube:
        _say_if_simulated(app, kube, name)
        if as_name:
            check_clone_target_free(kube, as_name)
        else:
            require_record(kube, name)  # before any Job: restoring needs the instance here
        with reporter.spinning(f"Reading the backups of {name}"):
            backup = find_backup(list_backups(kube, name, reporter), snapshot, name)
        target = as_name or name
        summary = (
            f"Restore backup {backup.backup} of {name} ({backup.version}, {backup.time}) "
            f"into {target}"
        )
        if app.dry_run:
            emit(
                app,
                {**backup.to_dict(), "into": target, "dry_run": True},
                lambda _: summary + " (dry run).",
            )
            return
        if not as_name and not confirm(app, f"{summary}, replacing its present data?"):
            raise typer.Exit(1)
        apps = catalog(app)
        with reporter.spinning(summary):
            if as_name:
                result = _clone(
                    kube,
                    lambda: restore_as(kube, apps, name, as_name, domain, backup, reporter),
                    as_name,
                )
            else:
                with instance_lock(kube, name, "restore"):
                    result = restore_backup(
                        kube, apps, name, backup, reporter, safety_backup=not no_backup
                    )
    emit(app, result.to_dict(), _restore_text)


def _clone(kube: KubeClient, make: Callable[[], RestoreResult], new_name: str) -> RestoreResult:
    """`make` under the new instance's lease, as an install takes it: a second clone into the
    same name, or an install of it, is refused (exit 5) instead of interleaving. The lease
    lives in the instance's namespace, made first; a clone that fails before any of it is
    installed leaves no empty namespace behind."""
    from libresh_cli.apps.lock import instance_lock
    from libresh_cli.apps.record import read_record

    made_namespace = kube.get("v1", "Namespace", new_name) is None
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": new_name}}
    try:
        with instance_lock(kube, new_name, "restore", namespace):
            return make()
    except BaseException:
        if made_namespace and read_record(kube, new_name) is None:
            # Gone before the exit: running the same clone again at once must not find the
            # name's namespace terminating (the API refuses anything new in it).
            kube.delete_and_wait("v1", "Namespace", new_name, None)
        raise


def _restore_text(result: dict[str, Any]) -> str:
    source = f" (from {result['source']})" if result.get("source") else ""
    safety = (
        f" The state before is kept as backup {result['safety_backup']}."
        if result.get("safety_backup")
        else ""
    )
    return (
        f"✓ {result['instance']} restored from {result['backup']}{source} at "
        f"{result['version']}.{safety}"
    )
