"""`libresh doctor`: what is wrong with the cluster and its instances, and what to do."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from libresh_cli.cli.common import OutputOption, app_context, catalog, kube_client
from libresh_cli.cli.output import emit, rows_table
from libresh_cli.errors import BadInputError


def doctor(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="NAME", help="Instances to check (default: every one)."),
    ] = None,
    nameserver: Annotated[
        str | None,
        typer.Option(
            help="DNS server asked for the domains, IP or IP:PORT (default: the first of "
            "/etc/resolv.conf; also LIBRESH_NAMESERVER).",
        ),
    ] = None,
    public_address: Annotated[
        list[str] | None,
        typer.Option(
            help="The cluster's public address, when libresh cannot see it (behind a router "
            "or a NAT). Repeatable.",
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            help="A check whose problems do not change the exit code, e.g. "
            "kubernetes-version (still shown). Repeatable.",
        ),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Check the cluster and each instance, and say what to do about each problem.

    The cluster: Kubernetes (k3s) version still maintained upstream, nodes Ready without
    memory or disk pressure, memory the pods request beside what each node has, pods waiting
    for a node, the infrastructure (`infra status`), cert-manager, the public address and
    ports 80 and 443 from this machine. Each instance: health, its version still maintained
    upstream, its domain's DNS records, its certificate and days left, the age of its newest
    complete backup beside its schedule. A check that cannot run says "not checked" and why.

    Exit code 0 when no check found a problem (warnings and checks that could not run are
    shown, and do not count), 1 otherwise: for cron, which mails what a command prints when
    it fails.

    \b
    Examples:
      libresh doctor
      libresh doctor nextcloud --nameserver 9.9.9.9
      libresh doctor -o json --ignore kubernetes-version     # nightly, from cron
    """
    from libresh_cli.doctor.checks import Status
    from libresh_cli.doctor.service import DoctorOptions, check_ignored, diagnose

    app = app_context(ctx, output)
    options = DoctorOptions(
        instances=tuple(names or ()),
        nameserver=_nameserver(nameserver),
        public_addresses=tuple(_address(a) for a in public_address or ()),
        ignore=check_ignored(list(ignore or [])),
    )
    reporter = app.reporter()
    with kube_client(app) as kube, reporter.spinning("Checking"):
        report = diagnose(kube, catalog(app), options, reporter)
    emit(app, report.to_dict(), _table)
    summary = (
        f"{report.count(Status.problem)} problem(s), {report.count(Status.warn)} warning(s), "
        f"{report.count(Status.unchecked)} not checked"
    )
    app.err.print(summary if report.healthy else f"{summary}: see WHAT TO DO above.")
    if not report.healthy:
        raise typer.Exit(1)


def _nameserver(given: str | None) -> tuple[str, int] | None:
    from libresh_cli.doctor import dns

    text = given or os.environ.get("LIBRESH_NAMESERVER")
    if not text:
        return dns.system_nameserver()
    try:
        return dns.parse_server(text)
    except ValueError as error:
        raise BadInputError(
            f"--nameserver {text!r} is not an IP address (with an optional :PORT): {error}.",
            hint="For example --nameserver 9.9.9.9 or --nameserver 127.0.0.1:5353.",
        ) from None


def _address(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise BadInputError(
            f"--public-address {text!r} is not an IP address.",
            hint="For example --public-address 203.0.113.10.",
        ) from None


def _table(data: dict[str, Any]) -> Any:
    rows = [
        [
            check["subject"],
            check["check"],
            check["status"] + (" (ignored)" if check["ignored"] else ""),
            check["detail"],
            check["fix"] or "",
        ]
        for check in data["checks"]
    ]
    return rows_table(["SUBJECT", "CHECK", "STATUS", "DETAIL", "WHAT TO DO"], rows)
