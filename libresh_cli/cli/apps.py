"""install, list, status, diff, uninstall and secret: the commands people run most."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from libresh_cli.cli.common import (
    DryRunOption,
    OutputOption,
    YesOption,
    app_context,
    asker,
    catalog,
    confirm,
    confirm_by_typing,
    describe_plan,
    done,
    dry_run_said,
    kube_client,
    plan_table,
)
from libresh_cli.cli.context import AppContext, OutputFormat
from libresh_cli.cli.output import emit, key_value_table, rows_table
from libresh_cli.cli.terminal import marked
from libresh_cli.errors import NotFoundError


def install(
    ctx: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP", help="App from the catalog.")],
    name: Annotated[str | None, typer.Option(help="Instance name (default: the app's).")] = None,
    domain: Annotated[str | None, typer.Option(help="Domain name the app is served at.")] = None,
    set_values: Annotated[
        list[str] | None,
        typer.Option("--set", help="A parameter, KEY=VALUE (repeatable; never for secrets)."),
    ] = None,
    values: Annotated[
        Path | None, typer.Option("--values", "-f", help="YAML file of parameter values.")
    ] = None,
    version: Annotated[str | None, typer.Option(help="Version (default: the newest).")] = None,
    use: Annotated[
        list[str] | None,
        typer.Option(
            "--use",
            help="Another instance it works with, ROLE=INSTANCE (repeatable; ROLE=none for "
            "none). Default: the only one installed, else asked.",
        ),
    ] = None,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Install an app: ask for what is missing, show the plan, apply, wait until healthy.

    Running it again converges the instance to its definition ("nothing to do" when it is).

    \b
    Examples:
      libresh install nextcloud --domain cloud.example.org
      libresh install vaultwarden --name passwords --domain pw.example.org -f values.yaml --yes
      libresh install nextcloud --domain cloud.example.org --dry-run
      libresh install nextcloud --domain cloud.example.org --use office=office
    """
    from libresh_cli.apps.lifecycle import install as do_install
    from libresh_cli.apps.lifecycle import plan_install
    from libresh_cli.apps.links import parse_use_options
    from libresh_cli.apps.lock import instance_lock
    from libresh_cli.apps.params import (
        GivenValues,
        check_given,
        parse_set_options,
        read_values_file,
        validate_domain,
        validate_instance_name,
    )
    from libresh_cli.backup.service import refresh_schedule

    app = app_context(ctx, output, dry_run, yes)
    if name is not None:
        validate_instance_name(name)  # checked before connecting: a bad name costs nothing
    if domain is not None:
        validate_domain(domain)
    given = read_values_file(values) if values else GivenValues()
    parse_set_options(set_values or [], given)
    if domain is not None:
        given.add("domain", domain, "--domain")
    uses = parse_use_options(use or [])
    package = catalog(app).load(app_name)
    check_given(package, given)  # also before connecting
    if values is not None:
        _warn_if_secrets_are_readable(app, values, package, given)
    with kube_client(app) as kube:
        prepared = plan_install(
            kube, catalog(app), app_name, name, given, version, asker(app), uses
        )
        plan = prepared.plan
        for warning in prepared.warnings:
            app.reporter().warn(warning)
        if plan.nothing_to_do and prepared.record and prepared.record.status == "installed":
            app.err.print(
                f"{plan.instance} ({plan.app} {plan.version_to}) is up to date: nothing to do."
            )
            return
        emit(app, plan.to_dict(), lambda _: plan_table(plan))
        if app.dry_run:
            app.err.print(f"Dry run: {describe_plan(plan)}; nothing was changed.", style="dim")
            return
        if not confirm(app, _install_question(app, plan)):
            raise typer.Exit(1)
        reporter = app.reporter()
        with (
            reporter.spinning(f"Installing {plan.instance}"),
            instance_lock(kube, plan.instance, "install", prepared.objects[0]),
        ):
            do_install(kube, prepared, reporter)
            # Its scheduled backup steps take the app's new environment (a Secret it no
            # longer names could be gone).
            refresh_schedule(kube, catalog(app), plan.instance, reporter)
    instance = prepared.instance
    app.err.print(
        marked(
            "✓",
            "green",
            f"{instance.name} is installed and healthy"
            + (f" at {instance.url}" if instance.url else "")
            + ".",
        )
    )
    secret_params = [p.name for p in instance.app.parameters if p.secret]
    if secret_params:
        app.err.print(
            f"Credentials: libresh secret get {instance.name} {secret_params[0]}", style="dim"
        )


def _install_question(app: AppContext, plan: Any) -> str:
    """An installed instance whose settings change is not a new install: say what changes,
    and how a second instance is made instead."""
    if not plan.settings:
        return f"Install {plan.app} {plan.version_to} as {plan.instance}?"
    changes = ", ".join(f"{name}: {old} -> {new}" for name, old, new in plan.settings)
    app.err.print(
        f"{plan.instance} is installed: this changes its settings ({changes}). To install a "
        f"second {plan.app} instead, give it its own name: --name NAME."
    )
    return f"Change {plan.instance}'s settings ({changes})?"


def _warn_if_secrets_are_readable(app: AppContext, values: Path, package: Any, given: Any) -> None:
    """A values file that holds a password is a secret file: only its owner should read it."""
    import stat

    secrets = [p.name for p in package.parameters if p.secret and p.name in given.values]
    try:
        mode = stat.S_IMODE(values.stat().st_mode)
    except OSError:
        return
    if secrets and mode & 0o077:
        app.reporter().warn(
            f"{values} holds {', '.join(secrets)} and other users can read it "
            f"(mode {mode:04o}): chmod 600 {values}"
        )


def list_instances(ctx: typer.Context, output: OutputOption = None) -> None:
    """List every instance on the cluster with its version, health and URL.

    \b
    Examples:
      libresh list
      libresh list -o json
    """
    from libresh_cli.apps.inventory import list_instances as listing

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        summaries = listing(kube, catalog(app))
    emit(app, [s.to_dict() for s in summaries], _list_table)


def _list_table(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return "No instances. Install one: libresh install nextcloud --domain …"
    return rows_table(
        ["NAME", "APP", "VERSION", "STATUS", "HEALTH", "URL", "UPGRADE"],
        [
            [
                r["name"],
                r["app"],
                _version_text(r),
                r["status"],
                _health_text(r),
                r["url"],
                r["upgrade"] or "",
            ]
            for r in rows
        ],
    )


def _health_text(row: dict[str, Any]) -> str:
    problems = row.get("problems") or []
    if row.get("health") != "unhealthy" or not problems:
        return str(row.get("health") or "-")
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"unhealthy: {problems[0]}{more}"


def _version_text(row: dict[str, Any]) -> str:
    """The version, marked when upstream no longer maintains its series."""
    unmaintained = row.get("maintained") is False
    return f"{row['version']} (unmaintained)" if unmaintained else str(row["version"])


def status(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance name.")],
    output: OutputOption = None,
) -> None:
    """Show an instance: version, health, URL, its objects, upgrades and history.

    Exit code 0 when it is healthy (or uninstalled: nothing should run), 1 when something it
    should run is missing, not available or crash-looping (the problems are listed;
    `libresh install APP --name NAME` again re-makes what is missing), or when its last
    install failed (`last error` says why).

    \b
    Example:
      libresh status nextcloud
    """
    from libresh_cli.apps.inventory import instance_status
    from libresh_cli.backup.service import schedule_of

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        data = instance_status(kube, catalog(app), name)
        data["backup_schedule"] = schedule_of(kube, name)
    emit(app, data, _status_view)
    if data.get("health") == "unhealthy" or data.get("status") == "failed":
        raise typer.Exit(1)


def _uses_text(data: dict[str, Any]) -> str:
    uses = data.get("uses") or {}
    return ", ".join(f"{role}: {instance}" for role, instance in sorted(uses.items())) or "-"


def _status_view(data: dict[str, Any]) -> Any:
    from rich.console import Group

    summary = key_value_table(
        {
            "name": data.get("name"),
            "app": data.get("app"),
            "version": _version_text(data),
            "status": data.get("status"),
            "settings": _settings_text(data.get("settings") or {}),
            "health": "\n".join([str(data.get("health")), *(data.get("problems") or [])]),
            "next": _next_step(data),
            "url": data.get("url"),
            "upgrade available": data.get("upgrade") or "no",
            "upstream": (
                "no longer maintains this version: upgrade"
                if data.get("maintained") is False
                else "maintained"
                if data.get("maintained")
                else "unknown"
            ),
            "last backup": _last_backup_text(data.get("last_backup")),
            "backup schedule": data.get("backup_schedule") or "none",
            "last error": data.get("last_error"),
            "uses": _uses_text(data),
            "used by": ", ".join(
                f"{u['instance']} ({u['app']}, {u['role']})" for u in data.get("used_by") or []
            )
            or "-",
        }
    )
    objects = rows_table(
        ["KIND", "NAME", "STATE"], [[o["kind"], o["name"], o["state"]] for o in data["objects"]]
    )
    history = rows_table(
        ["WHEN", "ACTION", "FROM", "TO", "RESULT", "NOTE"],
        [
            [
                h["at"],
                h["action"],
                h["version_from"] or "",
                h["version_to"],
                h["result"],
                h["message"][:60],
            ]
            for h in data["history"][-5:]
        ],
    )
    return Group(summary, "", objects, "", history)


def _settings_text(settings: dict[str, Any]) -> str:
    """The values the instance was installed with (the record holds no secret)."""
    return "\n".join(f"{key}: {value}" for key, value in sorted(settings.items())) or "-"


def _next_step(data: dict[str, Any]) -> str | None:
    """What to run when the instance is not as it should be."""
    name, pending = data.get("name"), data.get("pending_upgrade")
    if pending:
        backup = pending.get("backup")
        return (
            f"libresh upgrade {name} (it restores backup {backup} and {pending.get('from')} first)"
            if backup
            else f"libresh backups list {name}, then libresh restore {name} --snapshot ID"
        )
    if data.get("status") == "failed":
        # An install that failed (or a re-install with other settings): nothing to restore,
        # the same command again once its cause is mended.
        return (
            f"mend what 'last error' says, then libresh install {data.get('app')} --name {name}"
            f" again (or libresh uninstall {name})"
        )
    if data.get("health") == "unhealthy":
        return f"libresh install {data.get('app')} --name {name} (re-makes what is missing)"
    return None


def _last_backup_text(last: dict[str, str] | None) -> str:
    return f"{last['at']} ({last['backup']})" if last else "never (libresh backup NAME)"


def diff(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance name.")],
    output: OutputOption = None,
) -> None:
    """Show what re-applying the installed version would change (hand edits, catalog changes),
    field by field (a Secret's values as "(changed)").

    A field changed by hand that libresh sets is shown; what libresh never set (a label
    someone added) is not its to change, and is not. Exit code 0 when nothing would change, 1
    when something would. Global options may follow the command (`diff nextcloud -v`).

    \b
    Example:
      libresh diff nextcloud || echo "drifted"
    """
    from libresh_cli.apps.inventory import diff_instance

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        plan = diff_instance(kube, catalog(app), name)
    emit(app, plan.to_dict(), lambda _: plan_table(plan))
    if not plan.nothing_to_do:
        raise typer.Exit(1)


def uninstall(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance name.")],
    purge_data: Annotated[
        bool, typer.Option(help="Also delete the data volumes and credentials (no way back).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(help="Uninstall even while other instances use it (they run without it)."),
    ] = False,
    yes: YesOption = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Remove an instance. Its data volumes and credentials are kept unless --purge-data.

    \b
    Examples:
      libresh uninstall vaultwarden
      libresh uninstall vaultwarden --dry-run
      libresh uninstall vaultwarden --purge-data --yes
      libresh uninstall office --force     # even though a Nextcloud uses it
    """
    from libresh_cli.apps.inventory import uninstall as do_uninstall
    from libresh_cli.apps.lock import instance_lock

    app = app_context(ctx, output, dry_run, yes)
    what = "and DELETE ALL ITS DATA" if purge_data else "(its data is kept)"
    with kube_client(app) as kube:
        from libresh_cli.apps.record import require_record

        require_record(kube, name)
        if not force:
            from libresh_cli.apps.links import check_not_used

            check_not_used(kube, name)  # before asking: the answer would not matter
        if app.dry_run:
            from libresh_cli.apps.preview import uninstall_actions

            dry_run_said(app, uninstall_actions(kube, name, purge_data), instance=name)
            return
        asked = (
            confirm_by_typing(app, f"Uninstall {name} {what}?", name)
            if purge_data
            else confirm(app, f"Uninstall {name} {what}?")
        )
        if not asked:
            app.err.print("Not confirmed: nothing was changed.")
            raise typer.Exit(1)
        reporter = app.reporter()
        with (
            reporter.spinning(f"Uninstalling {name}"),
            instance_lock(kube, name, "uninstall"),
        ):
            outcome = do_uninstall(kube, name, purge_data, reporter, force, catalog(app))
    done(app, {"instance": name, "outcome": outcome}, f"{name}: {outcome}.")


secret_app = typer.Typer(
    help="Read an instance's generated credentials (only when asked).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@secret_app.command("get")
def secret_get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance name.")],
    key: Annotated[
        str | None,
        typer.Argument(help="Which credential, e.g. admin_password (none: list their names)."),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Print one credential of an instance on stdout; without KEY, the names there are.

    \b
    Examples:
      libresh secret get nextcloud admin_password
      libresh secret get nextcloud admin_password -o json | jq -r .value
    """
    from libresh_cli.apps.lifecycle import existing_secret_values
    from libresh_cli.apps.record import require_record

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        require_record(kube, name)
        values = existing_secret_values(kube, name)
    if app.output is not OutputFormat.table:  # asked for by name: its value, or the names
        if key is None:
            emit(app, sorted(values), str)
        else:
            emit(app, {"instance": name, "key": key, "value": _credential(values, name, key)}, str)
        return
    if key is None:
        app.err.print(f"{name}'s credentials (libresh secret get {name} KEY prints one):")
        for known in sorted(values):
            typer.echo(known)
        return
    typer.echo(_credential(values, name, key))


def _credential(values: dict[str, str], name: str, key: str) -> str:
    if key not in values:
        raise NotFoundError(
            f"{name} has no credential {key!r}.",
            hint=f"It has: {', '.join(sorted(values)) or 'none'}.",
        )
    return values[key]


@secret_app.command("list")
def secret_list(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance name.")],
    output: OutputOption = None,
) -> None:
    """List the names of an instance's credentials (never their values).

    \b
    Example:
      libresh secret list nextcloud
    """
    from libresh_cli.apps.lifecycle import existing_secret_values
    from libresh_cli.apps.record import require_record

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        require_record(kube, name)
        keys = sorted(existing_secret_values(kube, name))
    if app.output is OutputFormat.table:
        app.out.print("\n".join(keys))
    else:
        emit(app, keys, str)
