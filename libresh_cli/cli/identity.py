"""`libresh identity`, `libresh users`, `libresh groups`: one account for every app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
from libresh_cli.cli.context import AppContext, OutputFormat
from libresh_cli.cli.output import emit, key_value_table, rows_table

if TYPE_CHECKING:
    from libresh_cli.identity.directory import NewPassword, User
    from libresh_cli.identity.keycloak import KeycloakAdmin

identity_app = typer.Typer(
    help="""The cluster's identity provider (Keycloak): one account for every app.

\b
Examples:
  libresh identity enable --domain id.example.org
  libresh identity connect --url https://id.example.org --admin-user admin \\
      --admin-password-file admin.pw
  libresh identity status
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)
users_app = typer.Typer(
    help="""People's accounts in the identity provider, used to sign in to every app.

\b
Examples:
  libresh users add ada --email ada@example.org --group admins
  libresh users list -o json
  libresh users passwd ada
  libresh users remove ada --yes
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)
groups_app = typer.Typer(
    help="""Groups of users; an app lets in the groups it allows (admins and members by
default).

\b
Examples:
  libresh groups add editors
  libresh groups add-member editors ada
  libresh groups list
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@contextmanager
def _admin(app: AppContext) -> Iterator[KeycloakAdmin]:
    from libresh_cli.identity.connection import administer

    with kube_client(app) as kube, administer(kube) as admin:
        yield admin


# -- identity ----------------------------------------------------------------------------


@identity_app.command("connect")
def connect(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(help="Keycloak's base URL (https://id.example.org).")],
    admin_user: Annotated[str, typer.Option(help="An admin of Keycloak's master realm.")],
    admin_password_file: Annotated[
        Path, typer.Option(help="File holding that admin's password (never on the command line).")
    ],
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Use a Keycloak that runs already: check the admin login, make the realm `libresh`
    with the groups admins and members, and keep the connection in the cluster.

    \b
    Example:
      libresh identity connect --url https://id.example.org --admin-user admin \\
          --admin-password-file admin.pw
    """
    from libresh_cli.identity.connection import check_url
    from libresh_cli.identity.connection import connect as do_connect

    app = app_context(ctx, output, dry_run, yes)
    url = check_url(url)
    password = read_secret_file(app, admin_password_file, "--admin-password-file")
    if app.dry_run:
        dry_run_said(app, [f"connect to Keycloak at {url} as {admin_user}"], url=url)
        return
    with kube_client(app) as kube:
        provider = do_connect(kube, url, admin_user, password)
    done(app, provider.public(), f"Identity provider: {provider.issuer}")


@identity_app.command("status")
def status(ctx: typer.Context, output: OutputOption = None) -> None:
    """Show the identity provider, whether it answers, and how many users and groups it has.

    \b
    Example:
      libresh identity status -o json
    """
    from libresh_cli.identity.connection import status as read_status

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        found = read_status(kube)
    emit(app, found, key_value_table)
    if found.get("problem"):
        raise typer.Exit(1)


@identity_app.command("enable")
def enable(
    ctx: typer.Context,
    domain: Annotated[str, typer.Option(help="Domain of the sign-in pages (id.example.org).")],
    name: Annotated[str, typer.Option(help="Instance name of the Keycloak app.")] = "keycloak",
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Install Keycloak from the catalog (with its PostgreSQL) at a domain, then make it this
    cluster's identity provider (as `identity connect`, with its bootstrap admin).

    \b
    Examples:
      libresh identity enable --domain id.example.org
      libresh identity enable --domain id.example.org --dry-run
    """
    from libresh_cli.cli.apps import install

    app = app_context(ctx, output, dry_run, yes)
    ctx.invoke(
        install, ctx=ctx, app_name="keycloak", name=name, domain=domain, output=output,
        dry_run=app.dry_run, yes=app.yes,
    )  # fmt: skip
    if app.dry_run:
        return
    from libresh_cli.apps.record import require_record
    from libresh_cli.apps.render import CREDENTIALS_SECRET
    from libresh_cli.identity.connection import connect as do_connect
    from libresh_cli.kube.store import read_secret

    with kube_client(app) as kube:
        record = require_record(kube, name)
        password = read_secret(kube, CREDENTIALS_SECRET, name).get("admin_password", "")
        url = f"https://{record.params['domain']}"
        user = str(record.params.get("admin_username", "admin"))
        provider = do_connect(kube, url, user, password, instance=name)
    done(app, provider.public(), f"Identity provider: {provider.issuer}")


@identity_app.command("rotate-secret")
def rotate_secret(
    ctx: typer.Context,
    instance: Annotated[str, typer.Argument(help="Instance whose OIDC client gets a new secret.")],
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Give an instance's OIDC client a new secret, at the provider and in the instance's
    connection Secret libresh-oidc, then restart the pods that read it. The old secret stops
    working at once.

    \b
    Example:
      libresh identity rotate-secret nextcloud --yes
    """
    from libresh_cli.apps.record import require_record
    from libresh_cli.apps.sso import check_rotatable, rotate

    app = app_context(ctx, output, dry_run, yes)
    with kube_client(app) as kube:
        record = require_record(kube, instance)
        package = catalog(app).load(record.app)
        check_rotatable(kube, instance, package)
        if app.dry_run:
            dry_run_said(app, [f"give {instance}'s OIDC client a new secret"])
            return
        if not confirm(app, f"Give {instance}'s OIDC client a new secret? The old one stops now."):
            raise typer.Exit(1)
        restarted = rotate(kube, instance, package)
    done(
        app,
        {"instance": instance, "rotated": True, "restarted": restarted},
        f"{instance}: new client secret in Secret libresh-oidc; restarted "
        f"{', '.join(restarted) or 'nothing'} to read it.",
    )


# -- users -------------------------------------------------------------------------------


def _user_table(user: dict[str, Any]) -> Any:
    return key_value_table({**user, "groups": ", ".join(user["groups"])})


def _show_password(app: AppContext, user: User | None, new: NewPassword) -> None:
    data: dict[str, Any] = user.to_dict() if user else {"username": new.username}
    data["temporary_password"] = new.password
    if app.output is OutputFormat.table:
        app.out.print(f"{new.username}: temporary password {new.password}", markup=False)
        app.err.print(
            "Shown once, kept nowhere: give it to them; they choose their own at the first "
            "sign-in.",
            style="dim",
        )
    else:
        emit(app, data, str)


@users_app.command("add")
def add_user(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="User name (lowercase): what they sign in with.")],
    email: Annotated[str, typer.Option(help="Their email address.")],
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="A group to join (repeatable).")
    ] = None,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Add a user, with a temporary password shown once (they choose their own at the
    first sign-in). Without --group the user joins members.

    \b
    Examples:
      libresh users add ada --email ada@example.org --group admins
      libresh users add bob --email bob@example.org -o json
    """
    from libresh_cli.identity.directory import add_user as do_add
    from libresh_cli.identity.directory import check_email, check_username

    app = app_context(ctx, output, dry_run, yes)
    groups = group or ["members"]
    check_username(username)
    check_email(email)
    if app.dry_run:
        dry_run_said(app, [f"add the user {username} ({email}) to {', '.join(groups)}"])
        return
    with _admin(app) as admin:
        user, password = do_add(admin, username, email, groups)
    _show_password(app, user, password)


@users_app.command("list")
def list_users(ctx: typer.Context, output: OutputOption = None) -> None:
    """List users with their groups.

    \b
    Example:
      libresh users list -o json
    """
    from libresh_cli.identity.directory import list_users as do_list

    app = app_context(ctx, output)
    with _admin(app) as admin:
        users = [u.to_dict() for u in do_list(admin)]
    emit(
        app,
        users,
        lambda rows: rows_table(
            ["USER", "EMAIL", "GROUPS", "PASSWORD SET"],
            [
                [r["username"], r["email"], ", ".join(r["groups"]), not r["must_set_password"]]
                for r in rows
            ],
        ),
    )


@users_app.command("show")
def show_user(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="User name.")],
    output: OutputOption = None,
) -> None:
    """Show a user: email, groups, whether they have set their password.

    \b
    Example:
      libresh users show ada
    """
    from libresh_cli.identity.directory import show_user as do_show

    app = app_context(ctx, output)
    with _admin(app) as admin:
        user = do_show(admin, username).to_dict()
    emit(app, user, _user_table)


@users_app.command("remove")
def remove_user(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="User name.")],
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Remove a user: they can no longer sign in to any app.

    \b
    Example:
      libresh users remove ada --yes
    """
    from libresh_cli.identity.directory import remove_user as do_remove
    from libresh_cli.identity.directory import show_user as do_show

    app = app_context(ctx, output, dry_run, yes)
    with _admin(app) as admin:
        do_show(admin, username)  # unknown: said before asking
        if app.dry_run:
            dry_run_said(app, [f"remove the user {username}"])
            return
        if not confirm(app, f"Remove the user {username}? They can no longer sign in."):
            raise typer.Exit(1)
        do_remove(admin, username)
    done(app, {"username": username, "removed": True}, f"Removed the user {username}.")


@users_app.command("passwd")
def passwd(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="User name.")],
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Give a user a new temporary password (shown once); they choose their own at the next
    sign-in.

    \b
    Example:
      libresh users passwd ada
    """
    from libresh_cli.identity.directory import reset_password
    from libresh_cli.identity.directory import show_user as do_show

    app = app_context(ctx, output, dry_run, yes)
    with _admin(app) as admin:
        do_show(admin, username)
        if app.dry_run:
            dry_run_said(app, [f"give {username} a new temporary password"])
            return
        if not confirm(app, f"Replace {username}'s password with a temporary one?"):
            raise typer.Exit(1)
        new = reset_password(admin, username)
    _show_password(app, None, new)


# -- groups ------------------------------------------------------------------------------


@groups_app.command("add")
def add_group(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Group name (lowercase).")],
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Add a group.

    \b
    Example:
      libresh groups add editors
    """
    from libresh_cli.identity.directory import add_group as do_add
    from libresh_cli.identity.directory import check_group_name

    app = app_context(ctx, output, dry_run, yes)
    check_group_name(name)
    if app.dry_run:
        dry_run_said(app, [f"add the group {name}"])
        return
    with _admin(app) as admin:
        do_add(admin, name)
    done(app, {"group": name}, f"Added the group {name}.")


@groups_app.command("list")
def list_groups(ctx: typer.Context, output: OutputOption = None) -> None:
    """List groups with their members.

    \b
    Example:
      libresh groups list -o json
    """
    from libresh_cli.identity.directory import list_groups as do_list

    app = app_context(ctx, output)
    with _admin(app) as admin:
        groups = do_list(admin)
    emit(
        app,
        groups,
        lambda rows: rows_table(
            ["GROUP", "MEMBERS"], [[r["group"], ", ".join(r["members"])] for r in rows]
        ),
    )


@groups_app.command("remove")
def remove_group(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Group name.")],
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Remove a group (its users stay; apps that allowed only it let them in no more).

    \b
    Example:
      libresh groups remove editors --yes
    """
    from libresh_cli.identity.directory import remove_group as do_remove

    app = app_context(ctx, output, dry_run, yes)
    if app.dry_run:
        dry_run_said(app, [f"remove the group {name}"])
        return
    if not confirm(app, f"Remove the group {name}?"):
        raise typer.Exit(1)
    with _admin(app) as admin:
        do_remove(admin, name)
    done(app, {"group": name, "removed": True}, f"Removed the group {name}.")


@groups_app.command("add-member")
def add_member(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Group name.")],
    username: Annotated[str, typer.Argument(help="User name.")],
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Add a user to a group.

    \b
    Example:
      libresh groups add-member admins ada
    """
    from libresh_cli.identity.directory import add_member as do_add

    app = app_context(ctx, output, dry_run, yes)
    if app.dry_run:
        dry_run_said(app, [f"add {username} to {group}"])
        return
    with _admin(app) as admin:
        do_add(admin, group, username)
    done(app, {"group": group, "username": username}, f"{username} is in {group}.")


@groups_app.command("remove-member")
def remove_member(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Group name.")],
    username: Annotated[str, typer.Argument(help="User name.")],
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Take a user out of a group.

    \b
    Example:
      libresh groups remove-member admins ada --yes
    """
    from libresh_cli.identity.directory import remove_member as do_remove

    app = app_context(ctx, output, dry_run, yes)
    if app.dry_run:
        dry_run_said(app, [f"take {username} out of {group}"])
        return
    if not confirm(app, f"Take {username} out of {group}?"):
        raise typer.Exit(1)
    with _admin(app) as admin:
        do_remove(admin, group, username)
    done(app, {"group": group, "username": username, "removed": True}, f"{username} left {group}.")
