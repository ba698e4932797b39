"""The catalog format: the built-in apps are valid, and every problem of a bad app.yaml is
reported at once with its file, field and line."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from libresh_cli.apps.catalog import Catalog, builtin_catalog, validate_app
from libresh_cli.apps.schema import CatalogInvalidError, line_numbers, load_app
from libresh_cli.cli.main import _run
from libresh_cli.errors import BadInputError, ExitCode, NotFoundError

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "tests" / "fixtures" / "catalog"


@pytest.mark.parametrize("name", ["nextcloud", "vaultwarden"])
def test_builtin_apps_are_valid(name: str) -> None:
    app = validate_app(builtin_catalog() / name)
    assert app.name == name and len(app.versions) >= 3


def test_nextcloud_steps_through_every_major_and_ends_on_maintained_ones() -> None:
    app = load_app(builtin_catalog() / "nextcloud")
    majors = sorted({v.major for v in app.versions})
    assert majors == list(range(majors[0], majors[-1] + 1))  # no major missing on the path
    assert app.one_major_at_a_time and set(app.requires) == {"postgres", "redis"}
    # Every version says until when upstream maintains it; the newest is maintained today.
    assert all(v.maintained_until is not None for v in app.versions)
    assert app.latest.maintained_on(date.today())
    # maintenance mode goes on before an upgrade and off after it, or after a rollback
    assert [s.name for s in app.hooks["pre_upgrade"]] == ["maintenance-on"]
    # (then the office server is linked again, out of maintenance mode: app commands load)
    assert [s.name for s in app.hooks["post_upgrade"]][-2:] == ["maintenance-off", "office-link"]
    assert [s.name for s in app.hooks["rollback"]] == ["maintenance-off"]
    assert all(":" in v.image and not v.image.endswith(":latest") for v in app.versions)


def test_maintained_until_must_be_a_date(tmp_path: Path) -> None:
    folder = tmp_path / "dated"
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "x.yaml").write_text("")
    (folder / "app.yaml").write_text(
        "schema_version: 1\nname: dated\ndescription: d\n"
        "versions:\n  - {version: 1.0.0, image: example.org/d:1.0.0, maintained_until: soon}\n"
    )
    with pytest.raises(CatalogInvalidError, match=r"versions\[0\]\.maintained_until"):
        load_app(folder)


BROKEN = """\
schema_version: 1
name: broken
description: x
colour: blue
versions:
  - version: 1.0.0
    image: example.org/x:1.0.0
  - version: 0.9.0
    image: example.org/x
parameters:
  - name: Domain
    type: hostname
  - name: size
    type: integer
    length: 2
requires:
  mysql: {}
"""


def test_every_problem_at_once_with_field_and_line(tmp_path: Path) -> None:
    app_dir = tmp_path / "broken"
    app_dir.mkdir()
    (app_dir / "app.yaml").write_text(BROKEN)
    with pytest.raises(CatalogInvalidError) as raised:
        load_app(app_dir)
    found = {(p.field, p.line) for p in raised.value.problems}
    assert ("colour", 4) in found
    assert ("versions[1].version", 8) in found  # older than the one before
    assert ("versions[1].image", 9) in found  # no tag
    assert ("parameters[0].name", 11) in found
    assert ("parameters[0].type", 12) in found
    assert ("parameters[1].length", 15) in found
    assert ("requires.mysql", 17) in found
    assert any(p.field == "(templates)" for p in raised.value.problems)
    message = raised.value.message
    assert f"{app_dir / 'app.yaml'}:9: versions[1].image:" in message
    assert "'hostname' is not one of" in message


def test_yaml_syntax_errors_have_a_line(tmp_path: Path) -> None:
    app_dir = tmp_path / "bad"
    app_dir.mkdir()
    (app_dir / "app.yaml").write_text("name: bad\nversions: [\n")
    with pytest.raises(CatalogInvalidError, match="not valid YAML") as raised:
        load_app(app_dir)
    assert raised.value.problems[0].line is not None


def test_template_errors_are_found_by_validate(tmp_path: Path) -> None:
    copy = tmp_path / "demo"
    shutil.copytree(DEMO / "demo", copy)
    (copy / "templates" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: {{ params.nope }}}\n"
    )
    with pytest.raises(CatalogInvalidError, match="'dict object' has no attribute 'nope'"):
        validate_app(copy)


def test_cluster_wide_kinds_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "demo"
    shutil.copytree(DEMO / "demo", copy)
    (copy / "templates" / "role.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\n"
    )
    with pytest.raises(CatalogInvalidError, match=r"ClusterRole .* is not allowed in an app"):
        validate_app(copy)


def test_line_numbers_follow_the_yaml() -> None:
    lines = line_numbers("a: 1\nb:\n  - c: 2\n    d: 3\n")
    assert lines[("a",)] == 1 and lines[("b", 0, "c")] == 3 and lines[("b", 0, "d")] == 4


def test_unknown_app_suggests_close_names() -> None:
    with pytest.raises(NotFoundError, match="No app named 'nextclod'") as raised:
        Catalog.from_sources().load("nextclod")
    assert "Did you mean nextcloud" in str(raised.value.hint)  # (keycloak is close too)


def test_more_catalogs_come_first(tmp_path: Path) -> None:
    catalog = Catalog.from_sources([DEMO], env={"LIBRESH_CATALOG_PATH": str(tmp_path)})
    assert catalog.directories[:2] == (DEMO, tmp_path)
    assert {"demo", "nextcloud", "vaultwarden"} <= set(catalog.app_directories())
    with pytest.raises(BadInputError, match="is not a directory"):
        Catalog.from_sources([tmp_path / "missing"], env={})


def test_catalog_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["catalog", "list"]) == 0
    out = capsys.readouterr().out
    assert "nextcloud" in out and "vaultwarden" in out
    assert _run(["catalog", "show", "nextcloud", "-o", "json"]) == 0
    assert '"one_major_at_a_time": true' in capsys.readouterr().out
    assert _run(["catalog", "validate", str(ROOT / "apps" / "nextcloud")]) == 0
    assert _run(["catalog", "validate", str(ROOT / "README.md")]) == ExitCode.BAD_INPUT
    assert "has no app.yaml" in capsys.readouterr().err
