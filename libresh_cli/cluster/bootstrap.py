"""`libresh bootstrap`: a host becomes a single-node k3s cluster, and this machine gets a
kubeconfig for it. Every step checks what is there first, so a re-run is a no-op on a finished
host and completes an interrupted one.

Round trips on the host: the preflight (one), the config and installer (one, only when
something must change; airgap adds one per uploaded file), the kubeconfig (one).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from libresh_cli.cluster import airgap, k3s, kubeconfig
from libresh_cli.cluster.preflight import Assessment, HostFacts, assess, parse_facts
from libresh_cli.errors import (
    BadInputError,
    LibreshError,
    OperationFailedError,
    PrerequisiteError,
    UnreachableError,
)
from libresh_cli.kube.client import KubeClient
from libresh_cli.kube.connection import KubeTarget
from libresh_cli.kube.nodes import wait_nodes_ready
from libresh_cli.progress import Reporter
from libresh_cli.remote.base import Host
from libresh_cli.settings import bootstrap_file

STATE_DIR = "/var/lib/rancher/libresh"
INSTALL_LOG = "/var/log/libresh-k3s-install.log"
INSTALLER_TIMEOUT = 20 * 60.0
KUBECONFIG_WAIT = 300
NODE_READY_TIMEOUT = 300.0
API_GRACE = 30.0
AIRGAP_IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
OFFICIAL_SCRIPT_URL = "https://get.k3s.io"


class SourceKind(StrEnum):
    OFFICIAL = "official"
    SCRIPT = "script"
    AIRGAP = "airgap"


@dataclass(frozen=True)
class InstallSource:
    kind: SourceKind = SourceKind.OFFICIAL
    path: Path | None = None  # the script, or the airgap directory


@dataclass(frozen=True)
class BootstrapRequest:
    context: str
    destination: kubeconfig.Destination
    address: str | None  # public address: tls-san and the kubeconfig's server
    node_name: str | None = None
    k3s_version: str | None = None
    k3s_channel: str | None = None
    source: InstallSource = field(default_factory=InstallSource)
    force: bool = False
    dry_run: bool = False
    profile: str = "single"
    storage_path: str | None = None  # k3s' default-local-storage-path


@dataclass
class BootstrapReport:
    host: str
    context: str
    kubeconfig: str
    server: str
    node_name: str = ""
    assessment: Assessment | None = None
    action: str = ""
    k3s_version: str | None = None
    config_changed: bool = False
    kubeconfig_written: bool = False
    dry_run: bool = False
    # Seconds spent waiting on the host (installer, k3s starting): what libresh cannot speed up.
    host_seconds: float = 0.0
    total_seconds: float = 0.0
    round_trips: int = 0

    def to_dict(self) -> dict[str, Any]:
        checks = self.assessment.checks if self.assessment else []
        return {
            "host": self.host,
            "context": self.context,
            "kubeconfig": self.kubeconfig,
            "server": self.server,
            "node": self.node_name,
            "action": self.action,
            "k3s_version": self.k3s_version,
            "config_changed": self.config_changed,
            "kubeconfig_written": self.kubeconfig_written,
            "dry_run": self.dry_run,
            "checks": [
                {"name": c.name, "level": str(c.level), "message": c.message} for c in checks
            ],
            "round_trips": self.round_trips,
            "seconds": {"total": round(self.total_seconds, 3), "host": round(self.host_seconds, 3)},
        }


# Asked before a version change on a running k3s: True to go ahead.
Confirm = Callable[[str], bool]


def gather_facts(host: Host) -> HostFacts:
    result = host.run(bootstrap_file("preflight.sh").read_text())
    if not result.ok or "@@end" not in result.stdout:
        raise OperationFailedError(
            f"The preflight checks could not run on {host.label} (exit {result.exit_code}).",
            hint=result.stderr_tail() or "Check that /bin/sh works for this user.",
        )
    return parse_facts(result.stdout)


def context_name(text: str) -> str:
    """A host name or alias turned into a context name: lowercase, '-' for anything else."""
    name = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    return name or "k3s"


def bootstrap(
    host: Host, request: BootstrapRequest, reporter: Reporter, confirm: Confirm
) -> BootstrapReport:
    """Preflight, plan, change the host if needed, then the kubeconfig and the node here."""
    started = time.monotonic()
    report = BootstrapReport(
        host=host.label,
        context=request.context,
        kubeconfig=str(request.destination.path),
        server=kubeconfig.server_url(request.address or "127.0.0.1"),
        dry_run=request.dry_run,
    )
    check_request(request)
    facts = _preflight(host, request, report, reporter)
    config, plan = _plan(request, facts, report, reporter)
    if not request.dry_run:
        _change_host(host, request, facts, (config, plan), report, reporter, confirm)
        _connect_here(host, request, report, reporter)
    report.total_seconds = time.monotonic() - started
    report.round_trips = host.round_trips
    return report


def _preflight(
    host: Host, request: BootstrapRequest, report: BootstrapReport, reporter: Reporter
) -> HostFacts:
    reporter.step(f"Checking {host.label}")
    facts = gather_facts(host)
    host.privilege = facts.privilege
    report.assessment = assess(facts, needs_download=request.source.kind is SourceKind.OFFICIAL)
    _refuse_failures(report.assessment, request.force, host.label)
    for check in report.assessment.warnings(force=request.force):
        reporter.warn(f"{check.name}: {check.message}")
    reporter.done(f"{host.label}: {facts.os_name}, {facts.arch}, preflight passed")
    return facts


def _plan(
    request: BootstrapRequest, facts: HostFacts, report: BootstrapReport, reporter: Reporter
) -> tuple[k3s.ConfigPlan, k3s.InstallPlan]:
    report.node_name = k3s.check_node_name(request.node_name or facts.hostname.lower())
    settings = k3s.wanted_settings(
        request.profile,
        address=request.address or "127.0.0.1",
        node_name=report.node_name,
        storage_path=request.storage_path,
    )
    config = k3s.plan_config(facts.k3s_config, settings)
    plan = k3s.plan_install(
        installed=facts.k3s_version,
        running=facts.k3s_running,
        config_changed=config.changed,
        version=request.k3s_version,
        channel=request.k3s_channel,
    )
    report.action = str(plan.action)
    report.config_changed = config.changed
    report.k3s_version = plan.version or facts.k3s_version
    if config.changed and config.kept_keys:
        kept = ", ".join(config.kept_keys)
        reporter.done(f"Keys added by hand to {k3s.CONFIG_PATH} are kept: {kept}")
    return config, plan


def _change_host(
    host: Host,
    request: BootstrapRequest,
    facts: HostFacts,
    plans: tuple[k3s.ConfigPlan, k3s.InstallPlan],
    report: BootstrapReport,
    reporter: Reporter,
    confirm: Confirm,
) -> None:
    config, plan = plans
    if plan.action is k3s.Action.CHANGE_VERSION and not confirm(
        f"k3s {plan.installed} runs on {host.label}. Change it to {plan.version}?"
    ):
        raise LibreshError(f"Kept k3s {plan.installed}; nothing was changed.")
    if plan.runs_installer:
        report.host_seconds += _install(host, request, facts, plan, config, reporter)
    else:
        reporter.done(
            f"k3s {facts.k3s_version} already runs on {host.label} with this configuration"
        )


def _connect_here(
    host: Host, request: BootstrapRequest, report: BootstrapReport, reporter: Reporter
) -> None:
    """The kubeconfig from the host, written here, then the node seen Ready through it."""
    waited = time.monotonic()
    text = fetch_kubeconfig(host, reporter)
    report.host_seconds += time.monotonic() - waited
    document = kubeconfig.from_k3s(text, context=request.context, server=report.server)
    report.kubeconfig_written = kubeconfig.write(request.destination, document, request.context)
    if report.kubeconfig_written:
        reporter.done(f"Kubeconfig written: {request.destination.path} (context {request.context})")
    waited = time.monotonic()
    _wait_node_ready(
        request.destination.path, request.context, report.node_name, report.server, reporter
    )
    report.host_seconds += time.monotonic() - waited


def check_request(request: BootstrapRequest) -> None:
    """Options checked before connecting: bad ones cost no login. The kubeconfig destination
    too, so a taken context name is refused before anything happens on the host."""
    if request.k3s_version is not None and request.k3s_channel is not None:
        raise BadInputError(
            "--k3s-version and --k3s-channel cannot be used together.",
            hint="Give a fixed version, or a channel to take its current version from.",
        )
    if request.k3s_version is not None:
        k3s.parse_version(request.k3s_version)
    if request.k3s_channel is not None:
        k3s.check_channel(request.k3s_channel)
    k3s.profile_settings(request.profile)
    kubeconfig.check_context(request.context)
    if request.node_name is not None:
        k3s.check_node_name(request.node_name)
    if request.address is not None:
        kubeconfig.check_address(request.address)
    if request.storage_path is not None:
        k3s.check_storage_path(request.storage_path)
    kubeconfig.check_destination(
        request.destination, request.context, kubeconfig.server_url(request.address or "127.0.0.1")
    )
    source = request.source
    if source.kind is SourceKind.SCRIPT and (source.path is None or not source.path.is_file()):
        raise BadInputError(
            f"--install-script {source.path}: no such file.",
            hint="Give the path of a k3s install script (https://get.k3s.io saved to a file).",
        )
    if source.kind is SourceKind.AIRGAP and request.k3s_channel is not None:
        raise BadInputError(
            "--airgap needs a fixed --k3s-version, not a channel.",
            hint=f"Give --k3s-version (default {k3s.DEFAULT_K3S_VERSION}).",
        )


def _refuse_failures(assessment: Assessment, force: bool, label: str) -> None:
    failures = assessment.failures(force=force)
    if not failures:
        return
    lines = [f"- {c.name}: {c.message}" + (f"\n  {c.hint}" if c.hint else "") for c in failures]
    forceable = all(c.forceable for c in failures)
    raise PrerequisiteError(
        f"{label} is not ready for k3s; nothing was changed:\n" + "\n".join(lines),
        hint="Fix the above and run again" + (", or pass --force." if forceable else "."),
    )


# -- acting on the host -------------------------------------------------------------------


def _install(
    host: Host,
    request: BootstrapRequest,
    facts: HostFacts,
    plan: k3s.InstallPlan,
    config: k3s.ConfigPlan,
    reporter: Reporter,
) -> float:
    """Upload what the source needs, write the config, run the installer: seconds spent."""
    if request.source.kind is SourceKind.AIRGAP and request.source.path and facts.arch:
        version = plan.version or k3s.DEFAULT_K3S_VERSION
        files = airgap.prepare(request.source.path, version, facts.arch, reporter)
        _send_airgap_files(host, files, version, reporter)
    what = {
        k3s.Action.INSTALL: f"Installing k3s {plan.version or plan.channel}",
        k3s.Action.CHANGE_VERSION: f"Changing k3s {plan.installed} to {plan.version}",
        k3s.Action.RECONFIGURE: f"Applying the new configuration to k3s {plan.installed}",
        k3s.Action.START: f"Starting k3s {plan.installed} (installed, not running)",
    }[plan.action]
    reporter.step(f"{what} on {host.label}")
    started = time.monotonic()
    script = installer_script(plan, config, request.source)
    result = host.run(script, privileged=True, timeout=INSTALLER_TIMEOUT)
    spent = time.monotonic() - started
    if not result.ok:
        raise OperationFailedError(
            f"The k3s installer failed on {host.label} (exit {result.exit_code}). Its output is "
            f"in {INSTALL_LOG} there; the last lines:\n{result.stderr_tail(15)}",
            hint="Fix the cause, then run the same command again: it picks up from here.",
        )
    reporter.done(f"{what}: done in {spent:.0f} s")
    return spent


def installer_script(
    plan: k3s.InstallPlan,
    config: k3s.ConfigPlan,
    source: InstallSource,
    install_exec: str | None = None,
) -> str:
    """One script for the host: take the install lock, write the config, run the installer.
    Nothing secret is in it (it travels on ssh's stdin, not on a command line)."""
    lines = [
        "set -e",
        f"state={STATE_DIR}",
        'mkdir -p "$state" /etc/rancher/k3s',
        # A run whose connection dropped may have left its installer running: wait for it.
        'exec 9>"$state/install.lock"',
        "if ! flock -n 9; then echo 'waiting for an earlier installer run' >&2; flock 9; fi",
    ]
    if config.changed:
        lines += [
            "umask 077",
            f"cat > {k3s.CONFIG_PATH}.libresh-new <<'LIBRESH_CONFIG_END'",
            config.text.rstrip("\n"),
            "LIBRESH_CONFIG_END",
            f"mv -f {k3s.CONFIG_PATH}.libresh-new {k3s.CONFIG_PATH}",
            "umask 022",
        ]
    lines += _fetch_installer_lines(source)
    if plan.version:
        lines.append(f"export INSTALL_K3S_VERSION='{plan.version}'")
    elif plan.channel:
        lines.append(f"export INSTALL_K3S_CHANNEL='{plan.channel}'")
    if source.kind is SourceKind.AIRGAP:
        lines.append("export INSTALL_K3S_SKIP_DOWNLOAD=true")
    if install_exec:
        lines.append(f"export INSTALL_K3S_EXEC='{install_exec}'")  # e.g. agent
    lines += [
        f'if sh "$state/install-k3s.sh" >>{INSTALL_LOG} 2>&1; then exit 0; fi',
        f"status=$?; tail -n 15 {INSTALL_LOG} >&2; exit $status",
    ]
    return "\n".join(lines) + "\n"


def _fetch_installer_lines(source: InstallSource) -> list[str]:
    target = '"$state/install-k3s.sh"'
    if source.kind is SourceKind.SCRIPT and source.path is not None:
        encoded = base64.b64encode(source.path.read_bytes()).decode()
        wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        return [f"base64 -d > {target} <<'LIBRESH_SCRIPT_END'", wrapped, "LIBRESH_SCRIPT_END"]
    if source.kind is SourceKind.AIRGAP:
        return []  # sent before, with the binary and images
    return [
        "if command -v curl >/dev/null 2>&1; then",
        f"  curl -sfL -o {target} {OFFICIAL_SCRIPT_URL}",
        "else",
        f"  wget -qO {target} {OFFICIAL_SCRIPT_URL}",
        "fi",
    ]


def _send_airgap_files(
    host: Host, files: airgap.AirgapFiles, version: str, reporter: Reporter
) -> None:
    uploads = [
        (files.binary, "/usr/local/bin/k3s", "755"),
        (files.images, f"{AIRGAP_IMAGES_DIR}/{files.images.name}", "644"),
        (files.script, f"{STATE_DIR}/install-k3s.sh", "755"),
    ]
    for local, remote, mode in uploads:
        size = local.stat().st_size / 1024**2
        reporter.step(f"Sending {local.name} ({size:.0f} MiB) to {host.label}")
        directory = remote.rsplit("/", 1)[0]
        command = (
            f"mkdir -p {directory} && cat > {remote}.libresh-part && "
            f"chmod {mode} {remote}.libresh-part && mv -f {remote}.libresh-part {remote}"
        )
        with local.open("rb") as handle:
            result = host.send(handle, command, timeout=INSTALLER_TIMEOUT)
        if not result.ok:
            raise OperationFailedError(
                f"Sending {local.name} to {host.label} failed: {result.stderr_tail(3)}",
                hint="Check the free space on the host, then run again.",
            )
    reporter.done(f"k3s {version} files sent ({files.binary.name}, images, install script)")


def fetch_kubeconfig(host: Host, reporter: Reporter) -> str:
    reporter.step(f"Fetching the kubeconfig from {host.label}")
    script = "\n".join(
        [
            "i=0",
            f"while ! [ -s {k3s.KUBECONFIG_PATH} ]; do",
            f'  i=$((i + 1)); if [ "$i" -gt {KUBECONFIG_WAIT} ]; then',
            f"    echo 'k3s wrote no {k3s.KUBECONFIG_PATH} within {KUBECONFIG_WAIT} s' >&2; exit 3",
            "  fi; sleep 1",
            "done",
            f"cat {k3s.KUBECONFIG_PATH}",
        ]
    )
    result = host.run(script + "\n", privileged=True, timeout=KUBECONFIG_WAIT + 60)
    if not result.ok:
        raise OperationFailedError(
            f"Could not read the kubeconfig on {host.label}: {result.stderr_tail(3)}",
            hint="Check k3s on the host (`systemctl status k3s`, `journalctl -u k3s`), then run "
            "again.",
        )
    return result.stdout


def _wait_node_ready(
    path: Path, context: str, node_name: str, server: str, reporter: Reporter
) -> None:
    reporter.step(f"Waiting for node {node_name} to be Ready")
    try:
        with KubeClient.connect(KubeTarget(path, context), timeout=10.0) as kube:
            wait_nodes_ready(
                kube, [node_name], timeout=NODE_READY_TIMEOUT, unreachable_grace=API_GRACE
            )
    except UnreachableError as error:
        raise UnreachableError(
            f"k3s runs, but its API at {server} cannot be reached from this machine.",
            hint="Open TCP port 6443 to this machine in the host's or provider's firewall, "
            "then run again (or give the address that reaches it with --address).",
        ) from error
    reporter.done(f"Node {node_name} is Ready")


__all__ = ["BootstrapReport", "BootstrapRequest", "InstallSource", "SourceKind", "bootstrap"]
