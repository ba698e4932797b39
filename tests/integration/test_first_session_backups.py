"""A first session's backups and infrastructure on the lab (issue 20, points 6, 7 and 8), run as
an admin runs them: the `libresh` command, its exit codes and the words on the screen.

The lab simulates its nodes: what a container would do is played by a stand-in (the backup
runner) or is missing (k3s, Traefik, cert-manager). The commands must say so."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from libresh_cli.errors import ExitCode
from libresh_cli.kube.client import KubeClient
from tests.integration.conftest import Lab
from tests.integration.test_apps import install, libresh, ok
from tests.integration.test_backup_lab import notes, storage  # noqa: F401 - fixtures

SCHEDULE = ("batch/v1", "CronJob", "libresh-backup")


def said(result: object) -> str:
    """stdout and stderr as one line of words: what a person reads, whatever the wrapping."""
    return " ".join(f"{result.stdout} {result.stderr}".split())  # type: ignore[attr-defined]


def test_backup_list_and_restore_backup_are_understood(lab: Lab, notes: str) -> None:  # noqa: F811
    listed = ok(libresh(lab, "backup", "list", notes))
    assert f"lab-{notes}" in listed.stdout and "BACKUP" in listed.stdout

    def backups(*command: str) -> list[str]:
        rows = json.loads(ok(libresh(lab, *command, notes, "-o", "json")).stdout)
        return [row["backup"] for row in rows]

    assert backups("backup", "list") == backups("backups", "list") == [f"lab-{notes}"]
    restore = ok(libresh(lab, "restore", notes, "--backup", f"lab-{notes}", "--dry-run"))
    assert f"Restore backup lab-{notes} of {notes}" in said(restore)
    assert "(dry run)" in said(restore)


def test_backups_on_the_lab_say_they_are_simulated(lab: Lab, notes: str) -> None:  # noqa: F811
    backup = ok(libresh(lab, "backup", notes))
    words = said(backup)
    assert "This cluster is a libresh lab" in words
    assert "backups are simulated too" in words
    assert f"shows one made-up backup, lab-{notes}" in words
    assert "On a k3s cluster, backups are real." in words
    assert "backups are simulated" in said(ok(libresh(lab, "backups", "list", notes)))
    restore = said(ok(libresh(lab, "restore", notes, "--yes", "--no-backup")))
    assert "backups are simulated" in restore
    assert "a restore goes through its steps without restoring anything" in restore


def test_uninstall_removes_the_backup_schedule_and_says_so(
    lab: Lab,
    kube: KubeClient,
    notes: str,  # noqa: F811
) -> None:
    ok(libresh(lab, "backup", "schedule", notes, "--cron", "30 3 * * *"))
    assert json.loads(ok(libresh(lab, "status", notes, "-o", "json")).stdout)[
        "backup_schedule"
    ] == ("30 3 * * *")
    gone = ok(libresh(lab, "uninstall", notes, "--yes"))
    words = said(gone)
    assert f"{notes}: uninstalled, data kept; its backup schedule (30 3 * * *) is removed" in words
    assert "installing it again does not bring it back" in words
    assert f'libresh backup schedule {notes} --cron "30 3 * * *"' in words
    assert kube.get(*SCHEDULE, notes) is None
    assert kube.get("v1", "Secret", "libresh-backup-schedule", notes) is None
    status = ok(libresh(lab, "status", notes))
    line = next(row for row in status.stdout.splitlines() if "backup schedule" in row)
    assert line.split() == ["backup", "schedule", "none"]
    # Installing again does not bring it back (as the uninstall said).
    ok(install(lab, "notes", notes, f"{notes}.example.org", "--version", "1.0.0"))
    assert kube.get(*SCHEDULE, notes) is None
    # Without a schedule, uninstall says nothing of one.
    assert "schedule" not in said(ok(libresh(lab, "uninstall", notes, "--yes")))


def test_infra_on_the_lab_says_what_it_would_install(lab: Lab) -> None:
    for dry_run in (["--dry-run"], []):
        result = libresh(lab, "infra", "install", "--email", "ops@coop.example", *dry_run)
        assert result.returncode == ExitCode.PREREQUISITE_MISSING
        words = said(result)
        assert "This cluster is a libresh lab" in words and "not k3s" in words
        assert "can be neither installed nor previewed here" in words
        assert "profile single: cert-manager v1.19.4" in words
        assert "ClusterIssuers letsencrypt-staging, letsencrypt-production" in words


@pytest.fixture
def vaultwarden(kube: KubeClient) -> Iterator[str]:
    name = f"v{uuid.uuid4().hex[:8]}"
    yield name
    kube.delete("v1", "Namespace", name)


def test_an_app_nothing_would_serve_is_warned_about(
    lab: Lab, kube: KubeClient, vaultwarden: str
) -> None:
    domain = f"{vaultwarden}.example.org"
    installed = ok(install(lab, "vaultwarden", vaultwarden, domain))
    words = said(installed)
    assert f"https://{domain} will not work yet: this cluster has no cert-manager's " in words
    assert "ClusterIssuer letsencrypt-production (no certificate is issued)" in words
    assert "and no IngressClass traefik (no ingress controller serves it)" in words
    assert "libresh infra install --email you@example.org" in words
    assert "This cluster is a libresh lab" in words
    # With an IngressClass traefik, only the missing issuer is said.
    ingress_class = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "traefik"},
        "spec": {"controller": "traefik.io/ingress-controller"},
    }
    kube.apply(ingress_class)
    try:
        again = said(
            ok(install(lab, "vaultwarden", vaultwarden, domain, "--set", "signups_allowed=true"))
        )
        assert "ClusterIssuer letsencrypt-production" in again
        assert "IngressClass" not in again
    finally:
        kube.delete("networking.k8s.io/v1", "IngressClass", "traefik")
