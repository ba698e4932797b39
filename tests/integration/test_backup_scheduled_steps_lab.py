"""Scheduled backups run the app's `scheduled: true` pre_backup steps (Vaultwarden's consistent
copy of its database) as init containers of the CronJob's pod, with the image of the version
that runs: as applied to the lab's API server by `libresh backup schedule`, and after
`libresh upgrade` and a restore at an older version.

kwok runs no containers: what the steps do in a real pod is in
test_vaultwarden_scheduled_real_node.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from libresh_cli.apps.catalog import Catalog
from libresh_cli.backup.runner import BackupEntry
from libresh_cli.backup.service import restore_backup
from libresh_cli.kube.client import KubeClient
from libresh_cli.progress import SilentReporter
from tests.integration.conftest import Lab
from tests.integration.test_apps import TEST_CATALOG, install, libresh, ok
from tests.integration.test_backup_lab import storage  # noqa: F401 - fixture

IMAGE = "docker.io/vaultwarden/server:{}"


@pytest.fixture
def vaultwarden(lab: Lab, kube: KubeClient, storage: str) -> Iterator[str]:  # noqa: F811
    name = f"v{uuid.uuid4().hex[:8]}"
    ok(install(lab, "vaultwarden", name, f"{name}.example.org", "--version", "1.34.1"))
    yield name
    kube.delete("v1", "Namespace", name)


def pod_of(kube: KubeClient, name: str) -> dict[str, Any]:
    cronjob = kube.get("batch/v1", "CronJob", "libresh-backup", name)
    assert cronjob is not None
    pod: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def init_images(pod: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["image"]) for c in pod["initContainers"]]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def runner_env(pod: dict[str, Any]) -> dict[str, str]:
    return env_of(pod["containers"][0])


def test_the_schedule_copies_the_database_with_the_running_versions_image(
    lab: Lab, kube: KubeClient, vaultwarden: str
) -> None:
    name = vaultwarden
    said = ok(libresh(lab, "backup", "schedule", name, "--cron", "30 3 * * *", "--keep-daily", "5"))
    assert "Before each: sqlite-copy." in " ".join(said.stderr.split())
    shown = json.loads(
        ok(
            libresh(lab, "-o", "json", "backup", "schedule", name, "--cron", "@daily", "--dry-run")
        ).stdout
    )
    assert shown["steps"] == ["sqlite-copy"]
    pod = pod_of(kube, name)
    assert [n for n, _ in init_images(pod)] == ["restic", "hook-sqlite-copy"]
    assert init_images(pod)[1][1] == IMAGE.format("1.34.1")
    copying = pod["initContainers"][1]
    assert copying["command"][:2] == ["sh", "-c"] and "/vaultwarden backup" in copying["command"][2]
    # The runner's volume, mounted by both: one claim, one pod volume.
    assert copying["volumeMounts"] == [{"name": "data-vaultwarden-data", "mountPath": "/data"}]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims.count("vaultwarden-data") == 1
    assert runner_env(pod)["LIBRESH_VERSION"] == "1.34.1"
    assert env_of(copying)["SIGNUPS_ALLOWED"] == "false"

    # `install` again with other settings: the step takes the app's new environment.
    ok(install(lab, "vaultwarden", name, f"{name}.example.org", "--set", "signups_allowed=true"))
    assert env_of(pod_of(kube, name)["initContainers"][1])["SIGNUPS_ALLOWED"] == "true"

    ok(libresh(lab, "upgrade", name, "--to", "1.37.2", "--yes"))
    pod = pod_of(kube, name)
    assert init_images(pod)[1] == ("hook-sqlite-copy", IMAGE.format("1.37.2"))
    env = runner_env(pod)
    assert env["LIBRESH_VERSION"] == "1.37.2"
    # Re-rendered, not reset: the schedule and retention it was given.
    cronjob = kube.get("batch/v1", "CronJob", "libresh-backup", name)
    assert cronjob is not None and cronjob["spec"]["schedule"] == "30 3 * * *"
    assert (env["LIBRESH_KEEP_DAILY"], env["LIBRESH_KEEP_WEEKLY"]) == ("5", "4")
    secret = kube.get("v1", "Secret", "libresh-backup-schedule", name)
    assert secret is not None

    # A restore at the version a backup was taken with takes the schedule back to it.
    older = BackupEntry(f"lab-{name}", "2026-11-22T03:00:00Z", "1.34.1", "scheduled", name)
    catalog = Catalog.from_sources([TEST_CATALOG])
    restore_backup(kube, catalog, name, older, SilentReporter(), safety_backup=False)
    pod = pod_of(kube, name)
    assert init_images(pod)[1] == ("hook-sqlite-copy", IMAGE.format("1.34.1"))
    assert runner_env(pod)["LIBRESH_VERSION"] == "1.34.1"

    ok(libresh(lab, "backup", "schedule", name, "--remove", "--yes"))
    assert kube.get("batch/v1", "CronJob", "libresh-backup", name) is None


def test_an_app_without_scheduled_steps_gets_the_runner_alone(
    lab: Lab,
    kube: KubeClient,
    storage: str,  # noqa: F811
) -> None:
    name = f"n{uuid.uuid4().hex[:8]}"
    ok(install(lab, "notes", name, f"{name}.example.org", "--version", "1.0.0"))
    try:
        said = ok(libresh(lab, "backup", "schedule", name, "--cron", "@daily"))
        assert "Before each" not in said.stderr
        assert [n for n, _ in init_images(pod_of(kube, name))] == ["restic"]
        # An upgrade leaves no schedule behind it stale.
        ok(libresh(lab, "upgrade", name, "--to", "2.0.0", "--yes"))
        assert runner_env(pod_of(kube, name))["LIBRESH_VERSION"] == "2.0.0"
    finally:
        kube.delete("v1", "Namespace", name)
