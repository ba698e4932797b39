"""A scheduled backup of Vaultwarden in real pods (the MODEL image, which writes SQLite every
20 ms: libresh_cli/lab/images/vaultwarden-model) on the lab's real node: the CronJob's pod runs
the app's `sqlite-copy` step as an init container before the runner (apps/vaultwarden/app.yaml
`scheduled: true`), and restoring that scheduled backup gives a whole database: the step's
consistent copy, not the live files the runner read while the app wrote.

The schedule is every minute; it is removed as soon as its first run has succeeded. The live
database is read as in test_vaultwarden_real_node.py (SQLite's backup API on a read-only
connection to the volume's file on this machine)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.kube.client import KubeClient
from tests.integration.conftest import Lab
from tests.integration.realpods import drop_instances, ok, run_libresh, volume_host_path
from tests.integration.test_vaultwarden_real_node import (
    IMAGE,
    NEW,
    alive,
    snapshot,
    utc_text,
    wait_for_seq,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real node needs root")

STEP = "hook-sqlite-copy"  # the init container (libresh_cli/backup/jobs.py HOOK_PREFIX)


@pytest.fixture
def vault(real_lab: Lab, real_storage: Path) -> Iterator[str]:
    name = f"vs{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    ok(
        run_libresh(
            real_lab,
            "install",
            "vaultwarden",
            "--name",
            name,
            "--domain",
            f"{name}.example.org",
            "--version",
            NEW,
            "--yes",
        )
    )
    print(f"install: {time.monotonic() - started:.0f} s")
    try:
        yield name
    finally:
        run_libresh(real_lab, "backup", "schedule", name, "--remove", "--yes")
        drop_instances(real_lab, name)


def container_log(lab: Lab, namespace: str, pod: str, container: str) -> str:
    from kubernetes import client as k8s

    api = k8s.CoreV1Api(lab.official_client())
    return str(api.read_namespaced_pod_log(pod, namespace, container=container))


def first_scheduled_run(kube: KubeClient, name: str, timeout: float = 180) -> dict[str, Any]:
    """The pod of the schedule's first Job, once that Job has succeeded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = kube.list(
            "batch/v1", "Job", name, label_selector="libresh.dev/backup-runner=scheduled"
        )
        for job in jobs:
            status = job.get("status") or {}
            assert not status.get("failed"), json.dumps(status)
            if status.get("succeeded"):
                job_name = job["metadata"]["name"]
                pods = kube.list("v1", "Pod", name, label_selector=f"job-name={job_name}")
                assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
                return pods[0]
        time.sleep(1)
    raise AssertionError(f"no scheduled backup of {name} succeeded in {timeout:.0f} s")


def copy_seq(data: Path, into: Path) -> int:
    """The sequence the step's copy holds (it stays on the live volume: no post_backup runs
    after a scheduled backup); copied away first."""
    shutil.copyfile(data / ".libresh-backup" / "db.sqlite3", into)
    conn = sqlite3.connect(into)
    try:
        (seq,) = conn.execute("SELECT last_seq FROM libresh_model_writes").fetchone()
    finally:
        conn.close()
    return int(seq)


def test_a_scheduled_backup_copies_the_database_first_and_restores_whole(
    real_lab: Lab, vault: str, tmp_path: Path
) -> None:
    before = wait_for_seq(real_lab, vault, 200, tmp_path / "before.sqlite3")
    assert before.integrity == "ok" and before.consistent, before
    said = ok(run_libresh(real_lab, "backup", "schedule", vault, "--cron", "* * * * *"))
    assert "Before each: sqlite-copy." in " ".join(said.split())
    started = time.monotonic()
    with real_lab.kube() as kube:
        pod = first_scheduled_run(kube, vault)
        data = volume_host_path(real_lab, vault, "vaultwarden-data")
        # Read before the next minute's run replaces the copy, and the log before the Job
        # goes with its CronJob; then no more runs.
        held = copy_seq(data, tmp_path / "step-copy.sqlite3")
        log = container_log(real_lab, vault, pod["metadata"]["name"], STEP)
        ok(run_libresh(real_lab, "backup", "schedule", vault, "--remove", "--yes"))
        print(f"first scheduled run done {time.monotonic() - started:.0f} s after scheduling")
        spec = pod["spec"]
        assert [c["name"] for c in spec["initContainers"]] == ["restic", STEP]
        assert spec["initContainers"][1]["image"] == IMAGE.format(NEW)
        statuses = {s["name"]: s for s in pod["status"]["initContainerStatuses"]}
        assert statuses[STEP]["state"]["terminated"]["exitCode"] == 0
        assert "Backup to '/data/db_" in log and "was successful" in log, log
        runner = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert json.loads(runner["message"])["ok"] is True, runner  # the retention's result
    listed = run_libresh(real_lab, "backups", "list", vault, "-o", "json")
    ok(listed)
    # One run only: the schedule was removed right after it.
    [scheduled] = [b for b in json.loads(listed.stdout) if b["reason"] == "scheduled"]
    assert scheduled["version"] == NEW
    backup = str(scheduled["backup"])
    print(f"scheduled backup {backup}: the copy holds {held} writes (first {before.last_seq})")
    assert held >= before.last_seq
    wait_for_seq(real_lab, vault, held + 200, tmp_path / "later.sqlite3")

    restore_started = utc_text()
    started = time.monotonic()
    ok(run_libresh(real_lab, "restore", vault, "--backup", backup, "--no-backup", "--yes"))
    print(f"restore: {time.monotonic() - started:.0f} s")
    assert alive(real_lab, vault)[0] == 200
    restored = snapshot(real_lab, vault, tmp_path / "restored.sqlite3")
    assert restored.integrity == "ok", restored.integrity
    assert restored.consistent, restored  # count(ciphers) == the model's counter
    since = [start for start in restored.starts if start[1] >= restore_started]
    assert since, restored.starts
    version, _, seq = since[0]
    assert version == NEW
    # The step's copy, not the live files the runner read after it.
    assert seq == held
    assert not (volume_host_path(real_lab, vault, "vaultwarden-data") / ".libresh-backup").exists()
