"""`libresh lab`: a local Kubernetes control plane with simulated nodes.

Service modules are imported inside the commands: they pull in the kubernetes client and
httpx, which `libresh --help` must not pay for.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from libresh_cli.cli.common import (
    DryRunOption,
    OutputOption,
    YesOption,
    app_context,
    dry_run_said,
)
from libresh_cli.cli.context import AppContext, OutputFormat
from libresh_cli.cli.output import emit, key_value_table, rows_table
from libresh_cli.errors import NotFoundError, OperationFailedError

lab_app = typer.Typer(
    help="""A real Kubernetes control plane on 127.0.0.1 with kwok-simulated nodes.

For trying libresh without a server, and for its tests. kube-apiserver, etcd,
kube-controller-manager and kube-scheduler run for real; pods are simulated (nothing runs),
unless the lab has a real node (--real-node: kubelet and containerd, as root).

\b
Examples:
  libresh lab up --nodes 3
  sudo -E libresh lab up --name real --real-node
  export KUBECONFIG=$(libresh lab kubeconfig)
  libresh lab status -o json
  libresh lab down
""",
    no_args_is_help=True,
    rich_markup_mode=None,  # typer's rich help costs ~50 ms at every start
)

NameOption = Annotated[str, typer.Option("--name", "-n", help="Name of the lab.")]


@lab_app.command("up")
def up(
    ctx: typer.Context,
    name: NameOption = "default",
    nodes: Annotated[
        int | None,
        typer.Option(
            help="Number of simulated nodes (1-100; 0-100 with --real-node). "
            "Default: 1, or 0 with --real-node."
        ),
    ] = None,
    real_node: Annotated[
        bool,
        typer.Option(
            "--real-node",
            help="Add a real node where pods really run: a kubelet (built with the control "
            "plane) and containerd, runc and the CNI plugins (Debian packages). Needs root.",
        ),
    ] = False,
    api_port: Annotated[
        int | None,
        typer.Option(help="Port of the API server on 127.0.0.1 (default: a free port)."),
    ] = None,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Start a lab cluster and write its kubeconfig (mode 0600).

    The first run builds the control plane from Go modules (needs Go 1.24+) and caches it;
    later runs start in seconds. A lab left behind by a crash is cleaned up first; a lab
    already running as asked is left as it is (exit 0).

    With --real-node, pods scheduled to the node lab-real-node really run, from images
    built here from Debian packages (mmdebstrap; once, then cached). It needs root and
    Debian's containerd, runc, containernetworking-plugins, iptables and mmdebstrap: a
    missing one is named, with how to install it (exit 6).

    \b
    Examples:
      libresh lab up
      libresh lab up --name ci --nodes 3 --api-port 16443
      libresh lab up --nodes 3 --dry-run
      sudo -E libresh lab up --name real --real-node
    """
    from libresh_cli.lab.cluster import LabSpec, lab_up, plan_lab_up

    app = app_context(ctx, output, dry_run, yes)
    simulated = nodes if nodes is not None else (0 if real_node else 1)
    spec = LabSpec(name=name, nodes=simulated, api_port=api_port, real_node=real_node)
    if app.dry_run:
        emit(app, plan_lab_up(app.paths, spec), _plan_table)
        app.err.print("Dry run: nothing was started.", style="dim")
        return
    reporter = app.reporter()
    with reporter.spinning("Starting the lab cluster"):
        lab, already = lab_up(app.paths, spec, reporter)
    if already:
        app.err.print(f"Lab '{lab.name}' is already running at {lab.server}; nothing to do.")
    from libresh_cli.lab.state import kubeconfig_path

    data = {
        "name": lab.name,
        "server": lab.server,
        "kubeconfig": str(kubeconfig_path(app.paths, lab.name)),
        "nodes": lab.nodes,
        "kubernetes_version": lab.kubernetes_version,
    }
    emit(app, data, lambda d: key_value_table({**d, "nodes": ", ".join(d["nodes"])}))
    if app.output is OutputFormat.table:
        app.err.print(
            f"Next: export KUBECONFIG=$(libresh lab kubeconfig --name {lab.name})", style="dim"
        )


def _plan_table(plan: dict[str, Any]) -> Any:
    rows = {**plan, "processes": ", ".join(plan["processes"]), "nodes": ", ".join(plan["nodes"])}
    return key_value_table({k: v for k, v in rows.items() if v is not None}, title="lab up would")


@lab_app.command("down")
def down(
    ctx: typer.Context,
    name: NameOption = "default",
    all_labs: Annotated[bool, typer.Option("--all", help="Stop every lab.")] = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Stop every process of a lab and remove its state (etcd data, PKI, kubeconfig).

    Stopping a lab that is not running is not an error.

    \b
    Examples:
      libresh lab down
      libresh lab down --all --dry-run
    """
    from libresh_cli.lab.cluster import lab_down
    from libresh_cli.lab.state import lab_dir, lab_names, validate_name

    app = app_context(ctx, output, dry_run, yes)
    reporter = app.reporter()
    names = lab_names(app.paths) if all_labs else [name]
    if app.dry_run:
        found = [n for n in names if validate_name(n) and lab_dir(app.paths, n).exists()]
        actions = [f"stop lab '{n}' and remove its state" for n in found]
        dry_run_said(app, actions or ["change nothing: no such lab"], labs=found)
        return
    stopped = [n for n in names if lab_down(app.paths, n, reporter)]
    if app.output is not OutputFormat.table:
        emit(app, {"stopped": stopped}, str)
    if not stopped:
        app.err.print(
            f"No lab named '{name}' is running; nothing to do."
            if not all_labs
            else "No lab is running; nothing to do."
        )


@lab_app.command("status")
def status(
    ctx: typer.Context,
    name: NameOption = "default",
    all_labs: Annotated[bool, typer.Option("--all", help="Show every lab.")] = False,
    output: OutputOption = None,
) -> None:
    """Show whether a lab runs: its processes, API address, nodes and kubeconfig.

    Exit code 0 when running, 1 when degraded (a process died) or broken, 4 when there is no
    such lab.

    \b
    Examples:
      libresh lab status
      libresh lab status --all -o json
    """
    from libresh_cli.lab.cluster import all_statuses, lab_status

    app = app_context(ctx, output)
    statuses = all_statuses(app.paths) if all_labs else [lab_status(app.paths, name)]
    if all_labs:
        emit(app, [s.to_dict() for s in statuses], _statuses_table)
        return
    only = statuses[0]
    if only.health == "stopped":
        raise NotFoundError(f"No lab named '{name}' is running.", hint="Start it: libresh lab up")
    if only.health == "broken":
        raise OperationFailedError(
            f"The lab '{name}' is broken: its state has no readable record (a crash while "
            "it was starting?).",
            hint=f"`libresh lab up --name {name}` cleans it up and starts it again; "
            f"`libresh lab down --name {name}` only cleans up.",
        )
    emit(app, only.to_dict(), _status_table)
    if only.health != "running":
        raise typer.Exit(1)


def _status_table(data: dict[str, Any]) -> Any:
    processes = ", ".join(
        f"{component} {'up' if alive else 'DOWN'}" for component, alive in data["processes"].items()
    )
    nodes_ready = data["nodes_ready"] if data["nodes_ready"] is not None else "?"
    return key_value_table(
        {
            "name": data["name"],
            "health": data["health"],
            "server": data["server"],
            "kubeconfig": data["kubeconfig"],
            "nodes ready": f"{nodes_ready}/{data['nodes']}",
            "processes": processes,
            "versions": f"Kubernetes v{data['kubernetes_version']}, kwok v{data['kwok_version']}",
        }
    )


def _statuses_table(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return "No labs."
    return rows_table(
        ["NAME", "HEALTH", "SERVER", "NODES"],
        [[r["name"], r["health"], r["server"], r["nodes"]] for r in rows],
    )


@lab_app.command("kubeconfig")
def kubeconfig(
    ctx: typer.Context, name: NameOption = "default", output: OutputOption = None
) -> None:
    """Print the path of the lab's kubeconfig, for KUBECONFIG or --kubeconfig.

    \b
    Examples:
      export KUBECONFIG=$(libresh lab kubeconfig)
      libresh lab kubeconfig --name ci -o json
    """
    from libresh_cli.lab.state import kubeconfig_path, load_state, validate_name

    app = app_context(ctx, output)
    validate_name(name)
    path = kubeconfig_path(app.paths, name)
    if load_state(app.paths, name) is None or not path.exists():
        raise NotFoundError(f"No lab named '{name}' is running.", hint="Start it: libresh lab up")
    if app.output is OutputFormat.table:
        typer.echo(str(path))  # as it is, for $(...)
    else:
        emit(app, {"name": name, "kubeconfig": str(path)}, str)


@lab_app.command("build")
def build(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(help="Build again even when cached.")] = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Build the lab's binaries from Go modules into the cache (what `lab up` does on first use).

    \b
    Examples:
      libresh lab build
      libresh lab build --dry-run     # cached, or what a build would make
    """
    from libresh_cli.lab.binaries import build_binaries, ensure_binaries

    app = app_context(ctx, output, dry_run, yes)
    if app.dry_run:
        _build_dry_run(app, force)
        return
    reporter = app.reporter()
    with reporter.spinning("Building the lab binaries"):
        built = (
            build_binaries(app.paths, reporter) if force else ensure_binaries(app.paths, reporter)
        )
    if app.output is OutputFormat.table:
        typer.echo(str(built.root))  # as it is, for $(...)
    else:
        emit(app, {"root": str(built.root)}, str)


def _build_dry_run(app: AppContext, force: bool) -> None:
    from libresh_cli.lab.binaries import (
        KUBERNETES_VERSION,
        KWOK_VERSION,
        cache_dir,
        find_binaries,
    )

    found = None if force else find_binaries(app.paths)
    if found is not None:
        dry_run_said(app, [f"use the binaries in {found.root}: nothing to build"])
        return
    dry_run_said(
        app,
        [
            f"build the control plane (Kubernetes v{KUBERNETES_VERSION}) and kwok "
            f"v{KWOK_VERSION} from Go modules into {cache_dir(app.paths)} (needs Go; "
            "15 to 30 minutes the first time)"
        ],
    )
