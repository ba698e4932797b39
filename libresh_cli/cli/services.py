"""`libresh services`: how this cluster meets the postgres and redis requirements of apps."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from libresh_cli.cli.common import (
    DryRunOption,
    OutputOption,
    YesOption,
    app_context,
    done,
    dry_run_said,
    kube_client,
    read_secret_file,
)
from libresh_cli.cli.context import AppContext
from libresh_cli.cli.output import emit, rows_table
from libresh_cli.errors import BadInputError

if TYPE_CHECKING:
    from libresh_cli.kube.client import KubeClient

services_app = typer.Typer(
    help="""How backing services (postgres, redis) are provided on this cluster.

`embedded` (the default): a small server in each instance's namespace.
`external`: a shared server given once; each instance gets its own role and database.
An instance keeps the provider it was installed with.

\b
Examples:
  libresh services show
  libresh services set postgres --provider external --host db.example.org --password-file pw
  libresh services set postgres --provider embedded
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class Kind(StrEnum):
    postgres = "postgres"
    redis = "redis"


class Provider(StrEnum):
    embedded = "embedded"
    external = "external"


@services_app.command("show")
def show(ctx: typer.Context, output: OutputOption = None) -> None:
    """Show the provider of each backing service (never passwords).

    \b
    Example:
      libresh services show -o json
    """
    from libresh_cli.apps.model import SERVICE_KINDS
    from libresh_cli.apps.providers import read_settings

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        settings, _ = read_settings(kube)
    rows = [
        {
            "service": kind,
            "provider": settings.get(kind, {}).get("provider", "embedded"),
            **settings.get(kind, {}).get("external", {}),
        }
        for kind in SERVICE_KINDS
    ]
    emit(app, rows, _table)


def _table(rows: list[dict[str, Any]]) -> Any:
    return rows_table(
        ["SERVICE", "NEW INSTANCES GET", "EXTERNAL HOST", "PORT"],
        [[r["service"], r["provider"], r.get("host", ""), r.get("port", "")] for r in rows],
    )


@services_app.command("set")
def set_provider(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Argument(metavar="SERVICE", help="postgres or redis.")],
    provider: Annotated[Provider, typer.Option(help="embedded or external.")],
    host: Annotated[str | None, typer.Option(help="External server's host name or IP.")] = None,
    port: Annotated[int | None, typer.Option(help="External server's port.")] = None,
    admin_user: Annotated[str, typer.Option(help="PostgreSQL role that creates databases.")] = (
        "postgres"
    ),
    sslmode: Annotated[str, typer.Option(help="PostgreSQL sslmode.")] = "require",
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the admin password (postgres) or the password "
            "(redis); asked for on a terminal when left out. Never on the "
            "command line."
        ),
    ] = None,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Choose how new instances get a backing service.

    \b
    Examples:
      libresh services set postgres --provider external --host 10.0.0.5 --password-file pw
      libresh services set redis --provider external --host cache.lan --port 6380
      libresh services set postgres --provider embedded --dry-run
    """
    from libresh_cli.apps.providers import ExternalService, check_external
    from libresh_cli.apps.providers import set_provider as do_set

    app = app_context(ctx, output, dry_run, yes)
    external = None
    password = None
    if provider is Provider.external:
        if not host:
            raise BadInputError("--provider external needs --host.")
        default_port = 5432 if kind is Kind.postgres else 6379
        external = ExternalService(kind.value, host, port or default_port, admin_user, sslmode)
        check_external(external)  # before connecting, or asking for the password
        if not app.dry_run:
            password = _password(app, kind, password_file)
    where = f" at {external.host}:{external.port}" if external else ""
    with kube_client(app) as kube:
        if app.dry_run:
            _set_dry_run(app, kube, kind, f"{provider.value}{where}")
            return
        setting = do_set(kube, kind.value, external, password)
    details = setting.get("external", {})
    where = f" at {details['host']}:{details['port']}" if external else ""
    done(
        app,
        {"service": kind.value, "provider": setting["provider"], **details},
        f"{kind.value}: {setting['provider']}{where}, for instances installed from now on.",
    )


def _set_dry_run(app: AppContext, kube: KubeClient, kind: Kind, wanted: str) -> None:
    from libresh_cli.apps.providers import read_settings

    settings, _ = read_settings(kube)
    now = settings.get(kind.value, {}).get("provider", "embedded")
    dry_run_said(
        app,
        [f"give instances installed from now on {kind.value} {wanted} (now: {now})"],
        service=kind.value,
    )


def _password(app: AppContext, kind: Kind, path: Path | None) -> str | None:
    if path is not None:
        return read_secret_file(app, path, "--password-file")
    if not app.interactive:
        return None  # the service says which option gives it
    import questionary

    who = "admin password" if kind is Kind.postgres else "password"
    return str(questionary.password(f"The external {kind.value}'s {who}:").unsafe_ask())
