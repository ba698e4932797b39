"""`libresh mail`: the cluster's SMTP relay, set once and handed to the apps that send mail."""

from __future__ import annotations

import sys
from enum import StrEnum
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
from libresh_cli.cli.output import emit, key_value_table
from libresh_cli.errors import BadInputError, PrerequisiteError

if TYPE_CHECKING:
    from libresh_cli.cli.context import AppContext
    from libresh_cli.kube.client import KubeClient
    from libresh_cli.mail.relay import Relay

mail_app = typer.Typer(
    help="""The cluster's SMTP relay, which apps that send mail are given.

Set it once; every app that requires mail (Nextcloud, Vaultwarden) gets it at its next install
or upgrade, in a Secret libresh-mail of a fixed shape (host, port, tls, user, password, from).

\b
Examples:
  libresh mail set --host smtp.example.org --port 587 --tls starttls \\
      --user cloud@example.org --password-file smtp-password --from cloud@example.org
  libresh mail test --to me@example.org
  libresh mail show -o json
  libresh mail unset --yes
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class Tls(StrEnum):
    starttls = "starttls"
    tls = "tls"
    none = "none"


@mail_app.command("set")
def set_relay(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="The relay's host name or IP address.")],
    sender: Annotated[
        str, typer.Option("--from", help="The address apps send from (cloud@example.org).")
    ],
    tls: Annotated[
        Tls,
        typer.Option(
            help="starttls: plain, then STARTTLS (port 587); tls: TLS from the first byte "
            "(port 465); none: no encryption (a relay on a private network)."
        ),
    ] = Tls.starttls,
    port: Annotated[
        int | None, typer.Option(help="The relay's port (default: 587, 465 or 25 by --tls).")
    ] = None,
    user: Annotated[str, typer.Option(help="User name to log in with; none: no login.")] = "",
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the password, or - for standard input; asked for on a terminal "
            "when left out. Never on the command line."
        ),
    ] = None,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Set the SMTP relay of the cluster (replacing the one set before).

    Every value is checked before anything is stored: a refused value leaves the relay as it
    was. Instances installed before keep the relay they were applied with until they are
    applied again; the command lists them, with the command that does it.

    \b
    Examples:
      libresh mail set --host smtp.example.org --user cloud@example.org \\
          --password-file smtp-password --from cloud@example.org
      printf '%s' "$SMTP_PASSWORD" | libresh mail set --host smtp.example.org --port 465 \\
          --tls tls --user cloud --password-file - --from cloud@example.org
      libresh mail set --host 10.0.0.25 --tls none --from noreply@example.org --dry-run
    """
    from libresh_cli.mail.relay import DEFAULT_PORTS, Relay, check, check_address, check_host

    app = app_context(ctx, output, dry_run, yes)
    # Checked before asking for a password or connecting to the cluster.
    check_host(host)
    check_address(sender, "--from")
    chosen_port = DEFAULT_PORTS[tls.value] if port is None else port  # 0 is refused, not "unset"
    wanted = Relay(host, chosen_port, tls.value, sender, user)
    if app.dry_run:
        check(Relay(**{**_fields(wanted), "password": "x" if user else ""}))
        dry_run_said(app, [f"set the relay to {_where(wanted)}"], **wanted.public())
        return
    with kube_client(app) as kube:
        password = _password(app, kube, user, password_file)
        relay = Relay(**{**_fields(wanted), "password": password})
        check(relay)
        if relay.tls == "none" and relay.password:
            app.reporter().warn(
                "--tls none sends the password unencrypted: use it only on a private network."
            )
        from libresh_cli.mail.store import save_relay

        save_relay(kube, relay)
        _say_who_needs_it(app, kube)
    done(app, relay.public(), f"The SMTP relay is {_where(relay)}, from {relay.from_address}.")


def _fields(relay: Relay) -> dict[str, Any]:
    return {
        "host": relay.host,
        "port": relay.port,
        "tls": relay.tls,
        "from_address": relay.from_address,
        "user": relay.user,
    }


def _where(relay: Relay) -> str:
    login = f" as {relay.user}" if relay.user else " without login"
    return f"{relay.host}:{relay.port} ({relay.tls}){login}"


def _password(app: AppContext, kube: KubeClient, user: str, path: Path | None) -> str:
    if not user:
        if path is not None:
            raise BadInputError("--password-file without --user: give the user name it is for.")
        return ""
    if path is not None and str(path) == "-":
        return _password_from_stdin()
    if path is not None:
        return read_secret_file(app, path, "--password-file")
    from libresh_cli.mail.store import read_relay

    kept = read_relay(kube)
    if kept is not None and kept.user == user and kept.password:
        return kept.password  # another host or port for the same login
    if not app.interactive:
        raise BadInputError(
            f"--user {user!r} needs a password, and there is no terminal to ask for it.",
            hint="Give it with --password-file FILE (or - for standard input).",
        )
    import questionary

    return str(questionary.password(f"Password of {user} on the relay:").unsafe_ask())


def _password_from_stdin() -> str:
    from libresh_cli.cli.common import MAX_SECRET_BYTES

    text = sys.stdin.read(MAX_SECRET_BYTES + 1)
    if len(text) > MAX_SECRET_BYTES:
        raise BadInputError(f"--password-file -: more than {MAX_SECRET_BYTES} bytes.")
    value = text.rstrip("\n")
    if not value:
        raise BadInputError("--password-file -: standard input is empty.")
    return value


def _say_who_needs_it(app: AppContext, kube: KubeClient) -> None:
    """Installed instances get a new relay when applied again: say which, and how."""
    from libresh_cli.apps.relay import instances_requiring_mail

    waiting = instances_requiring_mail(kube, catalog(app))
    if waiting:
        commands = "\n".join(f"  {i.apply_command}" for i in waiting)
        app.reporter().warn(
            "These instances send mail with the relay they were applied with; give them this "
            f"one:\n{commands}"
        )


@mail_app.command("show")
def show(ctx: typer.Context, output: OutputOption = None) -> None:
    """Show the cluster's SMTP relay (never its password).

    \b
    Example:
      libresh mail show -o json
    """
    from libresh_cli.mail.store import read_relay

    app = app_context(ctx, output)
    with kube_client(app) as kube:
        relay = read_relay(kube)
    if relay is None:
        app.err.print("No SMTP relay is set: libresh mail set --host … --from …")
        emit(app, {"configured": False}, lambda _: "")
        return
    emit(app, {"configured": True, **relay.public()}, key_value_table)


@mail_app.command("unset")
def unset(
    ctx: typer.Context,
    output: OutputOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Forget the cluster's SMTP relay. Apps installed or upgraded from then on send no mail;
    instances applied before keep theirs until they are applied again.

    \b
    Example:
      libresh mail unset --yes
    """
    from libresh_cli.mail.store import delete_relay, read_relay

    app = app_context(ctx, output, dry_run, yes)
    with kube_client(app) as kube:
        relay = read_relay(kube)
        if relay is None:
            done(app, {"configured": False}, "No SMTP relay is set: nothing to do.")
            return
        if app.dry_run:
            dry_run_said(app, [f"forget the relay {_where(relay)}"])
            return
        if not confirm(app, f"Forget the SMTP relay {_where(relay)}?"):
            raise typer.Exit(1)
        delete_relay(kube)
        _say_who_needs_it(app, kube)
    done(app, {"configured": False}, "The SMTP relay is forgotten.")


@mail_app.command("test")
def send_test_message(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Where the test message goes.")],
    ca_file: Annotated[
        Path | None,
        typer.Option(
            help="Trust only the CA certificates in this PEM file for the relay (a relay with "
            "a private CA). Default: the system's."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=1, max=300, help="Seconds to wait for each answer of the relay.")
    ] = 10.0,
    output: OutputOption = None,
) -> None:
    """Send a test message through the relay, from this machine.

    With the relay's TLS mode and login, certificates verified. Exit codes: 3 when the relay
    does not answer, its TLS or certificate fails, or it refuses the login; 2 when it refuses
    the recipient or the from-address; 6 when no relay is set.

    \b
    Examples:
      libresh mail test --to me@example.org
      libresh mail test --to me@example.org --ca-file private-ca.pem -o json
    """
    from libresh_cli.mail.relay import check_address
    from libresh_cli.mail.send import send_test
    from libresh_cli.mail.store import read_relay

    app = app_context(ctx, output)
    check_address(to, "--to")
    with kube_client(app) as kube:
        relay = read_relay(kube)
    if relay is None:
        raise PrerequisiteError(
            "No SMTP relay is set.", hint="Set one: libresh mail set --host … --from …"
        )
    sent = send_test(relay, to, ca_file=ca_file, timeout=timeout)
    done(
        app,
        {
            "relay": sent.relay,
            "from": sent.sender,
            "to": sent.recipient,
            "message_id": sent.message_id,
        },
        f"The relay {sent.relay} accepted the test message from {sent.sender} to {sent.recipient}.",
    )
