"""Collabora, alone and used by Nextcloud, on the lab through the `libresh` command: Collabora's
own life (install, again, upgrade, backup, restore, uninstall), then a Nextcloud that uses it:
both sides wired (Nextcloud's LIBRESH_OFFICE_URL and its office-link hook Job, Collabora's
aliasgroups), `status` showing the link both ways, install again a no-op, uninstall of the used
instance refused, a clone that keeps the link (and Collabora allowing the clone), and the link
undone by uninstalling. kwok runs no containers: the hook Jobs complete without running (what
they run is in apps/nextcloud/NOTES.md, "Office")."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.record import read_record
from libresh_cli.apps.schema import load_app
from libresh_cli.kube.client import KubeClient
from tests.integration.conftest import Lab
from tests.integration.test_apps import install, libresh, ok
from tests.integration.test_backup_lab import runner_jobs, storage

__all__ = ["storage"]  # the backup storage fixture of test_backup_lab, used here as is

COLLABORA = load_app(builtin_catalog() / "collabora")


@pytest.fixture
def names(kube: KubeClient) -> Iterator[dict[str, str]]:
    """Fresh instance names; their namespaces are deleted afterwards (not waited for)."""
    suffix = uuid.uuid4().hex[:6]
    made = {
        role: f"{letter}{suffix}"
        for role, letter in (("office", "o"), ("cloud", "n"), ("copy", "k"))
    }
    yield made
    for name in made.values():
        kube.delete("v1", "Namespace", name)


def env_of(kube: KubeClient, name: str, deployment: str) -> dict[str, Any]:
    found = kube.get("apps/v1", "Deployment", deployment, name)
    assert found is not None, f"{name}/{deployment}"
    container = found["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def allowed_hosts(kube: KubeClient, office: str) -> list[str]:
    env = env_of(kube, office, "collabora")
    return [env[f"aliasgroup{i}"] for i in range(1, 10) if f"aliasgroup{i}" in env]


def status(lab: Lab, name: str) -> dict[str, Any]:
    return dict(json.loads(ok(libresh(lab, "status", name, "-o", "json")).stdout))


def test_collabora_alone_installs_upgrades_backs_up_restores_and_uninstalls(
    lab: Lab, kube: KubeClient, storage: str, names: dict[str, str]
) -> None:
    office = names["office"]
    oldest, newest = COLLABORA.versions[0], COLLABORA.latest
    domain = f"{office}.example.org"
    ok(install(lab, "collabora", office, domain, "--version", oldest.version))
    deployment = kube.get("apps/v1", "Deployment", "collabora", office)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == oldest.image
    # Used by nobody: no WOPI host can be trusted (never coolwsd's trust-the-first mode).
    assert allowed_hosts(kube, office) == ["https://no-wopi-host.invalid:443"]
    secret = kube.get("v1", "Secret", "libresh-credentials", office)
    assert secret is not None and set(secret["data"]) == {"admin_password"}

    again = ok(install(lab, "collabora", office, domain))
    assert "is up to date: nothing to do" in again.stderr

    done = json.loads(ok(libresh(lab, "upgrade", office, "--yes", "-o", "json")).stdout)
    assert [(d["result"], d["to"]) for d in done] == [("upgraded", newest.version)]
    deployment = kube.get("apps/v1", "Deployment", "collabora", office)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == newest.image

    # Nothing but the record and the Secret: the runner dumps no database and copies no volume.
    taken = json.loads(ok(libresh(lab, "backup", office, "-o", "json")).stdout)
    assert taken["instance"] == office and taken["version"] == newest.version
    (backup, *_) = runner_jobs(kube, office, "backup")
    runner_env = {
        e["name"]: e.get("value") or ""  # the API leaves an empty value out
        for e in backup["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert runner_env["LIBRESH_DATABASES"] == "" and runner_env["LIBRESH_VOLUMES"] == ""
    ok(libresh(lab, "restore", office, "--yes", "-o", "json"))
    record = read_record(kube, office)
    assert record is not None and record.history[-1].action == "restore"

    ok(libresh(lab, "uninstall", office, "--yes"))
    assert kube.get("apps/v1", "Deployment", "collabora", office) is None


def test_nextcloud_uses_collabora_on_both_sides_through_clone_and_uninstall(
    lab: Lab, kube: KubeClient, storage: str, names: dict[str, str]
) -> None:
    office, cloud, copy = names["office"], names["cloud"], names["copy"]
    ok(install(lab, "collabora", office, f"{office}.example.org"))

    # The only Collabora is chosen without being named.
    ok(install(lab, "nextcloud", cloud, f"{cloud}.example.org"))
    assert env_of(kube, cloud, "nextcloud")["LIBRESH_OFFICE_URL"] == f"https://{office}.example.org"
    hook = kube.get("batch/v1", "Job", f"hook-post-install-office-link-{_dashed()}", cloud)
    assert hook is not None
    assert hook["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "sh",
        "/usr/local/libresh/office-link.sh",
    ]
    assert allowed_hosts(kube, office) == [f"https://{cloud}.example.org:443"]
    assert status(lab, cloud)["uses"] == {"office": office}
    assert status(lab, office)["used_by"] == [
        {"instance": cloud, "app": "nextcloud", "role": "office"}
    ]
    shown = ok(libresh(lab, "status", office)).stdout
    assert f"{cloud} (nextcloud, office)" in shown

    again = ok(install(lab, "nextcloud", cloud, f"{cloud}.example.org"))
    assert "is up to date: nothing to do" in again.stderr

    refused = libresh(lab, "uninstall", office, "--yes")
    assert refused.returncode != 0
    assert f"{office} is used by {cloud} (nextcloud, as its office)" in refused.stderr
    assert kube.get("apps/v1", "Deployment", "collabora", office) is not None

    # A clone keeps the link, and Collabora allows the clone's domain too.
    ok(libresh(lab, "backup", cloud, "-o", "json"))
    cloned = libresh(
        lab, "restore", cloud, "--as", copy, "--domain", f"{copy}.example.org", "--yes"
    )
    ok(cloned)
    copied = read_record(kube, copy)
    assert copied is not None and copied.uses == {"office": office}
    assert env_of(kube, copy, "nextcloud")["LIBRESH_OFFICE_URL"] == f"https://{office}.example.org"
    assert allowed_hosts(kube, office) == [  # in the order of the users' names
        f"https://{copy}.example.org:443",
        f"https://{cloud}.example.org:443",
    ]

    # Uninstalling a user takes its domain out; --force uninstalls a used instance anyway.
    ok(libresh(lab, "uninstall", copy, "--yes"))
    assert allowed_hosts(kube, office) == [f"https://{cloud}.example.org:443"]
    ok(libresh(lab, "uninstall", office, "--yes", "--force"))
    assert kube.get("apps/v1", "Deployment", "collabora", office) is None
    assert status(lab, cloud)["uses"] == {"office": office}  # kept: install --use changes it


def _dashed() -> str:
    nextcloud = load_app(builtin_catalog() / "nextcloud")
    return nextcloud.latest.version.replace(".", "-")
