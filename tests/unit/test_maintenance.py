"""Versions out of upstream maintenance are said so: `catalog show`, `list` and `status`."""

from __future__ import annotations

import json
from datetime import date

import pytest

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.inventory import _summary
from libresh_cli.apps.record import InstanceRecord
from libresh_cli.apps.schema import load_app
from libresh_cli.cli.apps import _version_text
from libresh_cli.cli.main import _run

NEXTCLOUD = load_app(builtin_catalog() / "nextcloud")


def record(version: str) -> InstanceRecord:
    return InstanceRecord("cloud", "nextcloud", version, {"domain": "c.example.org"}, [], [])


def test_an_instance_on_an_unmaintained_version_is_marked() -> None:
    old = _summary(record("29.0.16"), {}, NEXTCLOUD, [])
    assert old.maintained is False and old.upgrade == "34.0.2"
    assert _version_text(old.to_dict()) == "29.0.16 (unmaintained)"
    new = _summary(record("34.0.2"), {}, NEXTCLOUD, [])
    assert new.maintained is True and _version_text(new.to_dict()) == "34.0.2"
    gone = _summary(record("34.0.2"), {}, None, [])  # an app gone from the catalog: unknown
    assert gone.maintained is None


def test_maintained_until_is_the_last_maintained_day() -> None:
    version = NEXTCLOUD.version("32.0.13")
    assert version is not None and version.maintained_until == date(2026, 9, 28)
    assert version.maintained_on(date(2026, 9, 28))
    assert not version.maintained_on(date(2026, 9, 29))


def test_catalog_show_lists_the_unmaintained_versions(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["catalog", "show", "nextcloud", "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    today = date.today()
    expected = [v.version for v in NEXTCLOUD.versions if not v.maintained_on(today)]
    assert shown["unmaintained"] == expected and "29.0.16" in expected
    assert NEXTCLOUD.latest.version not in shown["unmaintained"]
    assert _run(["catalog", "show", "nextcloud"]) == 0
    assert "29.0.16 (unmaintained upstream)" in capsys.readouterr().out


def test_a_failure_under_o_json_is_one_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    """Cron wrappers parse stdout: an error must be JSON there too, and only once."""
    assert _run(["catalog", "show", "nope", "-o", "json"]) == 4
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["exit_code"] == 4 and "nope" in document["error"]
    assert "Error:" in captured.err  # people still read it on stderr
    assert _run(["--output=json", "catalog", "show", "--bogus"]) == 2
    assert json.loads(capsys.readouterr().out)["exit_code"] == 2
    assert _run(["catalog", "show", "nope"]) == 4
    assert capsys.readouterr().out == ""  # no JSON unless asked for
