"""The `libresh` command: global options, sub-command groups, and the entry point."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, ClassVar

import typer

from libresh_cli import __version__
from libresh_cli.cli.context import AppContext, OutputFormat, color_wanted
from libresh_cli.cli.failure import (
    data_format_requested,
    debug_requested,
    print_failure_document,
    report_libresh_error,
    report_unexpected_error,
)
from libresh_cli.cli.lazy import LazyCommand, LazyGroup
from libresh_cli.errors import ExitCode, LibreshError

HELP = """\
Turn a VPS, an ARM board or a Hetzner Cloud project into a self-hosting platform.

\b
Examples:
  # a server becomes a k3s cluster; its kubeconfig is written here
  libresh bootstrap ssh root@203.0.113.10
  libresh infra install --email admin@example.org
  libresh cluster upgrade --k3s-version v1.35.1+k3s1 --dry-run
  # a local Kubernetes control plane with simulated nodes, to try things out
  libresh lab up --nodes 3
  export KUBECONFIG=$(libresh lab kubeconfig)
  # apps
  libresh install nextcloud --domain cloud.example.org
  libresh list
  libresh upgrade --all --yes -o json     # nightly, from cron

Exit codes: 0 ok, 1 failure, 2 bad input, 3 unreachable, 4 not found,
5 conflict, 6 prerequisite missing, 70 internal error, 130 interrupted.
"""


class Commands(LazyGroup):
    """The command tree: each sub-command's module is imported when it is used."""

    lazy: ClassVar[dict[str, LazyCommand]] = {
        "install": LazyCommand(
            "libresh_cli.cli.apps:install",
            "Install an app: ask for what is missing, show the plan, apply, wait until healthy.",
        ),
        "list": LazyCommand(
            "libresh_cli.cli.apps:list_instances",
            "List every instance on the cluster with its version, health and URL.",
        ),
        "status": LazyCommand(
            "libresh_cli.cli.apps:status",
            "Show an instance: version, health, URL, its objects, upgrades and history.",
        ),
        "doctor": LazyCommand(
            "libresh_cli.cli.doctor:doctor",
            "Check the cluster and each instance, and say what to do about each problem.",
        ),
        "diff": LazyCommand(
            "libresh_cli.cli.apps:diff",
            "Show what re-applying the installed version would change (hand edits, catalog "
            'changes), field by field (a Secret\'s values as "(changed)").',
        ),
        "upgrade": LazyCommand(
            "libresh_cli.cli.upgrade:upgrade",
            "Upgrade along the app's path (never skipping a major it forbids skipping).",
        ),
        "uninstall": LazyCommand(
            "libresh_cli.cli.apps:uninstall",
            "Remove an instance.",
        ),
        "restore": LazyCommand(
            "libresh_cli.cli.backup:restore",
            "Restore a backup into its instance, or into a new one (--as).",
        ),
        "bootstrap": LazyCommand(
            "libresh_cli.cli.bootstrap:bootstrap_app",
            "Install k3s on a server and get a kubeconfig for it.",
        ),
        "infra": LazyCommand(
            "libresh_cli.cli.infra:infra_app",
            "Install and check the cluster's infrastructure on k3s.",
        ),
        "cluster": LazyCommand(
            "libresh_cli.cli.cluster:cluster_app",
            "The k3s cluster itself: a highly-available cluster on Hetzner Cloud (3 servers "
            "with embedded etcd, agents, a load balancer for the API), and k3s upgrades.",
        ),
        "backup": LazyCommand(
            "libresh_cli.cli.backup:backup_app",
            "Back up instances: now, on a schedule; where backups go; the repository key.",
        ),
        "backups": LazyCommand(
            "libresh_cli.cli.backup:backups_app",
            "The backups of an instance.",
        ),
        "secret": LazyCommand(
            "libresh_cli.cli.apps:secret_app",
            "Read an instance's generated credentials (only when asked).",
        ),
        "catalog": LazyCommand(
            "libresh_cli.cli.catalog:catalog_app",
            "The apps libresh can install.",
        ),
        "services": LazyCommand(
            "libresh_cli.cli.services:services_app",
            "How backing services (postgres, redis) are provided on this cluster.",
        ),
        "mail": LazyCommand(
            "libresh_cli.cli.mail:mail_app",
            "The cluster's SMTP relay, which apps that send mail are given.",
        ),
        "identity": LazyCommand(
            "libresh_cli.cli.identity:identity_app",
            "The cluster's identity provider (Keycloak): one account for every app.",
        ),
        "users": LazyCommand(
            "libresh_cli.cli.identity:users_app",
            "People's accounts in the identity provider, used to sign in to every app.",
        ),
        "groups": LazyCommand(
            "libresh_cli.cli.identity:groups_app",
            "Groups of users; an app lets in the groups it allows (admins and members by default).",
        ),
        "lab": LazyCommand(
            "libresh_cli.cli.lab:lab_app",
            "A real Kubernetes control plane on 127.0.0.1 with kwok-simulated nodes.",
        ),
    }


app = typer.Typer(
    name="libresh",
    help=HELP,
    cls=Commands,
    rich_markup_mode=None,  # typer's rich help costs ~50 ms at every start
    no_args_is_help=True,
    # Typer's pretty tracebacks print local variables, which may hold secrets.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"libresh {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            help="Kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).",
        ),
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="Kubeconfig context to use.")
    ] = None,
    catalog: Annotated[
        list[Path] | None,
        typer.Option(
            "--catalog",
            help="Another app catalog (a folder of apps), searched before the built-in one. "
            "Repeatable; also LIBRESH_CATALOG_PATH (colon-separated).",
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Output format for data.")
    ] = OutputFormat.table,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail (-vv for debug).")
    ] = 0,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Answer yes to confirmations (for scripts, cron).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be done, change nothing.")
    ] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours (also: the NO_COLOR variable).")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks of unexpected errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    app_context = AppContext(
        output=output,
        verbose=verbose,
        yes=yes,
        dry_run=dry_run,
        color=color_wanted(no_color),
        debug=debug,
        kubeconfig=kubeconfig,
        kube_context=context,
        catalogs=list(catalog or []),
    )
    app_context.configure_logging()
    ctx.obj = app_context


def run(argv: list[str] | None = None) -> None:
    """Entry point of the console script: runs the app and maps every outcome to an exit code."""
    args = sys.argv[1:] if argv is None else argv
    _terminate_like_interrupt()
    sys.exit(_run(args))


def _terminate_like_interrupt() -> None:
    """SIGTERM (kill, systemd, a cron timeout) ends libresh as Ctrl-C does: through the same
    cleanup (finally blocks, temporary files, SSH masters) and exit code 130, instead of dying
    on the spot and leaving key material in temporary files."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


GLOBAL_WITH_VALUE = ("--kubeconfig", "--context", "--catalog")
GLOBAL_FLAGS = ("--verbose", "--no-color", "--debug")
# Commands with an option of their own named like a global one (bootstrap's --context names
# the context it writes): their options stay where they are.
OWN_GLOBAL_NAMES = ("bootstrap",)


def hoist_global_options(args: list[str]) -> list[str]:
    """Global options given after the command (`libresh diff x -v --kubeconfig k`), moved
    before it, where the command line parser takes them: as kubectl and helm accept them."""
    command_at = _command_index(args)
    if command_at is None or args[command_at] in OWN_GLOBAL_NAMES:
        return args
    head, rest, hoisted = args[:command_at], [], []
    tail = args[command_at:]
    index = 0
    while index < len(tail):
        word = tail[index]
        if word == "--":
            rest += tail[index:]
            break
        name = word.split("=", 1)[0]
        if name in GLOBAL_WITH_VALUE:
            takes_next = "=" not in word and index + 1 < len(tail)
            hoisted += tail[index : index + 2] if takes_next else [word]
            index += 2 if takes_next else 1
            continue
        if word in GLOBAL_FLAGS or re.fullmatch(r"-v+", word):
            hoisted.append(word)
        else:
            rest.append(word)
        index += 1
    return [*head, *hoisted, *rest]


def _command_index(args: list[str]) -> int | None:
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--":
            return None
        if not word.startswith("-"):
            return index
        value_follows = word in GLOBAL_WITH_VALUE or word in ("--output", "-o")
        index += 2 if value_follows else 1
    return None


def _run(args: list[str]) -> int:
    from libresh_cli.cli.output import EMITTED

    EMITTED.data = False
    _last_failure.set("")
    args = hoist_global_options(args)
    code = _run_command(args)
    data_format = data_format_requested(args)
    if code != 0 and data_format and not EMITTED.data:
        print_failure_document(data_format, *_last_failure.get(code))
    return code


class _LastFailure:
    """What the failure was, for the JSON document of -o json."""

    message = ""
    hint: str | None = None

    def set(self, message: str, hint: str | None = None) -> None:
        self.message, self.hint = message, hint

    def get(self, code: int) -> tuple[str, int, str | None]:
        return (self.message or f"libresh failed (exit code {code}).", code, self.hint)


_last_failure = _LastFailure()


def _run_command(args: list[str]) -> int:
    try:
        result = app(args=args, prog_name="libresh", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as usage:  # bad options and arguments: usage, exit code 2
        _show_usage_error(usage)
        _last_failure.set(usage.format_message())
        return usage.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("\nInterrupted.\n")
        _last_failure.set("Interrupted.")
        return int(ExitCode.INTERRUPTED)
    except LibreshError as error:
        _last_failure.set(error.message, error.hint)
        return report_libresh_error(error)
    except Exception as error:
        if debug_requested(args):
            raise
        _last_failure.set(f"libresh stopped on an unexpected {type(error).__name__} (a bug).")
        return report_unexpected_error(error)
    # Without standalone mode, typer returns the code of an Exit raised in a command; it turns
    # Ctrl-C into a silent Exit(130), which deserves a word.
    code = result if isinstance(result, int) else 0
    if code == ExitCode.INTERRUPTED:
        sys.stderr.write("\nInterrupted.\n")
    return code


def _show_usage_error(error: typer.TyperException) -> None:
    show = getattr(error, "show", None)  # typer's click errors know how to print usage
    if callable(show):
        show()
    else:
        sys.stderr.write(f"Error: {error.format_message()}\n")
