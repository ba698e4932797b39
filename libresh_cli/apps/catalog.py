"""Where apps are found: catalogs given with --catalog, then LIBRESH_CATALOG_PATH, then the
built-in catalog shipped in the package. The first catalog holding an app name wins."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import App, Parameter
from libresh_cli.apps.render import RenderError, generated_secret_keys, render
from libresh_cli.apps.schema import CatalogInvalidError, Problem, load_app
from libresh_cli.errors import BadInputError, NotFoundError

CATALOG_PATH_VARIABLE = "LIBRESH_CATALOG_PATH"


def builtin_catalog() -> Path:
    """The wheel carries apps/ as libresh_cli/_catalog; a source checkout has it at the top."""
    packaged = Path(str(resources.files("libresh_cli"))) / "_catalog"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "apps"


@dataclass(frozen=True)
class Catalog:
    directories: tuple[Path, ...]

    @classmethod
    def from_sources(
        cls, extra: Sequence[Path] = (), env: Mapping[str, str] | None = None
    ) -> Catalog:
        env = os.environ if env is None else env
        from_env = [Path(p) for p in env.get(CATALOG_PATH_VARIABLE, "").split(":") if p]
        for directory in [*extra, *from_env]:
            if not directory.is_dir():
                raise BadInputError(
                    f"The catalog {directory} is not a directory.",
                    hint=f"Check --catalog and {CATALOG_PATH_VARIABLE}.",
                )
        return cls((*extra, *from_env, builtin_catalog()))

    def app_directories(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for catalog in self.directories:
            for app_file in sorted(catalog.glob("*/app.yaml")):
                found.setdefault(app_file.parent.name, app_file.parent)
        return found

    def load(self, name: str) -> App:
        directories = self.app_directories()
        if name not in directories:
            close = difflib.get_close_matches(name, list(directories), n=3, cutoff=0.5)
            hint = (
                f"Did you mean {', '.join(close)}?"
                if close
                else f"An instance named {name} is made with --name: libresh install APP "
                f"--name {name}."
            )
            raise NotFoundError(
                f"No app named '{name}' in the catalog.",
                hint=f"{hint} `libresh catalog list` shows every app.",
            )
        return load_app(directories[name])

    def apps(self) -> tuple[list[App], list[BadInputError]]:
        """Every app that can be read, and the error of each that cannot (naming its file):
        one broken package does not hide the others."""
        found, broken = [], []
        for directory in self.app_directories().values():
            try:
                found.append(load_app(directory))
            except BadInputError as error:
                broken.append(error)
        return found, broken


# What `catalog validate` renders an app that requires mail with, beside no relay at all.
SAMPLE_RELAY = {
    "host": "smtp.example.org",
    "port": "587",
    "tls": "starttls",
    "user": "sample",
    "password": "x" * 16,
    "from": "admin@example.org",
}


def sample_value(parameter: Parameter) -> Any:
    """A value of the right type for rendering templates during validation."""
    if parameter.default is not None:
        return parameter.default
    return {
        "domain": "app.example.org",
        "email": "admin@example.org",
        "integer": parameter.minimum if parameter.minimum is not None else 1,
        "boolean": False,
    }.get(parameter.type, "sample")


def validate_app(directory: Path) -> App:
    """Everything `libresh catalog validate` checks: the definition, then every version
    rendered with sample values (templates, YAML, allowed kinds)."""
    if not (directory / "app.yaml").is_file():
        raise BadInputError(
            f"{directory} has no app.yaml.", hint="Give the folder of one app, e.g. apps/nextcloud."
        )
    app = load_app(directory)
    params = {p.name: sample_value(p) for p in app.parameters if not p.secret}
    secrets = {key: "x" * length for key, length in generated_secret_keys(app).items()}
    secrets.update({p.name: "x" * 16 for p in app.parameters if p.secret and not p.generate})
    problems = []
    for version in app.versions:
        try:
            objects = render(Instance(app.name, app, version, params, secrets))
            if app.requires_mail:  # the templates' mail-on branch too
                render(Instance(app.name, app, version, params, secrets, mail=SAMPLE_RELAY))
        except RenderError as error:
            problems.append(
                Problem(
                    directory / "templates",
                    f"version {version.version}",
                    None,
                    error.message,
                    section=error.section,
                )
            )
            continue
        problems += _check_references(app, directory, version.version, objects)
    if problems:
        raise CatalogInvalidError(problems)
    return app


def _check_references(
    app: App, directory: Path, version: str, objects: list[dict[str, Any]]
) -> list[Problem]:
    """Fields of app.yaml that name objects must name objects the templates render."""
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    problems = []
    for workload in app.health.workloads:
        kind, name = workload.split("/")
        if (kind, name) not in names:
            problems.append(
                Problem(
                    directory / "app.yaml",
                    "health.workloads",
                    None,
                    f"{workload} is not rendered by version {version}",
                )
            )
    for volume in app.backup_volumes:
        if ("PersistentVolumeClaim", volume) not in names:
            problems.append(
                Problem(
                    directory / "app.yaml",
                    "backup.volumes",
                    None,
                    f"PersistentVolumeClaim {volume} is not rendered by version {version}",
                )
            )
    if app.web and ("Service", app.web.service) not in names:
        problems.append(
            Problem(
                directory / "app.yaml",
                "web.service",
                None,
                f"Service {app.web.service} is not rendered by version {version}",
            )
        )
    return problems
