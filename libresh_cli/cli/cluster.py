"""`libresh cluster`: the k3s cluster itself (upgrades)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from libresh_cli.cli.common import (
    DryRunOption,
    OutputOption,
    YesOption,
    app_context,
    confirm,
    kube_client,
)
from libresh_cli.cli.output import emit, rows_table
from libresh_cli.errors import LibreshError

cluster_app = typer.Typer(
    help="""The k3s cluster itself.

\b
Examples:
  libresh cluster upgrade --k3s-version v1.35.1+k3s1 --dry-run
  libresh cluster upgrade --k3s-version v1.35.1+k3s1 --yes
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@cluster_app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    k3s_version: Annotated[
        str, typer.Option("--k3s-version", help="The k3s release to move to, e.g. v1.35.1+k3s1.")
    ],
    yes: YesOption = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Upgrade k3s on every node through system-upgrade-controller: servers one at a time
    (cordoned), then agents one at a time (drained). Refuses a downgrade or a skipped minor
    version. Needs `libresh infra install` (it installs the controller).

    \b
    Examples:
      libresh cluster upgrade --k3s-version v1.35.1+k3s1 --dry-run
      libresh cluster upgrade --k3s-version v1.35.1+k3s1 --yes
    """
    from libresh_cli.cluster.upgrade import apply_upgrade, plan_upgrade

    app = app_context(ctx, output, dry_run, yes)
    with kube_client(app) as kube:
        plan = plan_upgrade(kube, k3s_version)
        emit(app, plan.to_dict(), _nodes_table)
        if not plan.changed:
            app.err.print(f"Nothing to do: the upgrade to {k3s_version} is already planned.")
            return
        if app.dry_run:
            app.err.print("Dry run: no Plan was created.", style="dim")
            return
        if not confirm(app, f"Upgrade {len(plan.nodes)} node(s) to k3s {k3s_version}?"):
            raise LibreshError("Nothing was changed.")
        apply_upgrade(kube, plan)
    app.err.print(
        f"Plans k3s-server and k3s-agent set to {k3s_version}: system-upgrade-controller "
        "upgrades the nodes one at a time (watch: kubectl get nodes)."
    )


def _nodes_table(data: dict[str, Any]) -> Any:
    return rows_table(
        ["NODE", "FROM", "TO"], [[n["node"], n["from"], n["to"]] for n in data["nodes"]]
    )
