"""`libresh infra`: the cluster's curated infrastructure (TLS, ingress), the k3s way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from libresh_cli.cli.common import (
    DryRunOption,
    OutputOption,
    YesOption,
    app_context,
    confirm,
    kube_client,
    read_secret_file,
)
from libresh_cli.cli.context import AppContext
from libresh_cli.cli.output import emit, rows_table
from libresh_cli.errors import BadInputError, LibreshError

infra_app = typer.Typer(
    help="""Install and check the cluster's infrastructure on k3s.

Components are pinned data (profiles) installed as HelmChart and HelmChartConfig objects that
k3s' helm-controller acts on: no helm binary needed here. Profile `single` (one server):
cert-manager with Let's Encrypt ClusterIssuers (staging and production, HTTP-01 through
Traefik), Traefik configured (HTTP to HTTPS, timeouts for large uploads),
system-upgrade-controller (for `libresh cluster upgrade`), and k3s' local-path storage
checked. Profile `ha` (Hetzner): the same without local-path, plus hcloud's
cloud-controller-manager and CSI driver (--hcloud-token-file and --hcloud-location, once;
--hcloud-network when there is a private network); Traefik then gets a Hetzner load balancer.

\b
Examples:
  libresh infra install --email admin@example.org
  libresh infra install --dry-run
  libresh infra install --profile ha --hcloud-token-file ~/hcloud.token --hcloud-location fsn1
  libresh infra status -o json
  libresh infra upgrade --dry-run
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@infra_app.command("install")
def install(
    ctx: typer.Context,
    email: Annotated[
        str | None,
        typer.Option(help="Let's Encrypt contact email (asked once, then kept in the cluster)."),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Profile: single or ha (default: the installed one, or single)."),
    ] = None,
    hcloud_token_file: Annotated[
        Path | None,
        typer.Option(help="ha: a file holding the Hetzner Cloud API token (kept in a Secret)."),
    ] = None,
    hcloud_network: Annotated[
        str | None,
        typer.Option(help="ha: the Hetzner private network's name or ID (omitted: none)."),
    ] = None,
    hcloud_location: Annotated[
        str | None,
        typer.Option(
            help="ha: the Hetzner location (e.g. fsn1) of the load balancer in front of "
            "Traefik (given once, then kept in the cluster)."
        ),
    ] = None,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Install or update the infrastructure. A re-run changes nothing; a changed value
    (e.g. a new --email) is applied to what uses it. It asks nothing but a missing email
    (--yes is taken for scripts that pass it to every command).

    \b
    Examples:
      libresh infra install --email admin@example.org
      libresh infra install --email new@example.org --dry-run
    """
    from libresh_cli.infra.profile import load_profile
    from libresh_cli.infra.service import (
        HcloudAccess,
        check_email,
        check_location,
    )
    from libresh_cli.infra.service import install as install_infra

    app = app_context(ctx, output, dry_run, yes)
    if profile is not None:
        load_profile(profile)  # checked before connecting, as the email
    if email is not None:
        check_email(email)  # checked before connecting
    if hcloud_location is not None:
        check_location(hcloud_location)
    hcloud = None
    if hcloud_network is not None and hcloud_token_file is None:
        raise BadInputError(
            "--hcloud-network is kept with the token: give --hcloud-token-file with it."
        )
    if hcloud_token_file is not None:
        token = read_secret_file(app, hcloud_token_file, "--hcloud-token-file")
        hcloud = HcloudAccess(token, hcloud_network)
    reporter = app.reporter()
    with kube_client(app) as kube:
        result = install_infra(
            kube,
            profile,
            email,
            reporter,
            hcloud=hcloud,
            location=hcloud_location,
            ask_email=email_question(app),
            busy=reporter.spinning,
            dry_run=app.dry_run,
        )
    emit(app, result.to_dict(), _changes_table)
    if app.dry_run:
        app.err.print("Dry run: nothing was changed.", style="dim")
    elif result.nothing_to_do:
        app.err.print("Nothing to do: the infrastructure is as the profile says.")


@infra_app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    yes: YesOption = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Move the components to the versions and values this libresh release pins: shows what
    changes first, then asks (--yes for scripts).

    \b
    Examples:
      libresh infra upgrade --dry-run
      libresh infra upgrade --yes
    """
    from libresh_cli.infra.service import apply_install, plan_install

    app = app_context(ctx, output, dry_run, yes)
    reporter = app.reporter()
    with kube_client(app) as kube:
        profile, result = plan_install(kube, None, None)
        changed = [c for c in result.changes if c.action != "unchanged"]
        emit(
            app,
            result.to_dict(),
            lambda data: _changes_table({"changes": [c.__dict__ for c in changed]}),
        )
        if result.nothing_to_do:
            app.err.print("Nothing to do: the infrastructure runs what this release pins.")
            return
        if app.dry_run:
            app.err.print("Dry run: nothing was changed.", style="dim")
            return
        if not confirm(app, f"Apply these {len(changed)} change(s)?"):
            raise LibreshError("Nothing was changed.")
        with reporter.spinning("Upgrading the infrastructure"):
            apply_install(kube, profile, result, reporter)


def email_question(app: AppContext) -> Callable[[], str] | None:
    """Asks for the Let's Encrypt email on a terminal; None (the flag is named) without one."""
    if not app.interactive:
        return None

    def ask() -> str:
        import questionary

        from libresh_cli.infra.service import EMAIL

        return str(
            questionary.text(
                "Contact email for Let's Encrypt (warnings before certificates expire):",
                validate=lambda text: bool(EMAIL.fullmatch(text)) or "Give an email address.",
            ).unsafe_ask()
        )

    return ask


def _changes_table(data: dict[str, Any]) -> Any:
    return rows_table(
        ["ACTION", "KIND", "NAME"], [[c["action"], c["kind"], c["name"]] for c in data["changes"]]
    )


@infra_app.command("status")
def status(ctx: typer.Context, output: OutputOption = None) -> None:
    """Each component: pinned and running version, health; the issuers; memory requests.

    Exit code 1 when something is not healthy (for monitoring).

    \b
    Examples:
      libresh infra status
      libresh infra status -o json | jq .memory_requests
    """
    from libresh_cli.infra.service import status as infra_status

    app: AppContext = app_context(ctx, output)
    with kube_client(app) as kube:
        data = infra_status(kube)
    emit(app, data, _status_table)
    if not data["healthy"]:
        raise typer.Exit(1)


def _status_table(data: dict[str, Any]) -> Any:
    rows = [
        [
            c["name"],
            c["pinned"],
            c["running"] or "-",
            c["health"],
            f"{c['memory_requests'] >> 20}Mi",
            c["detail"],
        ]
        for c in data["components"]
    ]
    rows += [
        [i["name"], "", "", "ready" if i["ready"] else "not ready", "", i["detail"]]
        for i in data["issuers"]
    ]
    rows.append(["total", "", "", "", data["memory_requests"], f"profile {data['profile']}"])
    return rows_table(["COMPONENT", "PINNED", "RUNNING", "HEALTH", "MEMORY", "DETAIL"], rows)
