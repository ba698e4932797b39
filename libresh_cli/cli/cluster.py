"""`libresh cluster`: the k3s cluster itself: an HA cluster on Hetzner Cloud (create, scale,
status, destroy) and k3s upgrades."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from libresh_cli.cli.common import (
    DryRunOption,
    OutputOption,
    YesOption,
    app_context,
    confirm,
    dry_run_said,
    kube_client,
)
from libresh_cli.cli.context import AppContext
from libresh_cli.cli.infra import email_question
from libresh_cli.cli.output import emit, rows_table
from libresh_cli.errors import BadInputError, LibreshError

if TYPE_CHECKING:
    from libresh_cli.cluster.hetzner.report import CreateOptions
    from libresh_cli.cluster.spec import ApiToken, ClusterSpec
    from libresh_cli.hetzner.cloud import HetznerCloud

cluster_app = typer.Typer(
    help="""The k3s cluster itself: a highly-available cluster on Hetzner Cloud (3 servers with
embedded etcd, agents, a load balancer for the API), and k3s upgrades.

The Hetzner Cloud API token is read from HCLOUD_TOKEN, or from --token-file FILE (mode
0600); never from the cluster file or the command line.

\b
Examples:
  libresh cluster create -f cluster.yaml
  libresh cluster status -f cluster.yaml
  libresh cluster scale -f cluster.yaml --agents 4
  libresh cluster destroy -f cluster.yaml
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
    from libresh_cli.cluster.k3s import parse_version
    from libresh_cli.cluster.upgrade import apply_upgrade, plan_upgrade

    parse_version(k3s_version)  # before connecting
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


FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="The cluster file (see `cluster create --help`).")
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        help="A file (mode 0600) holding the Hetzner Cloud API token, if HCLOUD_TOKEN is not set."
    ),
]


def _cloud(token_file: Path | None) -> tuple[HetznerCloud, ApiToken]:
    from libresh_cli.cluster.spec import read_token
    from libresh_cli.hetzner.cloud import HetznerCloud

    token = read_token(os.environ, token_file)
    return HetznerCloud(token.value, token.source), token


def _create_options(install_script: Path | None) -> tuple[CreateOptions, Path | None]:
    """How k3s is installed (--install-script), and the SSH config the tests point at."""
    from libresh_cli.cluster.bootstrap import InstallSource, SourceKind
    from libresh_cli.cluster.hetzner.report import CreateOptions
    from libresh_cli.remote.ssh import SSH_CONFIG_ENV

    source = InstallSource(SourceKind.SCRIPT, install_script) if install_script else InstallSource()
    ssh_config = os.environ.get(SSH_CONFIG_ENV)
    return CreateOptions(source=source), Path(ssh_config) if ssh_config else None


def _spec(path: Path) -> ClusterSpec:
    from libresh_cli.cluster.spec import load_spec

    return load_spec(path)


@cluster_app.command("create")
def create(
    ctx: typer.Context,
    file: FileOption,
    token_file: TokenFileOption = None,
    email: Annotated[
        str | None,
        typer.Option(help="Let's Encrypt contact email (else the file's `email`, or asked)."),
    ] = None,
    install_script: Annotated[
        Path | None,
        typer.Option(help="A k3s install script to run instead of https://get.k3s.io."),
    ] = None,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Create (or repair) an HA k3s cluster on Hetzner Cloud from a cluster file: SSH key,
    private network, firewall, spread placement group, a load balancer for the API (only with
    api_access: public_load_balancer), the servers; then k3s over SSH (the first server
    with cluster-init, then every other server and agent at the same time), a kubeconfig
    pointing at the API, and the `ha` infra profile. Everything is found by the cluster's
    labels first: running it again creates nothing twice, and picks up where an interrupted
    run stopped.

    \b
    The cluster file (YAML):
      name: coop                        # prefixes every resource
      provider: hetzner
      locations: [fsn1, nbg1, hel1]     # nodes go round them (one network zone)
      image: debian-12
      ssh_key: ~/.ssh/id_ed25519.pub    # uploaded; its private key logs in
      servers: {type: cx23, count: 3}   # odd: etcd needs a majority
      agents: {type: cx33, count: 2}
      allowed_networks: {ssh: [203.0.113.7/32], api: [203.0.113.7/32]}
      api_access: firewall              # 6443 on the servers, allowed_networks.api only;
                                        # public_load_balancer: a load balancer whose 6443
                                        # is open to the whole internet
      private_network: 10.0.0.0/16      # or none: flannel over WireGuard, public addresses
      k3s_version: v1.34.4+k3s1
      email: admin@example.org          # Let's Encrypt

    \b
    Examples:
      export HCLOUD_TOKEN=...   # or --token-file ~/.config/libresh/hcloud-token
      libresh cluster create -f cluster.yaml
      libresh cluster create -f cluster.yaml -o json
      libresh cluster create -f cluster.yaml --dry-run   # what exists, what would be made
    """
    from libresh_cli.cluster.hetzner.create import create as create_cluster

    app = app_context(ctx, output, dry_run, yes)
    spec = _spec(file)
    if email is not None:
        from libresh_cli.infra.service import check_email

        check_email(email)  # before anything is created
    if install_script is not None and not install_script.is_file():
        raise BadInputError(f"--install-script {install_script}: no such file.")
    cloud, token = _cloud(token_file)
    if app.dry_run:
        from libresh_cli.cluster.preview import create_actions

        dry_run_said(app, create_actions(cloud, spec), cluster=spec.name)
        return
    report = create_cluster(
        cloud, spec, app.paths, app.reporter(), *_create_options(install_script)
    )
    _install_infra(app, report.kubeconfig, spec, token.value, report.network, email)
    emit(app, report.to_dict(), _servers_table)
    app.err.print(
        f"Cluster {spec.name} is up: kubeconfig {report.kubeconfig} (API {report.api_server}).\n"
        f"Next: libresh --kubeconfig {report.kubeconfig} install nextcloud"
    )


def _install_infra(
    app: AppContext,
    kubeconfig: str,
    spec: ClusterSpec,
    token: str,
    network: str | None,
    email: str | None,
) -> None:
    """The `ha` profile, with the token the cluster was made with (kept in a Secret for the
    cloud-controller-manager and the CSI driver), as `libresh infra install` does it."""
    from libresh_cli.infra.service import HcloudAccess
    from libresh_cli.infra.service import install as install_infra
    from libresh_cli.kube.client import KubeClient
    from libresh_cli.kube.connection import KubeTarget

    reporter = app.reporter()
    with KubeClient.connect(KubeTarget(Path(kubeconfig), spec.name)) as kube:
        install_infra(
            kube,
            "ha",
            email or spec.email,
            reporter,
            hcloud=HcloudAccess(token, network),
            # Traefik's load balancer goes where the API's does (cluster/hetzner/resources.py).
            location=spec.locations[0],
            ask_email=email_question(app),
            busy=reporter.spinning,
        )
    reporter.done("Infrastructure: profile ha installed")


def _servers_table(data: dict[str, Any]) -> Any:
    return rows_table(
        ["SERVER", "ROLE", "LOCATION", "PUBLIC", "PRIVATE", "K3S"],
        [
            [s["name"], s["role"], s["location"], s["public_ipv4"] or "-",
             s["private_ipv4"] or "-", data["k3s"].get(s["name"], "-")]
            for s in data["servers"]
        ],
    )  # fmt: skip


@cluster_app.command("status")
def status(
    ctx: typer.Context,
    file: FileOption,
    token_file: TokenFileOption = None,
    output: OutputOption = None,
) -> None:
    """The cluster's servers (Hetzner), nodes and etcd members (Kubernetes) and the health of
    the API load balancer's targets. Exit code 1 when something is not healthy.

    \b
    Examples:
      libresh cluster status -f cluster.yaml
      libresh cluster status -f cluster.yaml -o json | jq .etcd_members
    """
    from libresh_cli.cluster.hetzner.local import kubeconfig_destination
    from libresh_cli.cluster.hetzner.status import status as cluster_status
    from libresh_cli.kube.client import KubeClient
    from libresh_cli.kube.connection import KubeTarget

    app = app_context(ctx, output)
    spec = _spec(file)
    cloud, _ = _cloud(token_file)
    path = kubeconfig_destination(app.paths, spec.name).path
    if path.exists():
        with KubeClient.connect(KubeTarget(path, spec.name), timeout=10.0) as kube:
            data = cluster_status(cloud, spec.name, spec.labels, kube, spec.api_access)
    else:
        data = cluster_status(cloud, spec.name, spec.labels, None, spec.api_access)
    emit(app, data, _status_table)
    if not data["healthy"]:
        raise typer.Exit(1)


def _status_table(data: dict[str, Any]) -> Any:
    nodes = {n["name"]: n for n in data["nodes"]}
    targets = (data["load_balancer"] or {}).get("targets", {})
    return rows_table(
        ["SERVER", "ROLE", "STATUS", "NODE", "ETCD", "API TARGET"],
        [
            [s["name"], s["role"], s["status"],
             ("Ready" if nodes[s["name"]]["ready"] else "NotReady") if s["name"] in nodes else "-",
             "member" if s["name"] in data["etcd_members"] else "-",
             targets.get(s["name"], "-")]
            for s in data["servers"]
        ],
    )  # fmt: skip


@cluster_app.command("scale")
def scale(
    ctx: typer.Context,
    file: FileOption,
    agents: Annotated[
        int | None,
        typer.Option(min=0, max=50, help="How many agents (default: the file's agents.count)."),
    ] = None,
    token_file: TokenFileOption = None,
    install_script: Annotated[
        Path | None, typer.Option(help="A k3s install script instead of https://get.k3s.io.")
    ] = None,
    yes: YesOption = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Add or remove agents. New agents are created and joined (all at once); removed ones
    (the highest-numbered first) are drained, their pods moved, then deleted. Removing asks
    first (--yes for scripts). Put the same count in the file, or `create` adds them back.

    \b
    Examples:
      libresh cluster scale -f cluster.yaml --agents 4
      libresh cluster scale -f cluster.yaml --agents 1 --yes
      libresh cluster scale -f cluster.yaml --agents 1 --dry-run
    """
    from libresh_cli.cluster.hetzner.scale import plan_scale
    from libresh_cli.cluster.hetzner.scale import scale as scale_cluster

    app = app_context(ctx, output, dry_run, yes)
    spec = _spec(file)
    count = spec.agents.count if agents is None else agents
    if count and not spec.agents.server_type:
        raise BadInputError(f"{spec.source}: agents.type is needed to add agents.")
    cloud, _ = _cloud(token_file)
    if app.dry_run:
        from libresh_cli.cluster.preview import scale_actions

        dry_run_said(app, scale_actions(cloud, spec, count), cluster=spec.name, agents=count)
        return
    plan = plan_scale(cloud, spec, count)
    removing = plan.removing
    if removing:
        names = ", ".join(s.name for s in removing)
        if not confirm(app, f"Drain and delete {len(removing)} agent(s): {names}?"):
            raise LibreshError("Nothing was changed.")
    reporter = app.reporter()
    report = scale_cluster(cloud, plan, app.paths, reporter, *_create_options(install_script))
    emit(app, {**report.to_dict(), "removed": [s.name for s in removing]}, _servers_table)
    if count != spec.agents.count:
        reporter.warn(
            f"{spec.source} says agents.count: {spec.agents.count}; set it to {count}, or "
            "the next `cluster create` adds agents back."
        )


@cluster_app.command("destroy")
def destroy(
    ctx: typer.Context,
    file: FileOption,
    name: Annotated[
        str | None,
        typer.Argument(
            help="The cluster's name, as a check that the file is the cluster meant (needed "
            "with --yes)."
        ),
    ] = None,
    token_file: TokenFileOption = None,
    yes: YesOption = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Delete the cluster: every server, the load balancer, firewall, placement group,
    network and SSH key carrying its labels (nothing else: volumes made by the CSI driver,
    which hold your data, are kept and listed in the Hetzner console). Asks for the cluster's
    name to be typed; scripts give it as NAME with --yes.

    \b
    Examples:
      libresh cluster destroy -f cluster.yaml
      libresh cluster destroy -f cluster.yaml --dry-run     # what would be deleted
      libresh cluster destroy coop -f cluster.yaml --yes
    """
    from libresh_cli.cluster.hetzner.destroy import destroy as destroy_cluster

    app = app_context(ctx, output, dry_run, yes)
    spec = _spec(file)
    if name is not None and name != spec.name:
        raise BadInputError(
            f"{name!r} is not the name of the cluster in {file} ({spec.name}); nothing was deleted."
        )
    if not app.dry_run:
        _check_destroy_name(app, spec.name, name)
    cloud, _ = _cloud(token_file)
    if app.dry_run:
        from libresh_cli.cluster.preview import destroy_actions

        actions = destroy_actions(cloud, spec.labels)
        dry_run_said(app, actions or ["delete nothing: nothing carries the cluster's labels"])
        return
    deleted = destroy_cluster(cloud, spec.name, spec.labels, app.paths, app.reporter())
    emit(app, {"cluster": spec.name, "deleted": deleted}, lambda d: rows_table(
        ["DELETED"], [[item] for item in d["deleted"]]))  # fmt: skip
    if not deleted:
        app.err.print(f"Nothing carries the labels of cluster {spec.name}: nothing to delete.")


def _check_destroy_name(app: AppContext, name: str, given: str | None) -> None:
    """--yes alone is not enough: the name given beside it says the file is the one meant
    (`--yes NAME`, as before, still reads so: NAME is then the argument)."""
    if app.yes and given is not None:
        return
    if app.yes:
        raise BadInputError(
            f"Destroying cluster {name} without being asked needs its name beside --yes.",
            hint=f"libresh cluster destroy {name} -f FILE --yes",
        )
    if not app.interactive:
        raise BadInputError(
            f"Destroying cluster {name} must be confirmed, and there is no terminal to ask.",
            hint=f"Pass its name and --yes to destroy it without being asked: "
            f"libresh cluster destroy {name} -f FILE --yes",
        )
    import questionary

    typed = questionary.text(
        f"This deletes every server of cluster {name} and what they run. Type its name to go on:"
    ).unsafe_ask()
    if typed != name:
        raise LibreshError(f"{typed!r} is not {name!r}; nothing was deleted.")
