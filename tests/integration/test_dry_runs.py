"""--dry-run on the commands that had none (issue 18): each says what it would do, on the
lab, and the cluster is the same afterwards."""

from __future__ import annotations

import json

from libresh_cli.apps.record import read_record
from libresh_cli.kube.client import KubeClient
from tests.integration.conftest import Lab
from tests.integration.test_apps import install, libresh, name, ok

__all__ = ["name"]  # the fixture


def test_uninstall_schedule_and_services_dry_runs_change_nothing(
    lab: Lab, kube: KubeClient, name: str
) -> None:
    ok(install(lab, "vaultwarden", name, "pw.example.org"))
    record = read_record(kube, name)
    assert record is not None
    would = json.loads(ok(libresh(lab, "-o", "json", "uninstall", name, "--dry-run")).stdout)
    assert "delete Deployment/vaultwarden" in would["would"]
    assert would["would"][-1].startswith("keep ") and "PersistentVolumeClaim/" in would["would"][-1]
    purge = ok(libresh(lab, "--dry-run", "uninstall", name, "--purge-data"))  # the global flag
    assert purge.stdout.startswith(f"Would delete namespace {name} with everything in it")
    schedule = ok(libresh(lab, "backup", "schedule", name, "--cron", "@daily", "--dry-run"))
    assert schedule.stdout.startswith(f"Would back {name} up at '@daily' (UTC)")
    assert "nothing was changed" in schedule.stderr
    services = ok(libresh(lab, "services", "set", "postgres", "--provider", "external",
                          "--host", "db.example.org", "--dry-run"))  # fmt: skip
    assert "postgres external at db.example.org:5432 (now: embedded)" in services.stdout
    assert read_record(kube, name) == record
    assert kube.get("batch/v1", "CronJob", "libresh-backup", name) is None
    shown = json.loads(ok(libresh(lab, "-o", "json", "services", "show")).stdout)
    assert shown[0] == {"service": "postgres", "provider": "embedded"}
