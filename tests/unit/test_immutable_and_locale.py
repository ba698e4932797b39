"""Two things an app may ask of libresh (apps/README.md, parameters and backing services):
a parameter that cannot change once installed (`immutable`), and a PostgreSQL database made
with a given locale (`requires: {postgres: {locale: C}}`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import App
from libresh_cli.apps.params import GivenValues, parse_set_options, resolve
from libresh_cli.apps.render import generated_secret_keys, render
from libresh_cli.apps.schema import CatalogInvalidError, load_app
from libresh_cli.errors import BadInputError

APP = """\
schema_version: 1
name: fixed
description: d
versions:
  - {version: 1.0.0, image: example.org/f:1.0.0}
parameters:
  - {name: domain, type: domain}
  - {name: server_name, type: domain, immutable: true}
  - {name: realm, type: string, required: false, immutable: true}
  - {name: colour, type: string, default: blue}
requires:
  postgres: LOCALE
"""


def write_app(tmp_path: Path, locale: str = "{locale: C}") -> App:
    folder = tmp_path / "fixed"
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    (folder / "templates" / "x.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
        "data: {server: {{ params.server_name | tojson }}}\n"
    )
    (folder / "app.yaml").write_text(APP.replace("LOCALE", locale))
    return load_app(folder)


def given(*options: str) -> GivenValues:
    return parse_set_options(list(options), GivenValues())


def test_an_immutable_value_is_kept_and_a_new_one_refused(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    installed, _ = resolve(
        app, given("domain=chat.example.org", "server_name=example.org"), previous=None
    )
    assert installed["server_name"] == "example.org"  # a new instance takes any value
    # Again: the same value, or none, is fine; other parameters still change.
    again, _ = resolve(app, given("server_name=EXAMPLE.org", "colour=red"), previous=installed)
    assert again["server_name"] == "example.org" and again["colour"] == "red"
    kept, _ = resolve(app, given(), previous=installed)
    assert kept["server_name"] == "example.org"
    with pytest.raises(BadInputError) as refused:
        resolve(app, given("server_name=other.org"), previous=installed)
    assert refused.value.message == (
        "--set server_name: server_name cannot change once the instance is installed "
        "(it was installed with 'example.org')."
    )
    assert "--set server_name=…" in (refused.value.hint or "")
    # An optional one left empty at install cannot be given later either.
    with pytest.raises(BadInputError, match=r"realm cannot change .*installed with no value"):
        resolve(app, given("realm=north"), previous=installed)


def test_immutable_must_be_true_or_false(tmp_path: Path) -> None:
    folder = tmp_path / "fixed"
    write_app(tmp_path)
    text = (folder / "app.yaml").read_text().replace("immutable: true}", "immutable: yes-ish}", 1)
    (folder / "app.yaml").write_text(text)
    with pytest.raises(CatalogInvalidError, match=r"parameters\[1\]\.immutable: expected true"):
        load_app(folder)


def render_with(app: App, services: dict[str, Any]) -> list[Any]:
    secrets = {k: "s3cr3t-" + k for k in generated_secret_keys(app)}
    service_secrets = {"postgres_admin_password": "a"} if services else {}
    values = {"domain": "chat.example.org", "server_name": "example.org", "colour": "blue"}
    instance = Instance("team", app, app.latest, values, secrets, services, service_secrets)
    return render(instance)


def container_env(objects: list[Any], kind: str, name: str) -> dict[str, Any]:
    found = next(o for o in objects if (o["kind"], o["metadata"]["name"]) == (kind, name))
    spec = found["spec"]["template"]["spec"]
    return {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}


def test_the_locale_reaches_initdb_and_the_provisioning_job(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    assert app.postgres_locale == "C"
    embedded = container_env(render_with(app, {}), "StatefulSet", "postgres")
    assert embedded["POSTGRES_INITDB_ARGS"] == "--encoding=UTF8 --lc-collate=C --lc-ctype=C"
    external = {
        "postgres": {
            "provider": "external",
            "host": "db.example.org",
            "port": 5432,
            "admin_user": "admin",
            "sslmode": "require",
        }
    }
    job = container_env(render_with(app, external), "Job", "postgres-provision")
    assert job["APP_LOCALE"] == "C"
    # Without the option: neither, as before.
    plain = write_app(tmp_path, "{}")
    assert plain.postgres_locale == ""
    assert "POSTGRES_INITDB_ARGS" not in container_env(
        render_with(plain, {}), "StatefulSet", "postgres"
    )
    assert "APP_LOCALE" not in container_env(
        render_with(plain, external), "Job", "postgres-provision"
    )


def test_only_known_locales_and_options_are_accepted(tmp_path: Path) -> None:
    with pytest.raises(
        CatalogInvalidError, match=r"requires\.postgres\.locale: 'fr_FR' is not one of \['C'\]"
    ):
        write_app(tmp_path, "{locale: fr_FR}")
    with pytest.raises(CatalogInvalidError, match=r"requires\.postgres\.size: unknown field"):
        write_app(tmp_path, "{size: 1}")
