"""`libresh catalog`: the apps libresh can install, and a checker for package authors."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from libresh_cli.cli.common import OutputOption, app_context, catalog
from libresh_cli.cli.context import OutputFormat
from libresh_cli.cli.output import emit, key_value_table, rows_table
from libresh_cli.cli.terminal import marked

catalog_app = typer.Typer(
    help="""The apps libresh can install.

\b
Examples:
  libresh catalog list
  libresh catalog search office
  libresh catalog show nextcloud
  libresh catalog validate ./my-catalog/myapp
""",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@catalog_app.command("list")
def list_apps(ctx: typer.Context, output: OutputOption = None) -> None:
    """List the apps of every catalog: category, newest version, the memory an instance
    requests (with its embedded services), whether it supports SSO, and what it is.

    \b
    Examples:
      libresh catalog list
      libresh catalog list -o json
    """
    app = app_context(ctx, output)
    entries = _entries(app)
    emit(app, [e.to_dict() for e in entries], _apps_table)


@catalog_app.command("search")
def search_apps(
    ctx: typer.Context,
    word: Annotated[str, typer.Argument(help="Found in an app's name, description or category.")],
    output: OutputOption = None,
) -> None:
    """Find apps by a word of their name, description or category (case ignored).

    \b
    Examples:
      libresh catalog search office
      libresh catalog search password -o json
    """
    from libresh_cli.apps.catalog_search import search

    app = app_context(ctx, output)
    found = search(_entries(app), word)
    emit(app, [e.to_dict() for e in found], lambda rows: _apps_table(rows, word))


def _entries(app: Any) -> list[Any]:
    from libresh_cli.apps.catalog_search import entry_of

    apps, broken = catalog(app).apps()
    for error in broken:
        app.reporter().warn(
            f"{error.message}\nLeft out of the list: fix it, then check with "
            "`libresh catalog validate PATH`."
        )
    return sorted((entry_of(a) for a in apps), key=lambda e: (e.category, e.name))


def _apps_table(rows: list[dict[str, Any]], word: str | None = None) -> Any:
    if not rows:
        return (
            f"No app matches {word!r}: `libresh catalog list` shows them all."
            if word is not None
            else "No apps in the catalogs."
        )
    return rows_table(
        ["APP", "CATEGORY", "VERSION", "MEMORY", "SSO", "NEEDS", "DESCRIPTION"],
        [
            [
                r["name"],
                r["category"],
                r["version"],
                r["memory_request"],
                "yes" if r["sso"] else "no",
                ", ".join(r["requires"]) or "-",
                r["description"],
            ]
            for r in rows
        ],
    )


@catalog_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="APP")],
    output: OutputOption = None,
) -> None:
    """Show an app: versions, parameters, requirements, hooks.

    \b
    Example:
      libresh catalog show nextcloud -o yaml
    """
    app = app_context(ctx, output)
    found = catalog(app).load(name)
    data = {
        "name": found.name,
        "description": found.description,
        "category": found.category,
        "homepage": found.homepage,
        "license": found.license,
        "architectures": list(found.architectures),
        "versions": [v.version for v in found.versions],
        # Versions whose series upstream no longer maintains (no more security fixes): kept
        # so that instances still running them can upgrade along the path.
        "unmaintained": [v.version for v in found.versions if not v.maintained_on(date.today())],
        "one_major_at_a_time": found.one_major_at_a_time,
        "requires": [*found.requires, *(["mail"] if found.requires_mail else [])],
        # Whether it signs people in with the cluster's identity provider (apps/README.md,
        # "Single sign-on"): "yes", "optional" (the setting single_sign_on), or "no".
        "single_sign_on": (
            "no" if found.oidc is None else "optional" if found.oidc.optional else "yes"
        ),
        "resources": found.resources,
        # Other apps' instances it works with (--use ROLE=INSTANCE at install).
        "uses": {u.role: {"apps": list(u.apps), "optional": u.optional} for u in found.uses},
        # Why it cannot, or which versions can (app.yaml `sso_note`); "" when nothing to add.
        "single_sign_on_note": found.sso_note,
        "parameters": [
            {
                "name": p.name,
                "type": p.type,
                "prompt": p.prompt,
                "default": p.default,
                "generated": p.generate,
                "required": p.required,
            }
            for p in found.parameters
        ],
        "hooks": {phase: [s.name for s in steps] for phase, steps in found.hooks.items()},
        "directory": str(found.directory),
    }
    emit(app, data, _show_table)


def _show_table(data: dict[str, Any]) -> Any:
    params = ", ".join(
        p["name"] + (" (generated)" if p["generated"] else "") for p in data["parameters"]
    )
    hooks = "; ".join(f"{k}: {', '.join(v)}" for k, v in data["hooks"].items())
    return key_value_table(
        {
            "name": data["name"],
            "description": data["description"],
            "category": data["category"],
            "homepage": data["homepage"],
            "license": data["license"],
            "architectures": ", ".join(data["architectures"]),
            "versions": ", ".join(
                v + (" (unmaintained upstream)" if v in data["unmaintained"] else "")
                for v in data["versions"]
            ),
            "upgrades": "one major at a time" if data["one_major_at_a_time"] else "any step",
            "requires": ", ".join(data["requires"]) or "nothing",
            "single sign-on": data["single_sign_on"]
            + (f": {data['single_sign_on_note']}" if data["single_sign_on_note"] else ""),
            "uses": "; ".join(
                f"{role}: {' or '.join(u['apps'])}" + (" (optional)" if u["optional"] else "")
                for role, u in data["uses"].items()
            )
            or "nothing",
            "parameters": params,
            "hooks": hooks or "none",
            "directory": data["directory"],
        }
    )


@catalog_app.command("validate")
def validate(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="App folders (holding app.yaml).")],
    output: OutputOption = None,
) -> None:
    """Check app definitions: every problem at once, with file, field and line; every
    version is rendered with sample values to check the templates.

    \b
    Examples:
      libresh catalog validate apps/nextcloud apps/vaultwarden
      libresh catalog validate apps/* -o json | jq '.[] | select(.valid | not)'
    """
    from libresh_cli.apps.catalog import validate_app
    from libresh_cli.errors import LibreshError

    app = app_context(ctx, output)
    failures = []
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            checked = validate_app(path)
        except LibreshError as error:
            failures.append(error)
            results.append({"path": str(path), "valid": False, "problems": error.message})
            continue
        versions = len(checked.versions)
        results.append({"path": str(path), "app": checked.name, "valid": True})
        if app.output is OutputFormat.table:
            app.err.print(
                marked("✓", "green", f"{path}: {checked.name} is valid ({versions} versions).")
            )
    if app.output is not OutputFormat.table:
        emit(app, results, str)  # the failure's exit code follows, without a second document
    if len(failures) == 1:
        raise failures[0]
    if failures:
        from libresh_cli.errors import BadInputError

        raise BadInputError("\n".join(f.message for f in failures))
