"""Backups on the lab's real API server: the storage settings, the runner's Jobs and CronJobs
(their images, environment, mounts and Secrets), backup-before-upgrade, restore after a failed
upgrade, restore and restore --as, through the `libresh` command.

kwok runs no containers: the lab's stand-in Stages (libresh_cli/lab/stages/
libresh-backup-runner.yaml) answer for the runner, as the real one answers in its termination
message; an instance named lab-backup-fails gets a runner that fails. The runner itself is
tested against real restic and PostgreSQL in test_backup_runner.py."""

from __future__ import annotations

import base64
import json
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.apps.catalog import Catalog
from libresh_cli.apps.lock import instance_lock
from libresh_cli.apps.record import read_record
from libresh_cli.backup.jobs import RESTIC_IMAGE, RUNNER_IMAGE, RUNNER_LABEL, job_name
from libresh_cli.backup.runner import BackupEntry, BackupMeta
from libresh_cli.backup.service import find_backup, list_backups, restore_as, restore_backup
from libresh_cli.backup.storage import (
    PASSWORD_KEY,
    REPOSITORIES_NAME,
    REPOSITORY_CLAIM,
    REPOSITORY_LABEL,
    SCHEDULE_SECRET,
    SETTINGS_NAME,
    instance_password,
)
from libresh_cli.errors import ExitCode, InterruptedRunError
from libresh_cli.kube.client import KubeClient, wait_for
from libresh_cli.kube.store import SYSTEM_NAMESPACE
from libresh_cli.progress import SilentReporter
from tests.integration.conftest import Lab
from tests.integration.test_apps import TEST_CATALOG, install, libresh, ok

BACKUP_PATH = "/var/backups/libresh-lab"


@pytest.fixture(scope="module")
def storage(lab: Lab) -> str:
    with lab.kube() as kube:
        node = str(kube.list("v1", "Node")[0]["metadata"]["name"])
    result = ok(libresh(lab, "backup", "storage", "set", "--path", BACKUP_PATH, "--node", node))
    assert f"Backups go to {BACKUP_PATH} on node {node}" in result.stderr
    return node


@pytest.fixture
def notes(lab: Lab, kube: KubeClient, storage: str) -> Iterator[str]:
    """An installed instance of the test app `notes` (a volume and a database) at 1.0.0."""
    name = f"n{uuid.uuid4().hex[:8]}"
    ok(install(lab, "notes", name, f"{name}.example.org", "--version", "1.0.0"))
    yield name
    kube.delete("v1", "Namespace", name)


def cluster_key(kube: KubeClient) -> str:
    secret = kube.get("v1", "Secret", SETTINGS_NAME, SYSTEM_NAMESPACE)
    assert secret is not None
    return base64.b64decode(secret["data"][PASSWORD_KEY]).decode()


def app_namespace_keys(kube: KubeClient) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Per app namespace, the Secrets that open backups or the shared PostgreSQL admin: every
    Secret holding a restic key, and libresh-backup-repository, libresh-postgres-admin."""
    found: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for secret in kube.list("v1", "Secret"):
        namespace, name = secret["metadata"]["namespace"], secret["metadata"]["name"]
        if namespace in (SYSTEM_NAMESPACE, "kube-system"):
            continue
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        if "RESTIC_PASSWORD" in data or name in (
            "libresh-backup-repository",
            "libresh-postgres-admin",
        ):
            found.setdefault(namespace, []).append((name, data))
    return found


def runner_jobs(kube: KubeClient, namespace: str, action: str) -> list[dict[str, Any]]:
    jobs = kube.list("batch/v1", "Job", namespace, label_selector=f"{RUNNER_LABEL}={action}")
    return sorted(jobs, key=lambda j: j["metadata"]["creationTimestamp"])


def env_of(pod_spec: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod_spec["containers"][0]["env"]}


def history(kube: KubeClient, name: str) -> list[tuple[str, str, str]]:
    record = read_record(kube, name)
    assert record is not None
    return [(h.action, h.result, h.message) for h in record.history]


def test_storage_settings_and_key_export(
    lab: Lab, kube: KubeClient, storage: str, tmp_path: Path
) -> None:
    shown = json.loads(ok(libresh(lab, "backup", "storage", "show", "-o", "json")).stdout)
    assert shown == {"kind": "path", "path": BACKUP_PATH, "node": storage}
    secret = kube.get("v1", "Secret", SETTINGS_NAME, SYSTEM_NAMESPACE)
    assert secret is not None
    password = base64.b64decode(secret["data"][PASSWORD_KEY]).decode()
    assert len(password) >= 40
    key_file = tmp_path / "key.txt"
    exported = ok(libresh(lab, "backup", "key", "export", "--file", str(key_file)))
    assert key_file.read_text() == password + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "without it the backups cannot be read" in exported.stderr
    assert password not in exported.stdout + exported.stderr
    # Setting it again keeps the key (the repository was made with it).
    ok(libresh(lab, "backup", "storage", "set", "--path", BACKUP_PATH, "--node", storage))
    again = kube.get("v1", "Secret", SETTINGS_NAME, SYSTEM_NAMESPACE)
    assert again is not None and again["data"][PASSWORD_KEY] == secret["data"][PASSWORD_KEY]
    # Importing another key would orphan the backups made with this one: refused.
    other = tmp_path / "other-key"
    other.write_text("a key from somewhere else")
    other.chmod(0o600)
    args = ["--path", BACKUP_PATH, "--node", storage, "--password-file", str(other)]
    refused = libresh(lab, "backup", "storage", "set", *args)
    assert refused.returncode == ExitCode.CONFLICT
    assert "replacing it would make the backups made with it unreadable" in refused.stderr
    kept = kube.get("v1", "Secret", SETTINGS_NAME, SYSTEM_NAMESPACE)
    assert kept is not None and kept["data"][PASSWORD_KEY] == secret["data"][PASSWORD_KEY]
    # The same key again is fine (a re-run of the migration recipe).
    key_file.chmod(0o600)
    same = ["--path", BACKUP_PATH, "--node", storage, "--password-file", str(key_file)]
    ok(libresh(lab, "backup", "storage", "set", *same))
    init = runner_jobs(kube, SYSTEM_NAMESPACE, "init")
    assert init and env_of(init[-1]["spec"]["template"]["spec"])["LIBRESH_ACTION"] == "init"


def test_bad_storage_input_is_refused(lab: Lab) -> None:
    cases = [
        (["--path", "relative/dir", "--node", "x"], "must be an absolute directory"),
        (["--path", "/srv/b", "--node", "no-such-node"], "is not a node of this cluster"),
        (["--path", "/srv/b"], "--path needs --node"),
        (["--s3-endpoint", "ftp://x", "--bucket", "b"], "needs --bucket, --access-key-id"),
        ([], "Give either --s3-endpoint"),
    ]
    for args, message in cases:
        result = libresh(lab, "backup", "storage", "set", *args)
        assert result.returncode == ExitCode.BAD_INPUT, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_backup_runs_the_runner_with_the_instance_data_between_its_hooks(
    lab: Lab, kube: KubeClient, notes: str
) -> None:
    result = json.loads(ok(libresh(lab, "backup", notes, "-o", "json")).stdout)
    assert result["instance"] == notes and result["reason"] == "manual"
    assert result["version"] == "1.0.0"

    (job,) = runner_jobs(kube, notes, "backup")
    spec = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0
    assert spec["automountServiceAccountToken"] is False
    assert [c["image"] for c in spec["initContainers"]] == [RESTIC_IMAGE]
    runner = spec["containers"][0]
    assert runner["image"] == RUNNER_IMAGE
    assert runner["command"] == ["sh", "/runner/backup-runner.sh"]
    # restic's environment: a Secret of this Job alone (named after it), gone once it ended.
    assert runner["envFrom"] == [{"secretRef": {"name": job["metadata"]["name"]}}]
    assert kube.get("v1", "Secret", job["metadata"]["name"], notes) is None
    env = env_of(spec)
    assert env["LIBRESH_ACTION"] == "backup" and env["LIBRESH_BACKUP_ID"] == result["backup"]
    assert (env["LIBRESH_VOLUMES"], env["LIBRESH_DATABASES"]) == ("notes-data", "postgres")
    assert env["LIBRESH_RESULT_FILE"] == "/dev/termination-log"
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in runner["volumeMounts"]}
    assert mounts["/data/notes-data"]["persistentVolumeClaim"]["claimName"] == "notes-data"
    assert mounts["/databases/postgres"]["secret"]["secretName"] == "libresh-postgres"
    assert mounts["/meta/record"]["configMap"]["name"] == "libresh-instance"
    assert mounts["/meta/secrets/libresh-credentials"]["secret"]["secretName"] == (
        "libresh-credentials"
    )
    claim = mounts["/repository"]["persistentVolumeClaim"]["claimName"]
    bound = kube.get("v1", "PersistentVolumeClaim", claim, notes)
    assert bound is not None and bound["status"]["phase"] == "Bound"
    volume = kube.get("v1", "PersistentVolume", bound["spec"]["volumeName"])
    # The instance's own directory of the storage, not the whole of it.
    assert volume is not None and volume["spec"]["hostPath"]["path"] == f"{BACKUP_PATH}/{notes}"
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    # No key in the Job's spec, the cluster's or the instance's.
    assert cluster_key(kube) not in json.dumps(job)
    assert instance_password(cluster_key(kube), notes) not in json.dumps(job)
    # The instance's repository was made first, by a Job in libresh-system.
    made = kube.get("v1", "ConfigMap", REPOSITORIES_NAME, SYSTEM_NAMESPACE)
    assert made is not None and notes in made["data"]
    init = kube.get("batch/v1", "Job", job_name("init", made["data"][notes]), SYSTEM_NAMESPACE)
    assert init is not None
    init_env = env_of(init["spec"]["template"]["spec"])
    assert init_env["LIBRESH_STORAGE_CHECK"] == "/repository/libresh-system"

    # Hooks around the runner: freeze before, thaw after.
    hooks = kube.list("batch/v1", "Job", notes, label_selector="libresh.dev/hook")
    phases = {j["metadata"]["labels"]["libresh.dev/hook"]: j for j in hooks}
    assert set(phases) >= {"pre-backup", "post-backup"}
    created = [j["metadata"]["creationTimestamp"] for j in (phases["pre-backup"], job)]
    assert created == sorted(created)
    assert ("backup", "ok", f"{result['backup']} (manual)") in history(kube, notes)

    status = json.loads(ok(libresh(lab, "status", notes, "-o", "json")).stdout)
    assert status["last_backup"]["backup"] == result["backup"]
    assert status["backup_schedule"] is None
    shown = ok(libresh(lab, "status", notes)).stdout
    assert f"({result['backup']})" in shown and "backup schedule" in shown

    listed = json.loads(ok(libresh(lab, "backups", "list", notes, "-o", "json")).stdout)
    assert [(b["backup"], b["version"]) for b in listed] == [(f"lab-{notes}", "1.0.0")]


def test_schedule_makes_a_cronjob_with_retention(lab: Lab, kube: KubeClient, notes: str) -> None:
    said = ok(
        libresh(
            lab,
            "backup",
            "schedule",
            notes,
            "--cron",
            "30 3 * * *",
            "--keep-daily",
            "5",
            "--keep-weekly",
            "2",
            "--keep-monthly",
            "0",
        )
    )
    cronjob = kube.get("batch/v1", "CronJob", "libresh-backup", notes)
    assert cronjob is not None
    assert cronjob["spec"]["schedule"] == "30 3 * * *"
    assert cronjob["spec"]["timeZone"] == "Etc/UTC"  # what was said is what runs
    assert "'30 3 * * *' (UTC)" in said.stderr
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    status = json.loads(ok(libresh(lab, "status", notes, "-o", "json")).stdout)
    assert status["backup_schedule"] == "30 3 * * *"
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = env_of(spec)
    assert env["LIBRESH_ACTION"] == "scheduled" and env["LIBRESH_REASON"] == "scheduled"
    assert (env["LIBRESH_KEEP_DAILY"], env["LIBRESH_KEEP_WEEKLY"], env["LIBRESH_KEEP_MONTHLY"]) == (
        "5",
        "2",
        "0",
    )
    bad = libresh(lab, "backup", "schedule", notes, "--cron", "every night")
    assert bad.returncode == ExitCode.BAD_INPUT and "five fields" in bad.stderr
    none_kept = libresh(
        lab,
        "backup",
        "schedule",
        notes,
        "--cron",
        "@daily",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
    )
    assert none_kept.returncode == ExitCode.BAD_INPUT
    ok(libresh(lab, "backup", "schedule", notes, "--remove"))
    assert kube.get("batch/v1", "CronJob", "libresh-backup", notes) is None


def test_a_failed_backup_stops_the_upgrade_before_the_app_is_touched(
    lab: Lab, kube: KubeClient, storage: str
) -> None:
    name = "lab-backup-fails"  # the lab's runner fails for this instance
    ok(install(lab, "notes", name, "f.example.org", "--version", "1.0.0"))
    try:
        before = kube.get("apps/v1", "Deployment", "notes", name)
        assert before is not None
        result = libresh(lab, "upgrade", name, "--yes", "-o", "json")
        assert result.returncode == 1
        assert "failed, so the upgrade did not start" in result.stderr
        assert "cannot be reached" in result.stderr
        after = kube.get("apps/v1", "Deployment", "notes", name)
        assert after is not None
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        record = read_record(kube, name)
        assert record is not None and (record.version, record.status) == ("1.0.0", "installed")
        assert [h.action for h in record.history] == ["install", "backup"]
        # post_backup (thaw) ran although the backup failed: the app is not left frozen.
        hooks = kube.list("batch/v1", "Job", name, label_selector="libresh.dev/hook=post-backup")
        assert len(hooks) == 1
    finally:
        kube.delete("v1", "Namespace", name)


def test_a_failed_upgrade_rolls_back_and_restores_the_backup_taken_before_it(
    lab: Lab, kube: KubeClient, notes: str
) -> None:
    ok(libresh(lab, "upgrade", notes, "--to", "2.0.0", "--yes"))
    result = libresh(lab, "upgrade", notes, "--to", "3.0.0", "--yes", "-o", "json")
    assert result.returncode == 1
    assert "rolled back to 2.0.0, its data restored from the backup" in result.stderr
    backups = runner_jobs(kube, notes, "backup")
    assert len(backups) == 2  # one before each step
    (restore,) = runner_jobs(kube, notes, "restore")
    taken = env_of(backups[-1]["spec"]["template"]["spec"])["LIBRESH_BACKUP_ID"]
    restore_env = env_of(restore["spec"]["template"]["spec"])
    assert restore_env["LIBRESH_BACKUP_ID"] == taken
    assert restore_env["LIBRESH_VERSION"] == "2.0.0"
    record = read_record(kube, notes)
    assert record is not None and (record.version, record.status) == ("2.0.0", "installed")
    actions = [(h.action, h.result) for h in record.history]
    assert actions[-3:] == [("backup", "ok"), ("restore", "ok"), ("upgrade", "rolled-back")]
    deployment = kube.get("apps/v1", "Deployment", "notes", notes)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0.0")
    assert deployment["spec"]["replicas"] == 1  # started again after the restore


def test_restore_asks_first_and_checks_the_backup_before_stopping_anything(
    lab: Lab, kube: KubeClient, notes: str
) -> None:
    unasked = libresh(lab, "restore", notes)
    assert unasked.returncode == ExitCode.BAD_INPUT and "--yes" in unasked.stderr
    missing = libresh(lab, "restore", notes, "--snapshot", "20200101T000000Z-dead", "--yes")
    assert missing.returncode == ExitCode.NOT_FOUND
    assert "There is no backup 20200101T000000Z-dead" in missing.stderr
    assert runner_jobs(kube, notes, "restore") == []
    assert [h[0] for h in history(kube, notes)] == ["install"]

    done = json.loads(ok(libresh(lab, "restore", notes, "--yes", "-o", "json")).stdout)
    assert done["backup"] == f"lab-{notes}" and done["safety_backup"]
    (safety,) = runner_jobs(kube, notes, "backup")
    assert env_of(safety["spec"]["template"]["spec"])["LIBRESH_REASON"] == "pre-restore"
    (restore,) = runner_jobs(kube, notes, "restore")
    assert restore["metadata"]["creationTimestamp"] >= safety["metadata"]["creationTimestamp"]
    post = kube.list("batch/v1", "Job", notes, label_selector="libresh.dev/hook=post-restore")
    assert len(post) == 1
    assert history(kube, notes)[-1] == ("restore", "ok", f"lab-{notes}")


def test_a_failed_restore_starts_the_app_again_and_names_the_safety_backup(
    lab: Lab, kube: KubeClient, storage: str
) -> None:
    name = "backup-fails"  # the stand-in lists backup lab-backup-fails, whose restore fails
    ok(install(lab, "notes", name, "bf.example.org", "--version", "1.0.0"))
    try:
        result = libresh(lab, "restore", name, "--yes")
        assert result.returncode == ExitCode.FAILURE
        assert "Restoring backup-fails failed" in result.stderr
        (safety,) = runner_jobs(kube, name, "backup")
        safety_id = env_of(safety["spec"]["template"]["spec"])["LIBRESH_BACKUP_ID"]
        assert f"libresh restore {name} --snapshot {safety_id}" in result.stderr
        deployment = kube.get("apps/v1", "Deployment", "notes", name)
        assert deployment is not None and deployment["spec"]["replicas"] == 1
        assert deployment["status"].get("availableReplicas") == 1
        record = read_record(kube, name)
        assert record is not None and (record.version, record.status) == ("1.0.0", "installed")
        assert (record.history[-1].action, record.history[-1].result) == ("restore", "failed")
    finally:
        kube.delete("v1", "Namespace", name)


def test_restore_as_makes_a_new_instance_with_the_same_credentials(
    lab: Lab, kube: KubeClient, notes: str
) -> None:
    clone = f"{notes}-copy"
    try:
        result = json.loads(
            ok(
                libresh(
                    lab,
                    "restore",
                    notes,
                    "--as",
                    clone,
                    "--domain",
                    "copy.example.org",
                    "-o",
                    "json",
                )
            ).stdout
        )
        assert (result["instance"], result["source"]) == (clone, notes)
        record = read_record(kube, clone)
        assert record is not None and record.status == "installed"
        assert record.params["domain"] == "copy.example.org"
        source_pg = kube.get("v1", "Secret", "libresh-postgres", notes)
        clone_pg = kube.get("v1", "Secret", "libresh-postgres", clone)
        assert source_pg is not None and clone_pg is not None
        assert clone_pg["data"]["password"] == source_pg["data"]["password"]
        (restore,) = runner_jobs(kube, clone, "restore")
        env = env_of(restore["spec"]["template"]["spec"])
        assert (env["LIBRESH_INSTANCE"], env["LIBRESH_BACKUP_ID"]) == (notes, f"lab-{notes}")
        # The clone read the source's backups through a volume and a key of that run only.
        volumes = restore["spec"]["template"]["spec"]["volumes"]
        (repository,) = [v for v in volumes if v["name"] == "repository"]
        source_claim = f"libresh-backup-from-{notes}"
        assert repository["persistentVolumeClaim"]["claimName"] == source_claim
        source_volume = f"libresh-backup-{clone}-from-{notes}"

        def gone() -> bool | None:
            claim = kube.get("v1", "PersistentVolumeClaim", source_claim, clone)
            volume = kube.get("v1", "PersistentVolume", source_volume)
            return True if claim is None and volume is None else None

        wait_for("the source's volume to go", gone, timeout=30, interval=0.2)
        assert not app_namespace_keys(kube).get(clone)
        taken = libresh(lab, "restore", notes, "--as", clone, "--domain", "x.example.org")
        assert taken.returncode == ExitCode.CONFLICT
        assert f"An instance named {clone} exists already" in taken.stderr
        # Uninstalled with its data kept: a clone must not silently empty that data.
        ok(libresh(lab, "uninstall", clone, "--yes"))
        kept = libresh(lab, "restore", notes, "--as", clone, "--domain", "x.example.org")
        assert kept.returncode == ExitCode.CONFLICT
        assert f"{clone} was uninstalled, but its data" in kept.stderr
        assert "--purge-data" in kept.stderr
        assert kube.get("v1", "PersistentVolumeClaim", "notes-data", clone) is not None
    finally:
        kube.delete("v1", "Namespace", clone)


def test_a_clone_takes_the_new_names_lease_and_leaves_no_trace_when_refused(
    lab: Lab, kube: KubeClient, notes: str
) -> None:
    busy, undone = f"{notes}-busy", f"{notes}-undone"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": busy}}
    try:
        with instance_lock(kube, busy, "install", namespace):  # another run on that name
            refused = libresh(lab, "restore", notes, "--as", busy, "--domain", "b.example.org")
        assert refused.returncode == ExitCode.CONFLICT
        assert f"{busy} is busy" in refused.stderr and "libresh install" in refused.stderr
        assert read_record(kube, busy) is None  # nothing of the clone was made
        # A clone that fails before installing anything (no --domain) leaves no namespace.
        failed = libresh(lab, "restore", notes, "--as", undone)
        assert failed.returncode == ExitCode.BAD_INPUT and "--domain" in failed.stderr
        assert kube.get("v1", "Namespace", undone) is None
    finally:
        kube.delete("v1", "Namespace", busy)
        kube.delete("v1", "Namespace", undone)


def test_upgrade_without_backup_storage_is_refused_unless_no_backup(
    lab: Lab, kube: KubeClient, notes: str
) -> None:
    saved = [
        kube.get("v1", kind, SETTINGS_NAME, SYSTEM_NAMESPACE) for kind in ("ConfigMap", "Secret")
    ]
    try:
        for kind in ("ConfigMap", "Secret"):
            kube.delete("v1", kind, SETTINGS_NAME, SYSTEM_NAMESPACE)
        refused = libresh(lab, "upgrade", notes, "--to", "2.0.0", "--yes", "-o", "json")
        assert refused.returncode == ExitCode.PREREQUISITE_MISSING
        assert "Backups are not set up" in refused.stderr and "--no-backup" in refused.stderr
        # cron wrappers parse -o json: a failure is a JSON document too
        document = json.loads(refused.stdout)
        assert document["exit_code"] == ExitCode.PREREQUISITE_MISSING
        assert "Backups are not set up" in document["error"] and document["hint"]
        # The dry run says what the real run would do: refused too (issue 20, point 13).
        dry = libresh(lab, "upgrade", notes, "--to", "2.0.0", "--dry-run")
        assert dry.returncode == ExitCode.PREREQUISITE_MISSING, dry.stdout + dry.stderr
        skipped = ok(libresh(lab, "upgrade", notes, "--to", "2.0.0", "--no-backup", "--yes"))
        assert "No backup of" in skipped.stderr and "(--no-backup)" in skipped.stderr
        # A run with nothing left to upgrade needs no backup storage (cron's every night).
        nightly = ok(libresh(lab, "upgrade", notes, "--to", "2.0.0", "--yes", "-o", "json"))
        assert json.loads(nightly.stdout)[0]["result"] == "up to date"
    finally:
        for manifest in saved:
            assert manifest is not None
            for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
                manifest["metadata"].pop(field, None)
            kube.apply(manifest)


def test_restore_as_from_another_cluster_takes_settings_and_credentials_from_the_backup(
    lab: Lab, kube: KubeClient, storage: str
) -> None:
    # "elsewhere" is not on this cluster: its backups came from another one sharing the
    # repository. Reading a backup's record needs the real runner (test_backup_runner.py), so
    # the lab's stand-in refuses it, and nothing is created.
    source, copy = f"elsewhere-{uuid.uuid4().hex[:6]}", f"moved-{uuid.uuid4().hex[:6]}"
    absent = libresh(lab, "restore", source, "--yes")
    assert absent.returncode == ExitCode.NOT_FOUND
    assert f"No instance named '{source}'" in absent.stderr
    refused = libresh(lab, "restore", source, "--as", copy, "--domain", "moved.example.org")
    assert refused.returncode == ExitCode.FAILURE
    assert "cannot read the record of a backup (lab stand-in)" in refused.stderr
    assert kube.get("v1", "Namespace", copy) is None  # made for the clone's lease, gone
    pads = kube.list("v1", "Secret", SYSTEM_NAMESPACE)
    assert not [s for s in pads if s["metadata"]["name"].startswith("libresh-pad-")]

    # With the record a real runner hands over (our own adapter, faked here), the new
    # instance gets the old settings and credentials, its own domain, and the restore.
    def read_meta(*_: object) -> BackupMeta:
        return BackupMeta(
            {
                "app": "notes",
                "version": "1.0.0",
                "params": {"domain": "old.example.org"},
                "services": {"postgres": "embedded"},
            },
            {"libresh-credentials": {"postgres_password": "kept-from-the-old-cluster"}},
        )

    backup = BackupEntry(f"lab-{source}", "2026-11-22T03:00:00Z", "1.0.0", "scheduled", "notes")
    catalog = Catalog.from_sources([TEST_CATALOG])
    try:
        result = restore_as(
            kube, catalog, source, copy, "moved.example.org", backup, SilentReporter(), read_meta
        )
        assert (result.instance, result.source) == (copy, source)
        record = read_record(kube, copy)
        assert record is not None and record.params == {"domain": "moved.example.org"}
        connection = kube.get("v1", "Secret", "libresh-postgres", copy)
        assert connection is not None
        assert base64.b64decode(connection["data"]["password"]) == b"kept-from-the-old-cluster"
        (restore,) = runner_jobs(kube, copy, "restore")
        assert env_of(restore["spec"]["template"]["spec"])["LIBRESH_INSTANCE"] == source
    finally:
        kube.delete("v1", "Namespace", copy)


def test_no_app_namespace_keeps_a_key_to_the_backups_or_the_shared_database(
    lab: Lab, kube: KubeClient, notes: str
) -> None:
    """After a backup and a restore, an app namespace holds no Secret that opens the backups
    (the cluster's key, another instance's) or the shared PostgreSQL admin; a schedule keeps
    its own instance's key and no more, and its volume is onto its own directory."""
    ok(libresh(lab, "backup", notes))
    ok(libresh(lab, "restore", notes, "--yes"))
    ok(libresh(lab, "backup", "schedule", notes, "--cron", "@daily"))
    key = cluster_key(kube)
    for namespace, secrets in app_namespace_keys(kube).items():
        for name, data in secrets:
            # Only a schedule's Secret, with its own instance's key and repository.
            assert name == SCHEDULE_SECRET, (namespace, name)
            assert data["RESTIC_PASSWORD"] == instance_password(key, namespace)
            assert data["LIBRESH_REPOSITORY_OF"] == namespace
            assert key not in data.values()
    (kept,) = app_namespace_keys(kube)[notes]
    assert kept[0] == SCHEDULE_SECRET
    schedule = kube.get("v1", "Secret", SCHEDULE_SECRET, notes)
    cronjob = kube.get("batch/v1", "CronJob", "libresh-backup", notes)
    assert schedule is not None and cronjob is not None
    assert schedule["metadata"]["labels"][REPOSITORY_LABEL] == notes
    assert [o["uid"] for o in schedule["metadata"]["ownerReferences"]] == [
        cronjob["metadata"]["uid"]
    ]
    backup_volumes = [
        v
        for v in kube.list("v1", "PersistentVolume")
        if v["metadata"]["name"].startswith("libresh-backup-")
    ]
    assert f"libresh-backup-{notes}" in [v["metadata"]["name"] for v in backup_volumes]
    for volume in backup_volumes:
        # An app namespace's volume is onto its own instance's directory, never the whole path.
        namespace = volume["spec"]["claimRef"]["namespace"]
        if namespace != SYSTEM_NAMESPACE:
            assert volume["spec"]["hostPath"]["path"].endswith(f"/{namespace}"), volume
    ok(libresh(lab, "backup", "schedule", notes, "--remove"))
    assert not app_namespace_keys(kube).get(notes)


def test_ctrl_c_in_a_restore_leaves_the_app_stopped_and_says_how_to_finish(
    kube: KubeClient, notes: str
) -> None:
    """Issue 14, finding 18: the workloads are at 0 replicas and the data may be half
    restored; starting the app on it could damage it further."""

    class InterruptedWhileRestoring(SilentReporter):
        def step(self, message: str) -> None:
            if message.startswith("Restoring"):
                raise KeyboardInterrupt

    catalog = Catalog.from_sources([TEST_CATALOG])
    backup = find_backup(list_backups(kube, notes, SilentReporter()), None, notes)
    with pytest.raises(InterruptedRunError) as raised:
        restore_backup(
            kube, catalog, notes, backup, InterruptedWhileRestoring(), safety_backup=False
        )
    assert raised.value.exit_code == ExitCode.INTERRUPTED
    assert f"{notes} is left stopped" in raised.value.message
    assert f"libresh restore {notes} --snapshot {backup.backup}" in str(raised.value.hint)
    deployment = kube.get("apps/v1", "Deployment", "notes", notes)
    assert deployment is not None and deployment["spec"]["replicas"] == 0


def test_restoring_an_uninstalled_instance_says_how(lab: Lab, kube: KubeClient, notes: str) -> None:
    ok(libresh(lab, "uninstall", notes, "--yes"))
    refused = libresh(lab, "restore", notes, "--yes")
    assert refused.returncode == ExitCode.FAILURE, refused.stdout + refused.stderr
    assert f"libresh install notes --name {notes}" in refused.stderr
    assert f"libresh restore {notes} --as NEW --domain DOMAIN" in refused.stderr


def test_moving_the_storage_to_another_directory_and_back_frees_the_old_claims(
    lab: Lab, kube: KubeClient, storage: str, notes: str
) -> None:
    """The finished runner pods of the old storage name its claims, and Kubernetes keeps a claim
    while any scheduled pod names it (pvc-protection): moving the storage removes those pods
    first, instead of waiting for the claim until the 120 s timeout (seen on the real node)."""
    ok(libresh(lab, "backup", notes))  # a finished runner pod in the instance's namespace
    elsewhere = f"{BACKUP_PATH}-moved"
    for path in (elsewhere, BACKUP_PATH):
        started = time.monotonic()
        ok(libresh(lab, "backup", "storage", "set", "--path", path, "--node", storage))
        ok(libresh(lab, "backup", notes))  # its claim moves at its next backup
        assert time.monotonic() - started < 90, "waited on a claim its old pods kept"
        for namespace in (SYSTEM_NAMESPACE, notes):
            claim = kube.get("v1", "PersistentVolumeClaim", REPOSITORY_CLAIM, namespace)
            assert claim is not None
            volume = kube.get("v1", "PersistentVolume", claim["spec"]["volumeName"])
            where = volume["spec"]["hostPath"]["path"]  # the whole path, or the instance's
            assert where == path or where.startswith(path + "/"), volume["spec"]
