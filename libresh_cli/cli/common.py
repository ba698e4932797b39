"""What the app commands share: the cluster and catalog from global options, confirmation,
prompts and plan rendering."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from libresh_cli.cli.context import AppContext, OutputFormat
from libresh_cli.errors import BadInputError

if TYPE_CHECKING:
    from libresh_cli.apps.catalog import Catalog
    from libresh_cli.apps.model import Parameter
    from libresh_cli.apps.plan import Plan
    from libresh_cli.kube.client import KubeClient

OutputOption = Annotated[
    OutputFormat | None,
    typer.Option("--output", "-o", help="Output format (overrides the global -o)."),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be done, change nothing.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def app_context(
    ctx: typer.Context, output: OutputFormat | None = None, dry_run: bool = False, yes: bool = False
) -> AppContext:
    """The global context with the options a command also accepts after its name applied."""
    app: AppContext = ctx.obj
    if output is not None:
        app.output = output
    app.dry_run = app.dry_run or dry_run
    app.yes = app.yes or yes
    return app


def done(app: AppContext, data: dict[str, Any], message: str) -> None:
    """A command's outcome: a line for people (stderr), the data for -o json/yaml (stdout)."""
    if app.output is OutputFormat.table:
        from libresh_cli.cli.terminal import marked

        app.err.print(marked("✓", "green", message))
    else:
        from libresh_cli.cli.output import emit

        emit(app, data, str)


def dry_run_said(app: AppContext, actions: list[str], **details: Any) -> None:
    """A dry run's answer, for commands without a plan of objects: what would be done, one
    line each (data, on stdout), then that nothing was changed."""
    from libresh_cli.cli.output import emit

    data = {"dry_run": True, "would": actions, **details}
    emit(app, data, lambda d: "\n".join(f"Would {line}" for line in d["would"]))
    app.err.print("Dry run: nothing was changed.", style="dim")


@contextmanager
def kube_client(app: AppContext) -> Iterator[KubeClient]:
    from libresh_cli.kube.client import KubeClient
    from libresh_cli.kube.connection import KubeTarget

    with KubeClient.connect(KubeTarget(app.kubeconfig, app.kube_context)) as client:
        yield client


def catalog(app: AppContext) -> Catalog:
    from libresh_cli.apps.catalog import Catalog

    return Catalog.from_sources(app.catalogs)


def confirm(app: AppContext, question: str) -> bool:
    """True to go ahead. Without a terminal, only --yes says yes."""
    if app.yes:
        return True
    if not app.interactive:
        raise BadInputError(
            f"{question} — there is no terminal to ask.",
            hint="Pass --yes to go ahead without being asked.",
        )
    import questionary

    # Enter confirms: one key alone would answer, and the Enter typed after it would answer
    # the next question too (`upgrade --all` asks once per instance).
    return bool(questionary.confirm(question, default=False, auto_enter=False).unsafe_ask())


def confirm_by_typing(app: AppContext, question: str, expected: str) -> bool:
    """For what cannot be undone: the person types `expected` (a name), as `cluster destroy`
    asks. Without a terminal, only --yes says yes."""
    if app.yes:
        return True
    if not app.interactive:
        raise BadInputError(
            f"{question} — there is no terminal to ask.",
            hint="Pass --yes to go ahead without being asked.",
        )
    import questionary

    typed = questionary.text(f"{question} Type {expected} to confirm:").unsafe_ask()
    return str(typed).strip() == expected


MAX_SECRET_BYTES = 64 * 1024  # a password, a token, an S3 key


def read_secret_file(app: AppContext, path: Path, option: str) -> str:
    """A secret given as a file (never on the command line), its last newline dropped."""
    from libresh_cli import yamlfile

    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise BadInputError(f"{option} {path}: {error.strerror}.") from error
    try:  # a regular file of UTF-8 text: never a pipe that would keep libresh waiting
        text = yamlfile.read_text(path, what="file", limit=MAX_SECRET_BYTES)
    except BadInputError as error:
        raise BadInputError(f"{option} {path}: {error.message}") from None
    if stat.S_IMODE(mode) & 0o077:
        app.reporter().warn(f"{path} can be read by other users: chmod 600 {path}")
    value = text.rstrip("\n")
    if not value:
        raise BadInputError(f"{option} {path} is empty.")
    return value


def asker(app: AppContext) -> Any:
    """A function that prompts for a parameter, or None when nobody can answer."""
    if not app.interactive:
        return None

    def ask(parameter: Parameter) -> Any:
        import questionary

        from libresh_cli.apps.params import problem_with

        def valid(text: str) -> bool | str:
            return problem_with(parameter, text) or True

        if parameter.type == "boolean":
            return questionary.confirm(
                parameter.prompt, default=bool(parameter.default)
            ).unsafe_ask()
        if parameter.secret:
            return questionary.password(parameter.prompt, validate=valid).unsafe_ask()
        default = "" if parameter.default is None else str(parameter.default)
        return questionary.text(parameter.prompt, default=default, validate=valid).unsafe_ask()

    return ask


def plan_table(plan: Plan) -> Any:
    from libresh_cli.cli.output import rows_table

    shown = [c for c in plan.changes if c.action != "unchanged"]
    changes: Any = (
        rows_table(
            ["ACTION", "KIND", "NAME", "CHANGES"],
            # An update shows its changed fields under it, as kubectl diff does.
            [[c.action, c.ref[1], c.ref[2], "\n".join(c.fields)] for c in shown],
        )
        if shown
        else "No object changes."
    )
    if not plan.values:
        return changes
    from rich.console import Group

    from libresh_cli.cli.output import key_value_table

    # What it is installed with (the record never holds secrets: they are not here).
    settings = key_value_table(dict(sorted(plan.values.items())), title="Settings")
    return Group(settings, changes)


def describe_plan(plan: Plan) -> str:
    parts = [f"{plan.count(a)} to {a}" for a in ("create", "update", "prune") if plan.count(a)]
    if plan.count("keep"):
        parts.append(f"{plan.count('keep')} kept (data)")
    return ", ".join(parts) or "no object changes"
