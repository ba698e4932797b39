"""`libresh bootstrap`: make a host a single-node k3s cluster, over SSH or on this machine.

Service modules are imported inside the commands (`libresh --help` must stay fast)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from libresh_cli.cli.common import DryRunOption, OutputOption, YesOption, app_context, confirm
from libresh_cli.cli.context import AppContext
from libresh_cli.cli.output import emit, key_value_table
from libresh_cli.errors import BadInputError

if TYPE_CHECKING:
    from libresh_cli.cluster.bootstrap import BootstrapReport, InstallSource
    from libresh_cli.remote.base import Host
    from libresh_cli.remote.ssh import HostKey, ResolvedHost

bootstrap_app = typer.Typer(
    help="""Install k3s on a server and get a kubeconfig for it.

Checks the host first (system, architecture, memory, disk, ports 80/443/6443, memory
cgroup) and changes nothing if it is not ready. Writes /etc/rancher/k3s/config.yaml, runs the
k3s installer, waits for the node, and writes a kubeconfig (0600) on this machine.
Re-running is safe: a finished host is left as it is, an interrupted run is completed.

\b
Examples:
  libresh bootstrap ssh root@203.0.113.10
  libresh bootstrap ssh admin@board.lan --context board --merge
  libresh bootstrap ssh myvps --accept-new-host-key --yes     # from a script
  libresh bootstrap ssh root@10.0.0.5 --airgap ~/k3s-files    # host without internet
  sudo libresh bootstrap local --address 203.0.113.10
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)

VersionOption = Annotated[
    str | None,
    typer.Option(help="k3s release to install, e.g. v1.34.4+k3s1 (default: the tested one)."),
]
ChannelOption = Annotated[
    str | None, typer.Option(help="k3s channel instead of a version: stable, latest, v1.34…")
]
ContextOption = Annotated[
    str | None,
    typer.Option("--context", help="Name of the kubeconfig context (default: the host's name)."),
]
KubeconfigOption = Annotated[
    Path | None,
    typer.Option(
        help="Kubeconfig file to write (default: ~/.config/libresh/kubeconfigs/CONTEXT.yaml); "
        "with --merge, the one to add the context to (default: $KUBECONFIG or ~/.kube/config)."
    ),
]
MergeOption = Annotated[
    bool, typer.Option("--merge", help="Add the cluster as a named context to a kubeconfig.")
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        help="Public address or name of the server, for its TLS certificate and the "
        "kubeconfig (default over SSH: the host name ssh connects to)."
    ),
]
NodeNameOption = Annotated[
    str | None, typer.Option(help="Kubernetes node name (default: the host's name).")
]
StoragePathOption = Annotated[
    str | None,
    typer.Option(
        help="Directory on the server for volumes of k3s' local-path storage "
        "(default: k3s' /var/lib/rancher/k3s/storage), e.g. a bigger data disk."
    ),
]
ScriptOption = Annotated[
    Path | None,
    typer.Option(help="Run this k3s install script instead of downloading get.k3s.io there."),
]
AirgapOption = Annotated[
    Path | None,
    typer.Option(
        help="For hosts without internet: download k3s (binary, images, script) into DIR here, "
        "verify checksums, send them to the host."
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Go on despite low memory or disk, or an untested system."),
]


@bootstrap_app.command("ssh")
def bootstrap_ssh(
    ctx: typer.Context,
    destination: Annotated[str, typer.Argument(help="[USER@]HOST, or a Host of ~/.ssh/config.")],
    port: Annotated[
        int | None, typer.Option(help="SSH port (default: from ssh config, 22).")
    ] = None,
    identity: Annotated[
        Path | None, typer.Option("--identity", "-i", help="Private key file to log in with.")
    ] = None,
    accept_new_host_key: Annotated[
        bool,
        typer.Option(
            "--accept-new-host-key",
            help="Trust the host's key if it is not known yet (for scripts; a changed key is "
            "still refused).",
        ),
    ] = False,
    k3s_version: VersionOption = None,
    k3s_channel: ChannelOption = None,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
    merge: MergeOption = False,
    address: AddressOption = None,
    node_name: NodeNameOption = None,
    storage_path: StoragePathOption = None,
    install_script: ScriptOption = None,
    airgap: AirgapOption = None,
    force: ForceOption = False,
    yes: YesOption = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Bootstrap k3s on a server over SSH.

    Uses the system's OpenSSH client, so your ~/.ssh/config (Host aliases, ProxyJump,
    IdentityFile), ssh-agent and known_hosts apply; LIBRESH_SSH_CONFIG names another config
    file. One connection carries every step. Log in as root, or as a user with passwordless
    sudo. An unknown host key is shown and must be confirmed (or --accept-new-host-key); a
    changed one is refused.

    \b
    Examples:
      libresh bootstrap ssh root@203.0.113.10
      libresh bootstrap ssh pi@raspberrypi.local --context home --merge
      libresh bootstrap ssh myvps --k3s-version v1.34.4+k3s1 --dry-run
    """
    from libresh_cli.cluster.bootstrap import context_name
    from libresh_cli.remote.ssh import SSH_CONFIG_ENV, SshHost, SshTarget, check_identity

    _check_names(context, address)  # before ssh is asked anything
    if identity is not None:
        check_identity(identity)
    app = app_context(ctx, output, dry_run, yes)
    config = os.environ.get(SSH_CONFIG_ENV)
    target = SshTarget(destination, port, identity, Path(config) if config else None)
    options = _options(
        node_name, storage_path, k3s_version, k3s_channel, install_script, airgap, force
    )
    host = SshHost(target, interactive=app.interactive)
    try:
        _bootstrap(
            app,
            host,
            context=context or context_name(destination.rpartition("@")[2]),
            address=address or host.resolved.hostname,
            options=options,
            kubeconfig=kubeconfig,
            merge=merge,
            connect=lambda: host.connect(_host_key_question(app), accept_new=accept_new_host_key),
        )
    finally:
        host.close()


@bootstrap_app.command("local")
def bootstrap_local(
    ctx: typer.Context,
    k3s_version: VersionOption = None,
    k3s_channel: ChannelOption = None,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
    merge: MergeOption = False,
    address: AddressOption = None,
    node_name: NodeNameOption = None,
    storage_path: StoragePathOption = None,
    install_script: ScriptOption = None,
    airgap: AirgapOption = None,
    force: ForceOption = False,
    yes: YesOption = False,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Bootstrap k3s on this machine (run it on the server itself, as root or with sudo).

    The kubeconfig points at 127.0.0.1 unless --address gives the public address (which is
    then also in the API server's certificate).

    \b
    Examples:
      sudo libresh bootstrap local
      libresh bootstrap local --address cloud.example.org --merge
    """
    import socket

    from libresh_cli.cluster.bootstrap import context_name
    from libresh_cli.remote.local import LocalHost

    _check_names(context, address)
    app = app_context(ctx, output, dry_run, yes)
    _bootstrap(
        app,
        LocalHost(),
        context=context or context_name(socket.gethostname()),
        address=address,
        options=_options(
            node_name, storage_path, k3s_version, k3s_channel, install_script, airgap, force
        ),
        kubeconfig=kubeconfig,
        merge=merge,
    )


def _check_names(context: str | None, address: str | None) -> None:
    from libresh_cli.cluster.kubeconfig import check_address, check_context

    if context is not None:
        check_context(context)
    if address is not None:
        check_address(address)


def _options(
    node_name: str | None,
    storage_path: str | None,
    k3s_version: str | None,
    k3s_channel: str | None,
    install_script: Path | None,
    airgap: Path | None,
    force: bool,
) -> dict[str, Any]:
    """What `ssh` and `local` share, as BootstrapRequest fields (checked before connecting)."""
    return {
        "node_name": node_name,
        "storage_path": storage_path,
        "k3s_version": k3s_version,
        "k3s_channel": k3s_channel,
        "source": _install_source(install_script, airgap),
        "force": force,
    }


def _install_source(script: Path | None, airgap: Path | None) -> InstallSource:
    from libresh_cli.cluster.bootstrap import InstallSource, SourceKind

    if script is not None and airgap is not None:
        raise BadInputError(
            "--install-script and --airgap cannot be used together.",
            hint="--airgap brings its own install script (the release's).",
        )
    if script is not None:
        return InstallSource(SourceKind.SCRIPT, script.expanduser())
    if airgap is not None:
        return InstallSource(SourceKind.AIRGAP, airgap.expanduser())
    return InstallSource()


def _host_key_question(app: AppContext) -> Any:
    """Shows the fingerprint and asks; None (refuse, naming the flag) without a terminal."""
    if not app.interactive:
        return None

    def ask(host: ResolvedHost, key: HostKey) -> bool:
        import questionary

        app.err.print(f"The host key of {host.hostname} (port {host.port}) is not known yet:")
        for fingerprint in key.fingerprints:
            app.err.print(f"  {fingerprint}")
        app.err.print(
            "Compare it with the server's own (on its console: "
            "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).",
            style="dim",
        )
        return bool(
            questionary.confirm(
                f"Trust it and add it to {key.known_hosts}?", default=False
            ).unsafe_ask()
        )

    return ask


def _bootstrap(
    app: AppContext,
    host: Host,
    *,
    context: str,
    address: str | None,
    options: dict[str, Any],
    kubeconfig: Path | None,
    merge: bool,
    connect: Callable[[], None] = lambda: None,
) -> None:
    from libresh_cli.cluster.bootstrap import BootstrapRequest, bootstrap, check_request
    from libresh_cli.cluster.kubeconfig import Destination

    kubeconfig = kubeconfig or app.kubeconfig  # the global --kubeconfig, given before the command
    request = BootstrapRequest(
        context=context,
        destination=Destination.choose(app.paths, context, kubeconfig, merge),
        address=address,
        dry_run=app.dry_run,
        **options,
    )
    check_request(request)
    connect()
    reporter = app.reporter()
    with reporter.spinning(f"Bootstrapping {host.label}"):
        report = bootstrap(host, request, reporter, lambda question: confirm(app, question))
    emit(app, report.to_dict(), lambda data: _summary(report))
    _next_step(app, report)


def _summary(report: BootstrapReport) -> Any:
    return key_value_table(
        {
            "host": report.host,
            "node": report.node_name,
            "k3s": report.k3s_version or "(channel)",
            "action": report.action + (" (dry run: nothing done)" if report.dry_run else ""),
            "context": report.context,
            "kubeconfig": report.kubeconfig,
            "server": report.server,
        }
    )


def _next_step(app: AppContext, report: BootstrapReport) -> None:
    if report.dry_run:
        app.err.print("Dry run: nothing was changed on the host or here.", style="dim")
        return
    use = f"--kubeconfig {report.kubeconfig} --context {report.context}"
    # One line whatever the width, so it can be copied.
    app.err.print(f"k3s is ready. Next: libresh {use} install nextcloud --domain …", soft_wrap=True)
